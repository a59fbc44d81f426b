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
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/detector"
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

// TestScanJoinsTracesSplitOverFiles writes every span of every scenario into
// its own request file, in nested directories whose lexical order is the
// reverse of the spans' order, alternating JSON, protobuf and gzip: one scan
// of the directory must give exactly the goldens.
var refusalCode = regexp.MustCompile(`, and was refused \([^)]*\)`)

func TestScanJoinsTracesSplitOverFiles(t *testing.T) {
	dir := t.TempDir()
	var all []scanGolden
	var spans []ptrace.Traces
	for _, sc := range scenarios(t) {
		all = append(all, sc.golden...)
		for _, td := range sc.reqs {
			rss := td.ResourceSpans()
			for i := 0; i < rss.Len(); i++ {
				sss := rss.At(i).ScopeSpans()
				for j := 0; j < sss.Len(); j++ {
					ss := sss.At(j).Spans()
					for k := 0; k < ss.Len(); k++ {
						one := ptrace.NewTraces()
						rs := one.ResourceSpans().AppendEmpty()
						rss.At(i).Resource().CopyTo(rs.Resource())
						scope := rs.ScopeSpans().AppendEmpty()
						sss.At(j).Scope().CopyTo(scope.Scope())
						ss.At(k).CopyTo(scope.Spans().AppendEmpty())
						spans = append(spans, one)
					}
				}
			}
		}
	}
	n := len(spans)
	for i, td := range spans {
		rank := n - i // lexical order of the paths is the reverse of i
		path := filepath.Join(dir, fmt.Sprintf("part-%03d", rank/5), fmt.Sprintf("span-%04d", rank))
		switch i % 4 {
		case 0:
			writeFile(t, path+".json", jsonOf(t, td))
		case 1:
			writeFile(t, path+".pb", protoOf(t, td))
		case 2:
			writeFile(t, path+".json.gz", gzipBytes(t, jsonOf(t, td)))
		case 3:
			writeFile(t, path+".binpb.gz", gzipBytes(t, protoOf(t, td)))
		}
	}
	writeFile(t, filepath.Join(dir, "README.md"), []byte("not a trace file: a directory scan skips it\n"))
	out := runScanArgs(t, nil, "--config", scanConfigPath, "--format", "json", dir)
	if out.code != exitFindings {
		t.Errorf("exit %d, want 1\nstderr: %s", out.code, out.stderr)
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
		// A span keeps its details (here, a refusal's status code) only
		// when its own request raised or changed the finding, in the
		// collector as here; with one span a request, the refused span's
		// request raised nothing.
		all[i].Message = refusalCode.ReplaceAllString(all[i].Message, ", and was refused")
	}
	if got, want := reduce(gotEv), canonGoldens(all); got != want {
		t.Errorf("findings over %d one-span files differ from the goldens\n--- got\n%s\n--- want\n%s", n, got, want)
	}
	if !strings.Contains(out.stderr, fmt.Sprintf("from %d inputs", n)) {
		t.Errorf("want %d inputs read; stderr: %s", n, out.stderr)
	}
}

// compact renders a scenario request as one JSON line.
func compact(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(scanScenarioDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		t.Fatal(err)
	}
	return append(b.Bytes(), '\n')
}

// entriesOf is the resourceSpans entries of a compact request, without
// the array's brackets.
func entriesOf(line []byte) []byte {
	b := bytes.TrimSpace(line)
	return b[len(`{"resourceSpans":[`) : len(b)-len(`]}`)]
}

// traceIDs lists the traces with findings, each once.
func traceIDs(evs []store.Evidence) []string {
	var ids []string
	for _, ev := range evs {
		ids = append(ids, ev.TraceID)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

const (
	traceSharedInventory = "286f490d54c344f98350b1d0feeae75b"
	traceHeaderMismatch  = "b3afb9f713fe5685a9eaf524790970fb"
)

func TestScanMalformedInputLosesNothingReadable(t *testing.T) {
	dir := t.TempDir()
	leak, mismatch := compact(t, "shared_inventory.json"), compact(t, "header_mismatch.json")
	both := []string{traceSharedInventory, traceHeaderMismatch}

	t.Run("json line", func(t *testing.T) {
		path := writeFile(t, filepath.Join(dir, "bad.jsonl"), slices.Concat(leak, []byte("{\"resourceSpans\": [{oops\n"), mismatch))
		out := runScanArgs(t, nil, "--config", scanConfigPath, "--format", "json", path)
		if out.code != exitInput || !strings.Contains(out.stderr, path+":2: invalid OTLP JSON") {
			t.Errorf("exit %d, want 2 with %s:2 named\nstderr: %s", out.code, path, out.stderr)
		}
		if got := traceIDs(jsonFindings(t, out.stdout)); !slices.Equal(got, both) {
			t.Errorf("findings from the readable lines: %q, want %q", got, both)
		}
	})
	t.Run("json line with trailing data", func(t *testing.T) {
		path := writeFile(t, filepath.Join(dir, "trailing.json"), slices.Concat(leak, []byte(`{"resourceSpans":[]} {"resourceSpans":[]}`+"\n"), mismatch))
		out := runScanArgs(t, nil, "--config", scanConfigPath, "--format", "json", path)
		if out.code != exitInput || !strings.Contains(out.stderr, path+":2: invalid OTLP JSON: not one JSON object") {
			t.Errorf("exit %d, want 2 with %s:2 named\nstderr: %s", out.code, path, out.stderr)
		}
		if got := traceIDs(jsonFindings(t, out.stdout)); !slices.Equal(got, both) {
			t.Errorf("findings from the readable lines: %q, want %q", got, both)
		}
	})
	t.Run("json document", func(t *testing.T) {
		// Two pretty-printed documents; the second breaks on its line 5.
		doc := slices.Concat([]byte("{\n  \"resourceSpans\": [\n"), entriesOf(leak), []byte("\n  ]\n}\n"))
		bad := []byte("{\n  \"resourceSpans\": [\n    {\"resource\": {}},\n    {\"resource\": {}}\n    {\"resource\": {}}\n  ]\n}\n")
		docLines := bytes.Count(doc, []byte("\n"))
		path := writeFile(t, filepath.Join(dir, "bad.json"), slices.Concat(doc, bad))
		out := runScanArgs(t, nil, "--config", scanConfigPath, "--format", "json", path)
		if want := fmt.Sprintf("%s:%d: invalid JSON", path, docLines+5); out.code != exitInput || !strings.Contains(out.stderr, want) {
			t.Errorf("exit %d, want 2 with %q\nstderr: %s", out.code, want, out.stderr)
		}
		if got := traceIDs(jsonFindings(t, out.stdout)); !slices.Equal(got, []string{traceSharedInventory}) {
			t.Errorf("findings from the readable document: %q", got)
		}
	})
	t.Run("json document entry", func(t *testing.T) {
		// Well-formed JSON, but the second resourceSpans entry is not OTLP:
		// it is reported at its line, and the entries around it are judged.
		doc := slices.Concat([]byte("{\n\"resourceSpans\": [\n"), entriesOf(leak), []byte(",\n{\"scopeSpans\": [{\"spans\": [{\"traceId\": \"not hex\"}]}]}\n]\n}\n"))
		path := writeFile(t, filepath.Join(dir, "entry.json"), doc)
		out := runScanArgs(t, nil, "--config", scanConfigPath, "--format", "json", path)
		if want := path + ":4: resourceSpans[2]: invalid OTLP JSON"; out.code != exitInput || !strings.Contains(out.stderr, want) {
			t.Errorf("exit %d, want 2 with %q\nstderr: %s", out.code, want, out.stderr)
		}
		if got := traceIDs(jsonFindings(t, out.stdout)); !slices.Equal(got, []string{traceSharedInventory}) {
			t.Errorf("findings: %q", got)
		}
	})
	t.Run("truncated json document", func(t *testing.T) {
		doc := slices.Concat([]byte("{\n\"resourceSpans\": [\n"), entriesOf(leak), []byte(",\n{\"resource\": {\"attributes\": [\n"))
		path := writeFile(t, filepath.Join(dir, "cut-doc.json"), doc)
		out := runScanArgs(t, nil, "--config", scanConfigPath, "--format", "json", path)
		if want := path + ":5: the JSON ends inside a request (truncated file?)"; out.code != exitInput || !strings.Contains(out.stderr, want) {
			t.Errorf("exit %d, want 2 with %q\nstderr: %s", out.code, want, out.stderr)
		}
		if got := traceIDs(jsonFindings(t, out.stdout)); !slices.Equal(got, []string{traceSharedInventory}) {
			t.Errorf("the entries before the cut are judged: %q", got)
		}
	})
	t.Run("truncated gzip", func(t *testing.T) {
		gz, ends := gzipParts(t, leak, mismatch)
		path := writeFile(t, filepath.Join(dir, "cut.json.gz"), gz[:(ends[0]+ends[1])/2]) // cut inside the second line
		out := runScanArgs(t, nil, "--config", scanConfigPath, "--format", "json", path)
		if out.code != exitInput || !strings.Contains(out.stderr, path+":2: gzip: the compressed data ends early (truncated file?)") {
			t.Errorf("exit %d, want 2 naming line 2 and the truncation\nstderr: %s", out.code, out.stderr)
		}
		if got := traceIDs(jsonFindings(t, out.stdout)); !slices.Equal(got, []string{traceSharedInventory}) {
			t.Errorf("findings from the readable line: %q", got)
		}
	})
	t.Run("truncated protobuf request", func(t *testing.T) {
		td, _ := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(leak)
		pb := protoOf(t, td)
		path := writeFile(t, filepath.Join(dir, "cut.pb"), pb[:len(pb)-10])
		out := runScanArgs(t, nil, "--config", scanConfigPath, path)
		if out.code != exitInput || !strings.Contains(out.stderr, path+": byte offset ") ||
			!strings.Contains(out.stderr, "truncated: resource_spans entry declares") {
			t.Errorf("exit %d, want 2 with the byte offset and the truncation\nstderr: %s", out.code, out.stderr)
		}
	})
	t.Run("truncated protobuf records", func(t *testing.T) {
		reqs := []ptrace.Traces{}
		for _, line := range [][]byte{leak, mismatch} {
			td, _ := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(line)
			reqs = append(reqs, td)
		}
		recs := records(t, reqs)
		first := 4 + len(protoOf(t, reqs[0]))
		path := writeFile(t, filepath.Join(dir, "cut-records.pb.gz"), gzipBytes(t, recs[:len(recs)-7]))
		out := runScanArgs(t, nil, "--config", scanConfigPath, "--format", "json", path)
		want := fmt.Sprintf("%s: byte offset %d of the decompressed data: truncated: record declares %d bytes", path, first, len(recs)-first-4)
		if out.code != exitInput || !strings.Contains(out.stderr, want) {
			t.Errorf("exit %d, want 2 with %q\nstderr: %s", out.code, want, out.stderr)
		}
		if got := traceIDs(jsonFindings(t, out.stdout)); !slices.Equal(got, []string{traceSharedInventory}) {
			t.Errorf("findings from the readable record: %q", got)
		}
	})
	t.Run("corrupt protobuf record", func(t *testing.T) {
		var recs []byte
		recs = binary.BigEndian.AppendUint32(recs, 3)
		recs = append(recs, 0x0a, 0x05, 0x01) // a resource_spans entry claiming 5 bytes, holding 1
		td, _ := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(leak)
		recs = append(recs, records(t, []ptrace.Traces{td})...)
		path := writeFile(t, filepath.Join(dir, "corrupt.pb"), recs)
		out := runScanArgs(t, nil, "--config", scanConfigPath, "--format", "json", path)
		if out.code != exitInput || !strings.Contains(out.stderr, path+": byte offset 0: invalid OTLP record") {
			t.Errorf("exit %d, want 2 naming byte offset 0\nstderr: %s", out.code, out.stderr)
		}
		if got := traceIDs(jsonFindings(t, out.stdout)); !slices.Equal(got, []string{traceSharedInventory}) {
			t.Errorf("the record after the corrupt one is still judged: %q", got)
		}
	})
	t.Run("not OTLP at all", func(t *testing.T) {
		path := writeFile(t, filepath.Join(dir, "image.bin"), []byte("\x89PNG\r\n\x1a\n"))
		out := runScanArgs(t, nil, path, filepath.Join(scanScenarioDir, "shared_inventory.json"))
		if out.code != exitInput || !strings.Contains(out.stderr, path+": neither OTLP JSON nor OTLP protobuf") {
			t.Errorf("exit %d\nstderr: %s", out.code, out.stderr)
		}
		if !strings.Contains(out.stdout, "critical cross_tenant_trace FAIL") {
			t.Errorf("the readable input is still reported:\n%s", out.stdout)
		}
	})
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

// junitDoc is the JUnit report as a consumer reads it.
type junitDoc struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Errors   int `xml:"errors,attr"`
	Suites   []struct {
		Name     string `xml:"name,attr"`
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Errors   int    `xml:"errors,attr"`
		Cases    []struct {
			Name      string `xml:"name,attr"`
			Classname string `xml:"classname,attr"`
			File      string `xml:"file,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Body    string `xml:",chardata"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
			} `xml:"error"`
			SystemOut string `xml:"system-out"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// xmllint validates path against the JUnit schema. Without xmllint the test
// is skipped on a developer machine and fails in CI (CI=true), which must
// install it (Debian: libxml2-utils).
func xmllint(t *testing.T, path string) {
	t.Helper()
	bin, err := exec.LookPath("xmllint")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("xmllint is not installed: CI must install it (apt-get install -y libxml2-utils) to validate the JUnit report")
		}
		t.Skip("xmllint not installed (apt-get install -y libxml2-utils); the JUnit report is not validated against the schema")
	}
	out, err := exec.Command(bin, "--noout", "--schema", scanJUnitXSDPath, path).CombinedOutput()
	if err != nil {
		t.Fatalf("%s does not validate against %s: %v\n%s", path, scanJUnitXSDPath, err, out)
	}
}

// noUnscoped turns the unscoped-query rule off for the report-format tests,
// whose counts are about crossings and mismatches.
const noUnscoped = "--set=processors.tenantguard.unscoped_query.tables=[]"

func TestScanJUnit(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, filepath.Join(dir, "bad.jsonl"), []byte("{not json\n"))
	report := filepath.Join(dir, "junit.xml")
	out := runScanArgs(t, nil, "--config", scanConfigPath, noUnscoped, "--format", "junit", "--output", report, "--fail-on", "critical",
		filepath.Join(scanScenarioDir, "shared_inventory.json"), filepath.Join(scanScenarioDir, "header_mismatch.json"),
		filepath.Join(scanScenarioDir, "clean.json"), bad)
	if out.code != exitInput || out.stdout != "" {
		t.Errorf("exit %d (want 2: one input is bad), stdout %q (want the report in --output)", out.code, out.stdout)
	}
	if !strings.Contains(out.stderr, "2 findings (1 critical, 1 high; 1 at or above --fail-on critical)") {
		t.Errorf("the summary goes to stderr when the report goes to a file; stderr:\n%s", out.stderr)
	}

	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var doc junitDoc
	if err := xml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Tests != 7 || doc.Failures != 1 || doc.Errors != 1 {
		t.Errorf("testsuites tests=%d failures=%d errors=%d, want 7 (a case per rule, and the input error), 1, 1\n%s",
			doc.Tests, doc.Failures, doc.Errors, raw)
	}
	var names []string
	for _, s := range doc.Suites {
		names = append(names, s.Name)
		for _, c := range s.Cases {
			if c.Classname != s.Name {
				t.Errorf("test case %q: classname %q, want its suite's %q", c.Name, c.Classname, s.Name)
			}
		}
	}
	var want []string
	for _, r := range detector.Rules {
		want = append(want, "tenantguard."+string(r))
	}
	if want = append(want, "tenantguard.input"); !slices.Equal(names, want) {
		t.Fatalf("suites %q, want %q", names, want)
	}
	// A rule nothing tripped has one passing case that says so.
	for _, i := range []int{1, 3, 4, 5} {
		cs := doc.Suites[i].Cases
		if wantName := "no " + string(detector.Rules[i]) + " finding in 6 traces"; len(cs) != 1 || cs[0].Name != wantName || cs[0].Failure != nil {
			t.Errorf("suite %s: want one passing case %q, got %+v", doc.Suites[i].Name, wantName, cs)
		}
	}
	cross := doc.Suites[0].Cases
	if len(cross) != 1 || cross[0].Failure == nil || cross[0].Failure.Type != "critical" ||
		!strings.Contains(cross[0].Name, traceSharedInventory) ||
		!strings.Contains(cross[0].Failure.Message, "reached tenant globex at inventory-svc `SELECT stock`") ||
		!strings.Contains(cross[0].Failure.Body, "crossing  gateway `GET /inventory` (acme) → inventory-svc `SELECT stock` (globex)") ||
		!strings.HasSuffix(cross[0].File, "shared_inventory.json") {
		t.Errorf("cross_tenant_trace: want one failing case for the shared inventory trace, got %+v", cross)
	}
	mm := doc.Suites[2].Cases
	if len(mm) != 1 || mm[0].Failure != nil || !strings.Contains(mm[0].SystemOut, "below --fail-on critical") {
		t.Errorf("tenant_mismatch below --fail-on: want a passing case with the finding in system-out, got %+v", mm)
	}
	in := doc.Suites[6].Cases
	if len(in) != 1 || in[0].Error == nil || !strings.Contains(in[0].Error.Message, bad+":1: invalid OTLP JSON") {
		t.Errorf("input errors are error cases: %+v", in)
	}

	// A clean scan still reports a passing case per rule.
	clean := runScanArgs(t, nil, "--config", scanConfigPath, noUnscoped, "--format", "junit", filepath.Join(scanScenarioDir, "clean.json"))
	cleanPath := writeFile(t, filepath.Join(dir, "clean.xml"), []byte(clean.stdout))
	var cdoc junitDoc
	if err := xml.Unmarshal([]byte(clean.stdout), &cdoc); err != nil {
		t.Fatal(err)
	}
	if clean.code != exitClean || cdoc.Tests != len(detector.Rules) || cdoc.Failures != 0 || cdoc.Suites[0].Cases[0].Name != "no cross_tenant_trace finding in 4 traces" {
		t.Errorf("clean scan: exit %d, JUnit %s", clean.code, clean.stdout)
	}

	// Span names are user data: markup in them must survive.
	td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(compact(t, "shared_inventory.json"))
	if err != nil {
		t.Fatal(err)
	}
	const odd = "GET /a?x=1&y=<b>]]></failure>\"é\x01"
	renamed := 0
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		for j := 0; j < td.ResourceSpans().At(i).ScopeSpans().Len(); j++ {
			spans := td.ResourceSpans().At(i).ScopeSpans().At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				if spans.At(k).Name() == "SELECT stock" {
					spans.At(k).SetName(odd)
					renamed++
				}
			}
		}
	}
	if renamed != 1 {
		t.Fatalf("renamed %d spans, want the one SELECT stock", renamed)
	}
	oddPath := writeFile(t, filepath.Join(dir, "odd.json"), jsonOf(t, td))
	oddReport := filepath.Join(dir, "odd.xml")
	if out := runScanArgs(t, nil, "--config", scanConfigPath, noUnscoped, "--format", "junit", "--output", oddReport, oddPath); out.code != exitFindings {
		t.Errorf("odd names: exit %d\n%s", out.code, out.stderr)
	}
	raw, err = os.ReadFile(oddReport)
	if err != nil {
		t.Fatal(err)
	}
	var odoc junitDoc
	if err := xml.Unmarshal(raw, &odoc); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	if f := odoc.Suites[0].Cases[0].Failure; f == nil || !strings.Contains(f.Message, "GET /a?x=1&y=<b>]]></failure>\"é") ||
		!strings.Contains(f.Body, "GET /a?x=1&y=<b>]]></failure>\"é") {
		t.Errorf("the span name did not survive the XML: %+v\n%s", f, raw)
	}

	// Last, as it may skip: the reports validate against the schema.
	xmllint(t, report)
	xmllint(t, cleanPath)
	xmllint(t, oddReport)
}

func TestScanSARIF(t *testing.T) {
	out := runScanArgs(t, nil, "--config", scanConfigPath, noUnscoped, "--format", "sarif",
		filepath.Join(scanScenarioDir, "shared_inventory.json"), filepath.Join(scanScenarioDir, "split_requests.jsonl"),
		filepath.Join(scanScenarioDir, "header_mismatch.json"))
	if out.code != exitFindings {
		t.Errorf("exit %d\n%s", out.code, out.stderr)
	}
	var log struct {
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string `json:"name"`
					Rules []struct {
						ID string `json:"id"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				RuleIndex int    `json:"ruleIndex"`
				Level     string `json:"level"`
				Message   struct {
					Text string `json:"text"`
				} `json:"message"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
						Region struct {
							StartLine int `json:"startLine"`
						} `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
				PartialFingerprints map[string]string `json:"partialFingerprints"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out.stdout), &log); err != nil {
		t.Fatalf("SARIF does not parse: %v\n%s", err, out.stdout)
	}
	if log.Version != "2.1.0" || len(log.Runs) != 1 || log.Runs[0].Tool.Driver.Name != "tenantguard" {
		t.Fatalf("SARIF header: %s", out.stdout)
	}
	run := log.Runs[0]
	var got []string
	for _, r := range run.Results {
		if run.Tool.Driver.Rules[r.RuleIndex].ID != r.RuleID || r.PartialFingerprints["tenantguardLeakId/v1"] == "" {
			t.Errorf("result %s: ruleIndex %d or fingerprint wrong", r.RuleID, r.RuleIndex)
		}
		loc := r.Locations[0].PhysicalLocation
		got = append(got, fmt.Sprintf("%s %s %s:%d", r.RuleID, r.Level, filepath.Base(loc.ArtifactLocation.URI), loc.Region.StartLine))
	}
	slices.Sort(got)
	want := []string{
		"cross_tenant_trace error shared_inventory.json:1",
		"cross_tenant_trace error split_requests.jsonl:2", // the crossing appears with line 2
		"tenant_mismatch error header_mismatch.json:1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("results %q, want %q", got, want)
	}
}

func TestScanTextReport(t *testing.T) {
	out := runScanArgs(t, nil, "--config", scanConfigPath, noUnscoped, filepath.Join(scanScenarioDir, "shared_inventory.json"))
	for _, want := range []string{
		"critical cross_tenant_trace FAIL\n",
		"  trace 286f490d… from tenant acme reached tenant globex at inventory-svc `SELECT stock`, from gateway `GET /inventory` through 1 span without a tenant\n",
		"  tenants   acme, globex\n",
		"  crossing  gateway `GET /inventory` (acme) → inventory-svc `SELECT stock` (globex), through 1 span without a tenant\n",
		"  spans     fa034f5180477414 gateway `GET /inventory`, tenant acme (tenant.id)\n",
		"  leak id   4b4e31208f82bdbc04fe135839a48c0f (closed, 3 spans)\n",
		"tenantguard scan: 1 finding (1 critical; 1 at or above --fail-on high) in 1 trace (3 spans) from 1 input\n",
	} {
		if !strings.Contains(out.stdout, want) {
			t.Errorf("text report lacks %q:\n%s", want, out.stdout)
		}
	}
}

// TestScanMemoryIsBounded streams 200,000 spans (20,000 traces) through a
// pipe with max_traces 1000, and samples the heap as it goes: it must stay
// well under what holding the input would take. A generous bound, not a
// measurement.
func TestScanMemoryIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 200,000 spans")
	}
	const (
		traces        = 20_000
		spansPerTrace = 10
		leakEvery     = 5_000
		bound         = 16 << 20
	)
	pr, pw := io.Pipe()
	var peak, base uint64
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base = heap()
	written := make(chan int64, 1)
	go func() {
		bw := bufio.NewWriterSize(pw, 64<<10)
		var n int64
		var line []byte
		for i := range traces {
			line = appendRequest(line[:0], i, spansPerTrace, i%leakEvery == leakEvery-1)
			k, err := bw.Write(line)
			n += int64(k)
			if err != nil {
				break
			}
			if i%2000 == 0 {
				peak = max(peak, heap())
			}
		}
		_ = bw.Flush()
		_ = pw.Close()
		written <- n
	}()
	out := runScanArgs(t, pr, "--set", "processors.tenantguard.max_traces=1000", "--format", "json", "-")
	n := <-written
	peak = max(peak, heap())
	if out.code != exitFindings {
		t.Errorf("exit %d, want 1\n%s", out.code, out.stderr)
	}
	if got := len(jsonFindings(t, out.stdout)); got != traces/leakEvery {
		t.Errorf("%d findings, want %d", got, traces/leakEvery)
	}
	if want := fmt.Sprintf("in %d traces (%d spans)", traces, traces*spansPerTrace); !strings.Contains(out.stderr, want) {
		t.Errorf("want %q in the summary; stderr:\n%s", want, out.stderr)
	}
	t.Logf("streamed %d MiB; heap peak %d MiB over a %d MiB base", n>>20, peak>>20, base>>20)
	if peak > base+bound {
		t.Errorf("heap reached %d MiB over a %d MiB base while streaming %d MiB with max_traces 1000: want under %d MiB more",
			peak>>20, base>>20, n>>20, bound>>20)
	}
	if n < 2*bound {
		t.Errorf("the stream (%d MiB) must be much larger than the bound (%d MiB) for the test to mean anything", n>>20, bound>>20)
	}
}

// appendRequest appends one OTLP JSON line: a trace of n spans of tenant
// acme (a root and its children), the last child reading globex's rows
// when leak is set.
func appendRequest(b []byte, i, n int, leak bool) []byte {
	b = append(b, `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}},`+
		`{"key":"service.version","value":{"stringValue":"1.0.0"}}]},"scopeSpans":[{"scope":{"name":"load"},"spans":[`...)
	for s := range n {
		if s > 0 {
			b = append(b, ',')
		}
		tenant := "acme"
		if leak && s == n-1 {
			tenant = "globex"
		}
		parent := ""
		if s > 0 {
			parent = fmt.Sprintf(`"parentSpanId":"%016x",`, 1)
		}
		b = fmt.Appendf(b, `{"traceId":"%032x","spanId":"%016x",%s"name":"SELECT stock %d","kind":3,`+
			`"startTimeUnixNano":"1772443800000000000","endTimeUnixNano":"1772443800001000000",`+
			`"attributes":[{"key":"tenant.id","value":{"stringValue":"%s"}}]}`,
			i+1, s+1, parent, s, tenant)
	}
	return append(b, "]}]}]}\n"...)
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
