package main

// tenantguard scan's input: traces split over files, malformed input, and
// memory bounded however large the input.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/store"
)

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
