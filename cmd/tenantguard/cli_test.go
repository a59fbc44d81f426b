package main

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

// wantOneError checks that a run failed with exit status 1 and printed
// nothing but one line on stderr, containing each of says.
func wantOneError(t *testing.T, what string, r cliRun, says ...string) {
	t.Helper()
	if r.code != 1 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("%s: want exit 1 and one line on stderr, got exit %d\nstdout: %q\nstderr: %q", what, r.code, r.stdout, r.stderr)
	}
	for _, s := range says {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("%s: stderr lacks %q: %q", what, s, r.stderr)
		}
	}
}

// TestLeaksSaysWhereItLookedAndNeverMisleads: a journal that is not where
// the config says (a relative path read from another directory) is an
// error naming the absolute path, never "no findings"; from the right
// directory the same config reads it.
func TestLeaksSaysWhereItLookedAndNeverMisleads(t *testing.T) {
	collectorDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(collectorDir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, journal := writeJournal(t, filepath.Join(collectorDir, "data"), []store.Evidence{everyFieldRecord()})
	if err := os.Rename(journal, filepath.Join(collectorDir, "data", "leaks.jsonl")); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(collectorDir, "collector.yaml")
	if err := os.WriteFile(cfg, []byte("processors:\n  tenantguard:\n    store:\n      journal: {path: ./data/leaks.jsonl}\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	elsewhere := t.TempDir()
	r := runCLI(t, elsewhere, "leaks", "list", "--config", cfg)
	wantOneError(t, "leaks list from another directory", r, "no journal at "+filepath.Join(elsewhere, "data", "leaks.jsonl"),
		`relative store.journal.path "./data/leaks.jsonl"`, "--set processors.tenantguard.store.journal.path=")
	if strings.Contains(r.stderr, "no findings") {
		t.Errorf("a missing journal reads as no findings: %s", r.stderr)
	}
	wantOneError(t, "leaks stats from another directory", runCLI(t, elsewhere, "leaks", "stats", "--config", cfg),
		"no journal at "+filepath.Join(elsewhere, "data", "leaks.jsonl"))
	wantOneError(t, "leaks show from another directory", runCLI(t, elsewhere, "leaks", "show", "--config", cfg, "x"),
		"no journal at "+filepath.Join(elsewhere, "data", "leaks.jsonl"))

	// Run where the collector runs, the same config finds the journal.
	r = runCLI(t, collectorDir, "leaks", "list", "--config", cfg, "--all")
	if r.code != 0 || !strings.Contains(r.stdout, everyFieldRecord().TraceID) {
		t.Errorf("leaks list from the collector's directory: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// "1 finding", not "1 findings"; the journal named by its absolute path.
	r = runCLI(t, collectorDir, "leaks", "stats", "--config", cfg, "--all")
	if r.code != 0 || !strings.Contains(r.stdout, "1 finding in "+filepath.Join(collectorDir, "data", "leaks.jsonl")+"\n") {
		t.Errorf("leaks stats: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestLeaksChecksFilterValues: a typo in --rule, --severity or --status is
// an error that lists the valid names, not an empty listing; valid values
// filter.
func TestLeaksChecksFilterValues(t *testing.T) {
	var recs []store.Evidence
	for i, sev := range detector.Severities {
		ev := everyFieldRecord()
		ev.LeakID, ev.Severity, ev.Status = "leak-"+string(sev), string(sev), string(detector.StatusClosed)
		if i == 0 {
			ev.Status = string(detector.StatusReclassified)
		}
		recs = append(recs, ev)
	}
	cfg, _ := writeJournal(t, t.TempDir(), recs)
	wantOneError(t, "--rule cross_tenant", runCLI(t, "", "leaks", "list", "--config", cfg, "--rule", "cross_tenant"),
		`--rule: unknown rule "cross_tenant": want one of `+detector.Names(detector.Rules))
	wantOneError(t, "--severity High", runCLI(t, "", "leaks", "list", "--config", cfg, "--severity", "High"),
		`--severity: unknown severity "High": want one of low, medium, high, critical`)
	wantOneError(t, "--status withdrawn", runCLI(t, "", "leaks", "list", "--config", cfg, "--status", "withdrawn"),
		`--status: unknown status "withdrawn": want one of open, reclassified, allowed, closed`)
	wantOneError(t, "stats --rule", runCLI(t, "", "leaks", "stats", "--config", cfg, "--rule", "leak"), `--rule: unknown rule "leak"`)

	ids := func(args ...string) []string {
		r := runCLI(t, "", append([]string{"leaks", "list", "--config", cfg, "--json"}, args...)...)
		if r.code != 0 {
			t.Fatalf("leaks list %q: exit %d\n%s", args, r.code, r.stderr)
		}
		var out []string
		for _, ev := range evidenceLines(t, r.stdout) {
			out = append(out, ev.LeakID)
		}
		slices.Sort(out)
		return out
	}
	if got, want := ids("--severity", "high"), []string{"leak-critical", "leak-high"}; !slices.Equal(got, want) {
		t.Errorf("--severity high: %q, want %q", got, want)
	}
	if got, want := ids("--status", "reclassified"), []string{"leak-low"}; !slices.Equal(got, want) {
		t.Errorf("--status reclassified (listed without --all): %q, want %q", got, want)
	}
	if got, want := ids("--rule", string(detector.RuleForeignSigningKey)), []string{"leak-critical", "leak-high", "leak-medium"}; !slices.Equal(got, want) {
		t.Errorf("--rule: %q, want %q", got, want)
	}
}

// TestCLIErrorsArePrintedOnceOnOneLine: config, flag and usage errors each
// print one line naming the problem, once.
func TestCLIErrorsArePrintedOnceOnOneLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("processors:\n  tenantguard:\n    bogus: 1\n    max_traces: -5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	invalid := filepath.Join(dir, "invalid.yaml")
	if err := os.WriteFile(invalid, []byte("processors:\n  tenantguard:\n    max_traces: -5\n    idle_window: -1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		says []string
	}{
		{[]string{"leaks", "list", "--config", bad}, []string{"tenantguard: processors::tenantguard: unknown keys: bogus"}},
		{[]string{"leaks", "list", "--config", invalid}, []string{"tenantguard: processors::tenantguard: ", "max_traces", "; ", "idle_window"}},
		{[]string{"leaks", "list", "--config", filepath.Join(dir, "absent.yaml")},
			[]string{"tenantguard: --config " + filepath.Join(dir, "absent.yaml") + ": no such file"}},
		{[]string{"leaks", "list"}, []string{"--config is required"}},
		{[]string{"leaks", "list", "--bogus"}, []string{"unknown flag: --bogus (see tenantguard leaks list --help)"}},
		{[]string{"leaks", "show", "--config", bad}, []string{"accepts 1 arg(s), received 0"}},
	} {
		r := runCLI(t, dir, tc.args...)
		wantOneError(t, strings.Join(tc.args, " "), r, tc.says...)
		if first := strings.SplitN(r.stderr, ": ", 3); len(first) > 1 && strings.Count(r.stderr, first[1]) > 1 {
			t.Errorf("%q: the problem is said twice: %q", tc.args, r.stderr)
		}
	}
	r := runCLI(t, dir, "scan", "--config", bad, filepath.Join("..", "..", "testdata", "scenarios", "clean.json"))
	if r.code != exitInput || r.stderr != "tenantguard scan: processors::tenantguard: unknown keys: bogus\n" {
		t.Errorf("scan with a bad config: exit %d, stderr %q", r.code, r.stderr)
	}
	r = runCLI(t, dir, "scan", "--bogus")
	if r.code != exitInput || r.stderr != "tenantguard scan: unknown flag: --bogus (see tenantguard scan --help)\n" {
		t.Errorf("scan --bogus: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestLeaksHelpListsEveryRuleAndRenders: --rule names every rule, and
// `leaks show --help` shows its --json flag as a flag, not as the text
// between backticks of its usage.
func TestLeaksHelpListsEveryRuleAndRenders(t *testing.T) {
	for _, sub := range []string{"list", "stats"} {
		r := runCLI(t, "", "leaks", sub, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "only findings of this rule: "+detector.Names(detector.Rules)) {
			t.Errorf("leaks %s --help does not list every rule:\n%s", sub, r.stdout)
		}
	}
	r := runCLI(t, "", "leaks", "list", "--help")
	for _, want := range []string{"--severity string", detector.Names(detector.Severities), "--status string", detector.Names(detector.Statuses)} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("leaks list --help lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runCLI(t, "", "leaks", "show", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "      --json   one JSON object per finding") || strings.Contains(r.stdout, "--json leaks") {
		t.Errorf("leaks show --help renders its --json flag wrong:\n%s", r.stdout)
	}
}

// TestScanDirReadsOnlyOTLP: scanning testdata/scenarios skips each golden
// file (JSON, but no traces) by name, plain or gzip-compressed, and reads
// the rest; no decoder internals reach the user.
func TestScanDirReadsOnlyOTLP(t *testing.T) {
	dir := t.TempDir()
	inputs, err := filepath.Glob(filepath.Join(scanScenarioDir, "*.json*"))
	if err != nil {
		t.Fatal(err)
	}
	var goldens []string
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(in)
		if strings.HasSuffix(name, ".golden.json") {
			goldens = append(goldens, name)
		}
		writeFile(t, filepath.Join(dir, name), data)
	}
	// A compressed fixture is looked into, too.
	gz, err := os.Create(filepath.Join(dir, "zz.golden.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(gz)
	_, _ = zw.Write([]byte(`[{"leak_id": "x", "rule": "cross_tenant_trace"}]`))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	gz.Close()
	goldens = append(goldens, "zz.golden.json.gz")

	r := runCLI(t, "", "scan", "--config", scanConfigPath, "--format", "json", dir)
	if r.code != exitFindings {
		t.Errorf("scan DIR: exit %d, want %d (findings, no input error)\n%s", r.code, exitFindings, r.stderr)
	}
	for _, g := range goldens {
		if want := "tenantguard scan: skipped " + filepath.Join(dir, g) + ": JSON without resourceSpans: not OTLP traces\n"; !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if strings.Contains(r.stderr, "ReadObject") || strings.Contains(r.stderr, "input error") {
		t.Errorf("scan DIR reports decoder internals or input errors:\n%s", r.stderr)
	}
	if want := plural(len(goldens), "file", "files") + " skipped (not OTLP)"; !strings.Contains(r.stderr, want) {
		t.Errorf("summary lacks %q:\n%s", want, r.stderr)
	}
	if n := len(evidenceLines(t, r.stdout)); n == 0 {
		t.Error("scan DIR reported no finding")
	}
}

// TestScanSaysWhenTheCollectorCouldJudgeOtherwise: late_span.jsonl's
// traces came in two requests; scan judges them whole, the collector
// judges the second request as late spans, against what the closed trace
// kept (there, enough to judge them the same). The text report, SARIF and
// the summary say so; a trace read in one request has no such note.
func TestScanSaysWhenTheCollectorCouldJudgeOtherwise(t *testing.T) {
	late := filepath.Join(scanScenarioDir, "late_span.jsonl")
	r := runCLI(t, "", "scan", "--config", scanConfigPath, late)
	if r.code != exitFindings {
		t.Fatalf("scan late_span.jsonl: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		"  arrival   the trace's spans came in 2 requests, judged here as one trace; the collector does so only if each request " +
			"arrives within idle_window (1m0s) of the trace's last span",
		"2 findings depend on when spans arrive, which only the collector sees (see \"arrival\")",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("text report lacks %q:\n%s", want, r.stdout)
		}
	}
	if n := strings.Count(r.stdout, "  arrival "); n != 2 {
		t.Errorf("%d findings noted as arrival-dependent, want both of late_span's traces", n)
	}
	sarif := runCLI(t, "", "scan", "--config", scanConfigPath, "--format", "sarif", late)
	if strings.Count(sarif.stdout, `"arrival": "the trace's spans came in 2 requests`) != 2 {
		t.Errorf("SARIF results lack the arrival property:\n%s", sarif.stdout)
	}
	one := runCLI(t, "", "scan", "--config", scanConfigPath, filepath.Join(scanScenarioDir, "shared_inventory.json"))
	if strings.Contains(one.stdout, "arrival") {
		t.Errorf("a trace read in one request is noted as arrival-dependent:\n%s", one.stdout)
	}
}
