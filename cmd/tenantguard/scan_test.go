package main

// `tenantguard scan`: the testdata scenarios in every input form give
// exactly their golden findings and exit codes; bad input is located and
// loses nothing readable; the reports parse (JUnit against
// testdata/scan/junit.xsd); memory stays bounded on a large stream. All but
// one test run the command in-process; TestScanExitCodesThroughBinary runs
// the built binary.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/store"
)

var (
	scanConfigPath   = filepath.Join("..", "..", "testdata", "config.yaml")
	scanScenarioDir  = filepath.Join("..", "..", "testdata", "scenarios")
	scanJUnitXSDPath = filepath.Join("testdata", "scan", "junit.xsd")
)

type scanOutcome struct {
	code           int
	stdout, stderr string
}

// runScanArgs runs `tenantguard scan ARGS...` in-process, flags parsed as
// the command parses them.
func runScanArgs(t *testing.T, stdin io.Reader, args ...string) scanOutcome {
	t.Helper()
	cmd := &cobra.Command{}
	sf := addScanFlags(cmd)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("scan %q: %v", args, err)
	}
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var stdout, stderr bytes.Buffer
	code := runScan(context.Background(), sf, cmd.Flags().Args(), stdin, &stdout, &stderr)
	return scanOutcome{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// scanGolden is a finding reduced to the fields the scenario goldens hold.
type scanGolden struct {
	LeakID   string `json:"leak_id"`
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	Status   string `json:"status"`
	// Message is the finding's sentence, as the log, Slack, leaks and scan
	// print it.
	Message       string               `json:"message"`
	TraceID       string               `json:"trace_id"`
	Tenants       []string             `json:"tenants"`
	Services      []string             `json:"services"`
	CrossingEdges []store.CrossingEdge `json:"crossing_edges"`
	Mismatches    []store.Mismatch     `json:"mismatches"`
	Keys          []store.KeyUse       `json:"keys,omitempty"`
	Queries       []store.Query        `json:"queries,omitempty"`
	SpanCount     int                  `json:"span_count"`
}

func canonGoldens(gs []scanGolden) string {
	for i := range gs {
		g := &gs[i]
		if g.Tenants == nil {
			g.Tenants = []string{}
		}
		if g.Services == nil {
			g.Services = []string{}
		}
		if g.CrossingEdges == nil {
			g.CrossingEdges = []store.CrossingEdge{}
		}
		if g.Mismatches == nil {
			g.Mismatches = []store.Mismatch{}
		}
	}
	slices.SortFunc(gs, func(a, b scanGolden) int {
		return strings.Compare(a.TraceID+a.Rule+a.LeakID, b.TraceID+b.Rule+b.LeakID)
	})
	if gs == nil {
		gs = []scanGolden{}
	}
	b, _ := json.MarshalIndent(gs, "", "  ")
	return string(b)
}

// jsonFindings parses `--format json` output: one evidence object a line.
func jsonFindings(t *testing.T, out string) []store.Evidence {
	t.Helper()
	var evs []store.Evidence
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var ev store.Evidence
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("--format json line %q: %v", sc.Text(), err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func reduce(evs []store.Evidence) string {
	gs := []scanGolden{}
	for _, ev := range evs {
		gs = append(gs, scanGolden{
			LeakID: ev.LeakID, Rule: ev.Rule, Severity: ev.Severity, Status: ev.Status, Message: ev.Message(store.Plain), TraceID: ev.TraceID,
			Tenants: ev.Tenants, Services: ev.Services, CrossingEdges: ev.CrossingEdges, Mismatches: ev.Mismatches,
			Keys: ev.Keys, Queries: ev.Queries, SpanCount: ev.SpanCount,
		})
	}
	return canonGoldens(gs)
}

type scenario struct {
	name, path string
	reqs       []ptrace.Traces
	golden     []scanGolden
}

// scenarios loads every testdata scenario, its requests and its golden.
func scenarios(t *testing.T) []scenario {
	t.Helper()
	entries, err := os.ReadDir(scanScenarioDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []scenario
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if strings.HasSuffix(name, ".golden.json") || (ext != ".json" && ext != ".jsonl") {
			continue
		}
		sc := scenario{name: strings.TrimSuffix(name, ext), path: filepath.Join(scanScenarioDir, name)}
		data, err := os.ReadFile(sc.path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(`{"advance"`)) {
			// Clock-driven scenarios (late spans) need the processor's idle
			// window to pass between requests; a scan has no clock.
			continue
		}
		chunks := [][]byte{data}
		if ext == ".jsonl" {
			chunks = nil
			for line := range bytes.Lines(data) {
				if len(bytes.TrimSpace(line)) > 0 {
					chunks = append(chunks, line)
				}
			}
		}
		for _, c := range chunks {
			td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(c)
			if err != nil {
				t.Fatalf("%s: %v", sc.path, err)
			}
			sc.reqs = append(sc.reqs, td)
		}
		raw, err := os.ReadFile(filepath.Join(scanScenarioDir, sc.name+".golden.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &sc.golden); err != nil {
			t.Fatalf("%s golden: %v", sc.name, err)
		}
		out = append(out, sc)
	}
	if len(out) < 6 {
		t.Fatalf("found %d scenarios in %s, want at least 6", len(out), scanScenarioDir)
	}
	return out
}

// wantCode is the exit code of a scan with the default --fail-on high.
func wantCode(golden []scanGolden) int {
	for _, g := range golden {
		if g.Severity == "critical" || g.Severity == "high" {
			return exitFindings
		}
	}
	return exitClean
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func gzipBytes(t *testing.T, parts ...[]byte) []byte {
	t.Helper()
	gz, _ := gzipParts(t, parts...)
	return gz
}

// gzipParts compresses parts with a sync flush after each (what a writer
// that crashes later has already made readable), and returns the
// compressed length at each flush.
func gzipParts(t *testing.T, parts ...[]byte) ([]byte, []int) {
	t.Helper()
	var b bytes.Buffer
	var ends []int
	zw := gzip.NewWriter(&b)
	for _, p := range parts {
		if _, err := zw.Write(p); err != nil {
			t.Fatal(err)
		}
		if err := zw.Flush(); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, b.Len())
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), ends
}

func protoOf(t *testing.T, td ptrace.Traces) []byte {
	t.Helper()
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonOf(t *testing.T, td ptrace.Traces) []byte {
	t.Helper()
	b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// records frames requests as the file exporter's proto format does.
func records(t *testing.T, reqs []ptrace.Traces) []byte {
	t.Helper()
	var out []byte
	for _, td := range reqs {
		pb := protoOf(t, td)
		out = binary.BigEndian.AppendUint32(out, uint32(len(pb)))
		out = append(out, pb...)
	}
	return out
}

func jsonLines(t *testing.T, reqs []ptrace.Traces) []byte {
	t.Helper()
	var out []byte
	for _, td := range reqs {
		out = append(append(out, jsonOf(t, td)...), '\n')
	}
	return out
}

// variants writes the scenario in every input form scan reads.
func (sc *scenario) variants(t *testing.T, dir string) map[string]string {
	t.Helper()
	orig, err := os.ReadFile(sc.path)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, sc.name)
	v := map[string]string{
		"as in testdata":               sc.path,
		"gzip":                         writeFile(t, base+filepath.Ext(sc.path)+".gz", gzipBytes(t, orig)),
		"json lines":                   writeFile(t, base+".lines.json", jsonLines(t, sc.reqs)),
		"json lines gzip, no name":     writeFile(t, base+".lines", gzipBytes(t, jsonLines(t, sc.reqs))),
		"file exporter proto":          writeFile(t, base+".records.pb", records(t, sc.reqs)),
		"file exporter proto gzip":     writeFile(t, base+".records.pb.gz", gzipBytes(t, records(t, sc.reqs))),
		"file exporter proto, no name": writeFile(t, base+".records", records(t, sc.reqs)),
	}
	if len(sc.reqs) == 1 {
		pb := protoOf(t, sc.reqs[0])
		v["protobuf request"] = writeFile(t, base+".binpb", pb)
		v["protobuf request gzip"] = writeFile(t, base+".pb.gz", gzipBytes(t, pb))
		v["protobuf request, no name"] = writeFile(t, base+".request", pb)
	}
	return v
}

func TestScanScenariosMatchGoldens(t *testing.T) {
	dir := t.TempDir()
	for _, sc := range scenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			want := canonGoldens(sc.golden)
			variants := sc.variants(t, dir)
			for _, name := range slices.Sorted(maps.Keys(variants)) {
				path := variants[name]
				out := runScanArgs(t, nil, "--config", scanConfigPath, "--format", "json", path)
				if out.code != wantCode(sc.golden) {
					t.Errorf("%s: exit %d, want %d\nstderr: %s", name, out.code, wantCode(sc.golden), out.stderr)
				}
				if got := reduce(jsonFindings(t, out.stdout)); got != want {
					t.Errorf("%s (%s): findings differ from the golden\n--- got\n%s\n--- want\n%s", name, path, got, want)
				}
			}
			// Standard input.
			orig, _ := os.ReadFile(sc.path)
			out := runScanArgs(t, bytes.NewReader(gzipBytes(t, orig)), "--config", scanConfigPath, "--format", "json", "-")
			if got := reduce(jsonFindings(t, out.stdout)); got != want || out.code != wantCode(sc.golden) {
				t.Errorf("stdin: exit %d, findings\n%s\nwant exit %d, %s\nstderr: %s", out.code, got, wantCode(sc.golden), want, out.stderr)
			}
		})
	}
}

// TestScanFailOn: the header mismatch is high: it fails by default and
// under --fail-on high, not under --fail-on critical or none; the crossing
// is critical and fails under every threshold but none.
func TestScanFailOn(t *testing.T) {
	mismatch := filepath.Join(scanScenarioDir, "header_mismatch.json")
	crossing := filepath.Join(scanScenarioDir, "shared_inventory.json")
	for _, tc := range []struct {
		path, failOn string
		want         int
	}{
		{mismatch, "", exitFindings},
		{mismatch, "low", exitFindings},
		{mismatch, "high", exitFindings},
		{mismatch, "critical", exitClean},
		{mismatch, "none", exitClean},
		{crossing, "critical", exitFindings},
		{crossing, "none", exitClean},
	} {
		args := []string{"--config", scanConfigPath, tc.path}
		if tc.failOn != "" {
			args = append(args, "--fail-on", tc.failOn)
		}
		out := runScanArgs(t, nil, args...)
		if out.code != tc.want {
			t.Errorf("%s --fail-on %q: exit %d, want %d\n%s%s", filepath.Base(tc.path), tc.failOn, out.code, tc.want, out.stdout, out.stderr)
		}
	}
	out := runScanArgs(t, nil, "--config", scanConfigPath, "--fail-on", "critical", mismatch)
	if !strings.Contains(out.stdout, "high tenant_mismatch note (below --fail-on critical)") {
		t.Errorf("a finding below --fail-on is still reported, marked; got:\n%s", out.stdout)
	}
}

// TestScanConfig: without --config the processor defaults judge (the header
// key is not a tenant key there, so the forged header goes unseen); --set
// alone overrides the defaults.
func TestScanConfig(t *testing.T) {
	mismatch := filepath.Join(scanScenarioDir, "header_mismatch.json")
	if out := runScanArgs(t, nil, mismatch); out.code != exitClean {
		t.Errorf("defaults: exit %d, want 0 (no header key)\n%s%s", out.code, out.stdout, out.stderr)
	}
	out := runScanArgs(t, nil, "--set", "processors.tenantguard.tenant_attributes=[tenant.id, http.request.header.x-tenant-id]", mismatch)
	if out.code != exitFindings || !strings.Contains(out.stdout, "http.request.header.x-tenant-id=globex") {
		t.Errorf("--set tenant_attributes: exit %d, want 1 with the mismatch\n%s%s", out.code, out.stdout, out.stderr)
	}
}

func TestScanAllScenariosInOneRun(t *testing.T) {
	var all []scanGolden
	var paths []string
	seen := map[string]bool{}
	for _, sc := range scenarios(t) {
		paths = append(paths, sc.path)
		for _, g := range sc.golden {
			if seen[g.LeakID] {
				t.Fatalf("leak id %s in two scenarios", g.LeakID)
			}
			seen[g.LeakID] = true
			all = append(all, g)
		}
	}
	out := runScanArgs(t, nil, append([]string{"--config", scanConfigPath, "--format", "json"}, paths...)...)
	if out.code != exitFindings {
		t.Errorf("exit %d, want 1\n%s", out.code, out.stderr)
	}
	// A per-service finding (missing_tenant, unscoped_query) names the
	// first trace of its window as its example: with the order scrambled,
	// another trace of the same window may be first. Its leak id is stable.
	var gotEv []store.Evidence
	for _, ev := range jsonFindings(t, out.stdout) {
		if ev.Rule == "missing_tenant" || ev.Rule == "unscoped_query" {
			ev.TraceID, ev.Tenants = "", nil
		}
		gotEv = append(gotEv, ev)
	}
	for i := range all {
		if all[i].Rule == "missing_tenant" || all[i].Rule == "unscoped_query" {
			all[i].TraceID, all[i].Tenants = "", []string{}
		}
	}
	if got, want := reduce(gotEv), canonGoldens(all); got != want {
		t.Errorf("findings differ\n--- got\n%s\n--- want\n%s", got, want)
	}
}

func TestScanUsageErrors(t *testing.T) {
	clean := filepath.Join(scanScenarioDir, "clean.json")
	emptyDir := t.TempDir()
	emptyFile := writeFile(t, filepath.Join(t.TempDir(), "empty.json"), nil)
	for _, tc := range []struct {
		args []string
		says string
	}{
		{nil, "no PATH given"},
		{[]string{"--format", "xml", clean}, `--format "xml"`},
		{[]string{"--fail-on", "severe", clean}, `--fail-on "severe"`},
		{[]string{"--processor", "tenantguard/x", clean}, "--processor needs --config"},
		{[]string{"--config", "/no/such/collector.yaml", clean}, "tenantguard scan: --config /no/such/collector.yaml: no such file\n"},
		{[]string{"--output", "/no/such/dir/report.xml", clean}, "--output"},
		{[]string{"/no/such/traces.json"}, "/no/such/traces.json: no such file or directory"},
		{[]string{emptyDir}, emptyDir + ": directory holds no trace file"},
		{[]string{emptyFile}, "no span in the input: nothing was checked"},
	} {
		out := runScanArgs(t, nil, tc.args...)
		if out.code != exitInput || !strings.Contains(out.stderr, tc.says) {
			t.Errorf("scan %q: exit %d, want 2 saying %q\nstderr: %s", tc.args, out.code, tc.says, out.stderr)
		}
	}
	if out := runScanArgs(t, nil, "--allow-empty", emptyFile); out.code != exitClean {
		t.Errorf("--allow-empty on an empty input: exit %d\n%s", out.code, out.stderr)
	}
}

// TestScanExitCodesThroughBinary checks the exit status of the real binary
// (the command exits itself; the collector's root command would exit 1).
func TestScanExitCodesThroughBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the collector binary")
	}
	bin := tenantguardBinary(t)
	for _, tc := range []struct {
		args []string
		want int
		says string
	}{
		{[]string{"scan", "--config", scanConfigPath, filepath.Join(scanScenarioDir, "clean.json")}, exitClean, "no findings"},
		{[]string{"scan", "--config", scanConfigPath, filepath.Join(scanScenarioDir, "shared_inventory.json")}, exitFindings, "2 findings"},
		{[]string{"scan", "--config", scanConfigPath, "--fail-on", "critical", filepath.Join(scanScenarioDir, "header_mismatch.json")}, exitClean, "1 finding"},
		{[]string{"scan", "--no-such-flag", filepath.Join(scanScenarioDir, "clean.json")}, exitInput, "unknown flag: --no-such-flag"},
		{[]string{"scan", "/no/such/file.json"}, exitInput, "no such file or directory"},
		{[]string{"scan"}, exitInput, "no PATH given"},
	} {
		cmd := exec.Command(bin, tc.args...)
		got, err := cmd.CombinedOutput()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.want || !strings.Contains(string(got), tc.says) {
			t.Errorf("tenantguard %q: exit %d, want %d saying %q\n%s", tc.args, code, tc.want, tc.says, got)
		}
	}
}
