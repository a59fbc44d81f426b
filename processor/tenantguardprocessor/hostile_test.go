package tenantguardprocessor

// Hostile input: requests a careless or malicious client can send. Every
// case runs twice: through a detector built from the processor config (to
// read its counters and findings), and through the processor the collector
// builds (NewFactory().CreateTraces), which must forward every request
// unchanged and leave a journal of valid JSON. Small versions of these
// requests are the hand-made seeds of FuzzOTLPProtobuf and FuzzOTLPJSON.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
	"github.com/tenantguard/tenantguard/store/journal"
)

// hSpan describes one span of a hostile request.
type hSpan struct {
	trace      pcommon.TraceID
	id, parent pcommon.SpanID
	service    string
	name       string
	attrs      map[string]any
	set        func(pcommon.Map) // for what FromRaw cannot build (deep nesting)
}

func hTrace(n uint64) pcommon.TraceID {
	id := pcommon.TraceID{0x7e, 0x57}
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

// hID is a span id; hID(0) is the all-zero id (a root's parent).
func hID(n uint64) pcommon.SpanID {
	var id pcommon.SpanID
	binary.BigEndian.PutUint64(id[:], n)
	return id
}

func hTenant(t string) map[string]any { return map[string]any{"tenant.id": t} }

// hRequest builds one request; consecutive spans of one service share a resource.
func hRequest(spans ...hSpan) ptrace.Traces {
	td := ptrace.NewTraces()
	var ss ptrace.SpanSlice
	last := "\x00none"
	for _, s := range spans {
		if s.service != last || last == "\x00none" {
			rs := td.ResourceSpans().AppendEmpty()
			rs.Resource().Attributes().PutStr("service.name", s.service)
			ss = rs.ScopeSpans().AppendEmpty().Spans()
			last = s.service
		}
		sp := ss.AppendEmpty()
		sp.SetTraceID(s.trace)
		sp.SetSpanID(s.id)
		sp.SetParentSpanID(s.parent)
		sp.SetName(s.name)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(time.Unix(1_772_443_800, 0)))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(time.Unix(1_772_443_801, 0)))
		if err := sp.Attributes().FromRaw(s.attrs); err != nil {
			panic(err)
		}
		if s.set != nil {
			s.set(sp.Attributes())
		}
	}
	return td
}

// hostileConfig is the default processor config, a tenant derivation from
// url.path, and a journal in a temporary directory.
func hostileConfig(t *testing.T) *Config {
	t.Helper()
	cfg := createDefaultConfig().(*Config)
	cfg.TenantDerivations = []DerivationConfig{{Attribute: "url.path", Regex: `^/t/(?P<tenant>[^/]+)/`}}
	cfg.Store.Journal.Path = filepath.Join(t.TempDir(), "leaks.jsonl")
	cfg.Instance = "hostile-test"
	cfg.Metrics.Endpoint = ""
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// hostileRun is what the detector and the processor made of the requests.
type hostileRun struct {
	findings []detector.Finding // every version, in emission order
	stats    detector.Stats     // after the last request, before Flush
	invalid  int                // spans skipped for an all-zero trace id
	evidence []store.Evidence   // every record in the processor's journal after shutdown
}

// feedHostile feeds the requests (one batch each) to a detector built from
// cfg, of 4 shards with every request grouped by shard when grouped, and
// returns what it raised (and its stats before Flush) once flushed.
func feedHostile(t *testing.T, cfg *Config, grouped bool, tds []ptrace.Traces) *hostileRun {
	t.Helper()
	run := &hostileRun{}
	var mu sync.Mutex
	var adjust func(*detector.Config)
	if grouped {
		adjust = func(c *detector.Config) { c.Shards = 4 }
	}
	d, ex, err := NewDetector(cfg, func(f detector.Finding) {
		mu.Lock()
		run.findings = append(run.findings, f)
		mu.Unlock()
	}, adjust)
	if err != nil {
		t.Fatal(err)
	}
	ex.alwaysGroup = grouped
	for _, td := range tds {
		b := d.NewBatch()
		run.invalid += ex.Feed(b, td)
		b.Close()
	}
	run.stats = d.Stats()
	d.Flush()
	if st := d.Stats(); st.TracesActive != 0 {
		t.Errorf("%d traces in memory after Flush", st.TracesActive)
	}
	mu.Lock()
	defer mu.Unlock()
	fzCheckFindings(t, cfg, run.findings)
	return run
}

// runHostile feeds the requests (one batch each) to a detector built from
// cfg, read in order as a sender alone is, and again to one of 4 shards
// whose extractor groups every request by shard (read ahead, as while
// requests overlap): both must see the same spans and raise the same
// findings. Then it sends them through the processor the collector builds;
// see hostilePassThrough.
func runHostile(t *testing.T, cfg *Config, tds ...ptrace.Traces) *hostileRun {
	t.Helper()
	run := feedHostile(t, cfg, false, tds)
	grouped := feedHostile(t, cfg, true, tds)
	latest := func(fs []detector.Finding) []string { // each finding's last version
		last := map[string]detector.Finding{}
		for _, f := range fs {
			if l, ok := last[f.LeakID]; !ok || f.Version > l.Version {
				last[f.LeakID] = f
			}
		}
		var out []string
		for id, f := range last {
			out = append(out, fmt.Sprintf("%s %s %d spans %d tenants", id, f.Status, f.SpanCount, len(f.Tenants)))
		}
		slices.Sort(out)
		return out
	}
	in, gr := run.stats, grouped.stats
	if in.Spans != gr.Spans || in.SpansOverCap != gr.SpansOverCap || in.TenantsRejected != gr.TenantsRejected ||
		in.SpansWithoutTenant != gr.SpansWithoutTenant || run.invalid != grouped.invalid {
		t.Errorf("read in order: %+v, %d invalid; grouped by shard: %+v, %d invalid", in, run.invalid, gr, grouped.invalid)
	}
	if a, b := latest(run.findings), latest(grouped.findings); !slices.Equal(a, b) {
		t.Errorf("read in order, the findings are %q; grouped by shard, %q", a, b)
	}
	run.evidence = hostilePassThrough(t, cfg, tds...)
	// Both ran the same rules on the same spans: they name the same findings.
	var fromDetector, fromJournal []string
	for _, f := range run.findings {
		fromDetector = append(fromDetector, f.LeakID)
	}
	for _, ev := range run.evidence {
		fromJournal = append(fromJournal, ev.LeakID)
	}
	slices.Sort(fromDetector)
	slices.Sort(fromJournal)
	if fromDetector, fromJournal = slices.Compact(fromDetector), slices.Compact(fromJournal); !slices.Equal(fromDetector, fromJournal) {
		t.Errorf("the journal holds findings %q, the detector emitted %q", fromJournal, fromDetector)
	}
	return run
}

// hostilePassThrough sends the requests through the processor built by the
// factory, as the collector runs it, and checks that each comes out exactly
// as it went in (same span count, same protobuf encoding) and that the
// journal it wrote holds only valid JSON, which it returns.
func hostilePassThrough(t *testing.T, cfg *Config, tds ...ptrace.Traces) []store.Evidence {
	t.Helper()
	c := *cfg
	c.Store.Journal.Path = filepath.Join(t.TempDir(), "leaks.jsonl")
	c.Metrics.Endpoint = ""
	ctx := context.Background()
	sink := new(consumertest.TracesSink)
	p, err := NewFactory().CreateTraces(ctx, processortest.NewNopSettings(Type), &c, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	want := make([][]byte, len(tds))
	spans := 0
	for i, td := range tds {
		want[i] = fzProto(t, td)
		spans += td.SpanCount()
		if err := p.ConsumeTraces(ctx, td); err != nil {
			t.Fatalf("request %d: ConsumeTraces must never fail: %v", i, err)
		}
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	got := sink.AllTraces()
	if len(got) != len(tds) || sink.SpanCount() != spans {
		t.Fatalf("forwarded %d requests with %d spans, want %d with %d", len(got), sink.SpanCount(), len(tds), spans)
	}
	for i := range got {
		if !bytes.Equal(fzProto(t, got[i]), want[i]) {
			t.Fatalf("request %d changed on its way through", i)
		}
	}
	raw, err := os.ReadFile(c.Store.Journal.Path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for n, line := range bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")) {
		if len(raw) > 0 && (!json.Valid(line) || !utf8.Valid(line)) {
			t.Fatalf("journal line %d is not valid UTF-8 JSON: %.200q", n+1, line)
		}
	}
	recs, rep, err := journal.ReadFile(c.Store.Journal.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Corrupt) > 0 || rep.TornTail {
		t.Fatalf("journal read back with corrupt lines %v (torn tail %v)", rep.Corrupt, rep.TornTail)
	}
	return recs
}

func (r *hostileRun) latest(trace pcommon.TraceID, rule detector.Rule) (detector.Finding, bool) {
	var out detector.Finding
	found := false
	for _, f := range r.findings {
		if f.TraceID == detector.TraceID(trace) && f.Rule == rule {
			out, found = f, true
		}
	}
	return out, found
}

func (r *hostileRun) mustLatest(t *testing.T, trace pcommon.TraceID, rule detector.Rule) detector.Finding {
	t.Helper()
	f, ok := r.latest(trace, rule)
	if !ok {
		t.Fatalf("no %s finding for trace %s; got %d findings", rule, trace, len(r.findings))
	}
	return f
}

type hEdge struct {
	from, to uint64
	hops     int
}

func edgesOf(f detector.Finding) []hEdge {
	var out []hEdge
	for _, e := range f.Edges {
		out = append(out, hEdge{binary.BigEndian.Uint64(e.From.SpanID[:]), binary.BigEndian.Uint64(e.To.SpanID[:]), e.Hops})
	}
	slices.SortFunc(out, func(a, b hEdge) int {
		if a.from != b.from {
			return int(a.from) - int(b.from)
		}
		return int(a.to) - int(b.to)
	})
	return out
}

// TestHostileTraceAndSpanIDs: spans with an all-zero trace id cannot be
// grouped: they are skipped, counted as invalid and still forwarded. An
// all-zero span id is a span like any other that no child can name (a zero
// parent id means "root"). Ids of the wrong length or not in hex never get
// past the OTLP unmarshalers.
func TestHostileTraceAndSpanIDs(t *testing.T) {
	cfg := hostileConfig(t)
	zero := pcommon.TraceID{}
	invalidReq := hRequest(
		hSpan{trace: zero, id: hID(1), service: "gateway", name: "GET /", attrs: hTenant("acme")},
		hSpan{trace: zero, id: hID(2), parent: hID(1), service: "db", name: "SELECT", attrs: hTenant("globex")},
		hSpan{trace: zero, service: "db", name: "zero ids", attrs: hTenant("initech")},
		hSpan{trace: hTrace(1), id: hID(1), service: "gateway", name: "GET /", attrs: hTenant("acme")},
	)
	zeroSpans := hRequest(
		hSpan{trace: hTrace(2), service: "gateway", name: "zero span id", attrs: hTenant("acme")},
		hSpan{trace: hTrace(2), service: "gateway", name: "zero span id again", attrs: hTenant("globex")},
		hSpan{trace: hTrace(2), id: hID(1), service: "orders", name: "root", attrs: hTenant("globex")},
		hSpan{trace: hTrace(2), id: hID(2), parent: hID(1), service: "stock", name: "child", attrs: hTenant("acme")},
	)
	run := runHostile(t, cfg, invalidReq, zeroSpans)
	if run.invalid != 3 {
		t.Errorf("%d spans skipped as invalid, want 3", run.invalid)
	}
	if run.stats.Spans != 5 {
		t.Errorf("detector read %d spans, want 5 (the 3 with a zero trace id skipped)", run.stats.Spans)
	}
	for _, f := range run.findings {
		if f.TraceID.IsEmpty() || f.TraceID == detector.TraceID(hTrace(1)) {
			t.Errorf("finding for trace %s: %s", f.TraceID, f.Rule)
		}
	}
	f := run.mustLatest(t, hTrace(2), detector.RuleCrossTenantTrace)
	if !slices.Equal(f.Tenants, []string{"acme", "globex"}) {
		t.Errorf("tenants %q", f.Tenants)
	}
	// The only parent→child edge is 1→2; the zero-id spans are roots.
	if got, want := edgesOf(f), []hEdge{{1, 2, 0}}; !slices.Equal(got, want) {
		t.Errorf("edges %v, want %v", got, want)
	}

	// The processor counts what it skipped (tenantguard_spans_invalid_total).
	p := startProcessorHostile(t, cfg)
	if _, err := p.processTraces(context.Background(), invalidReq); err != nil {
		t.Fatal(err)
	}
	if got := p.invalidSpans.Load(); got != 3 {
		t.Errorf("processor counted %d invalid spans, want 3", got)
	}

	// Malformed ids are refused by the unmarshalers (the receiver answers
	// 400): nothing reaches the processor, and nothing panics.
	for _, js := range []string{
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"abc","spanId":"0102030405060708"}]}]}]}`,
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f1011","spanId":"0102030405060708"}]}]}]}`,
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"zz02030405060708"}]}]}]}`,
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102","parentSpanId":"01"}]}]}]}`,
	} {
		if _, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces([]byte(js)); err == nil {
			t.Errorf("JSON with a malformed id was accepted: %s", js)
		}
	}
	// A protobuf span whose trace id is 15 bytes long.
	span := append([]byte{0x0a, 15}, bytes.Repeat([]byte{1}, 15)...)
	scope := append([]byte{0x12, byte(len(span))}, span...)
	resource := append([]byte{0x12, byte(len(scope))}, scope...)
	req := append([]byte{0x0a, byte(len(resource))}, resource...)
	if _, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(req); err == nil {
		t.Error("protobuf with a 15-byte trace id was accepted")
	}
	// An empty traceId in JSON is the all-zero id: accepted, then skipped.
	td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"","spanId":"","attributes":[{"key":"tenant.id","value":{"stringValue":"acme"}}]}]}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if run := runHostile(t, cfg, td); run.invalid != 1 || run.stats.Spans != 0 {
		t.Errorf("empty JSON trace id: %d invalid, %d read; want 1 and 0", run.invalid, run.stats.Spans)
	}
}

// startProcessorHostile builds the processor without starting it, to read
// its counters.
func startProcessorHostile(t *testing.T, cfg *Config) *tenantguard {
	t.Helper()
	p, err := newTenantguard(processortest.NewNopSettings(Type), cfg, newShared())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// withTimeout runs f, failing the test if it has not returned within d: a
// parent cycle must never hang the span path.
func withTimeout(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	done := make(chan struct{})
	var panicked any
	go func() {
		defer close(done)
		defer func() { panicked = recover() }()
		f()
	}()
	select {
	case <-done:
		if panicked != nil {
			t.Fatalf("%s panicked: %v", what, panicked)
		}
		if t.Failed() {
			t.FailNow() // f failed (and stopped) on its goroutine
		}
	case <-ctx.Done():
		t.Fatalf("%s did not return within %s", what, d)
	}
}

// TestHostileParentCycles: parent ids that loop (A→B→A, a span that is its
// own parent, loops through spans without a tenant, a long ring) never hang
// the detector, and the edges it reports join two spans of the loop with
// different tenants.
func TestHostileParentCycles(t *testing.T) {
	cfg := hostileConfig(t)
	cycle := hRequest(
		hSpan{trace: hTrace(1), id: hID(1), parent: hID(2), service: "svc-a", name: "a", attrs: hTenant("acme")},
		hSpan{trace: hTrace(1), id: hID(2), parent: hID(1), service: "svc-b", name: "b", attrs: hTenant("globex")},
	)
	self := hRequest(
		hSpan{trace: hTrace(2), id: hID(1), parent: hID(1), service: "svc-a", name: "self", attrs: hTenant("acme")},
		hSpan{trace: hTrace(2), id: hID(2), parent: hID(1), service: "svc-b", name: "child", attrs: hTenant("globex")},
		// A tenantless self-parent: the walk up from span 4 never ends by itself.
		hSpan{trace: hTrace(2), id: hID(3), parent: hID(3), service: "proxy", name: "self, no tenant"},
		hSpan{trace: hTrace(2), id: hID(4), parent: hID(3), service: "svc-c", name: "under the loop", attrs: hTenant("initech")},
	)
	through := hRequest(
		hSpan{trace: hTrace(3), id: hID(1), parent: hID(10), service: "svc-a", name: "a", attrs: hTenant("acme")},
		hSpan{trace: hTrace(3), id: hID(10), parent: hID(11), service: "proxy", name: "p10"},
		hSpan{trace: hTrace(3), id: hID(11), parent: hID(10), service: "proxy", name: "p11"},
		hSpan{trace: hTrace(3), id: hID(2), parent: hID(11), service: "svc-b", name: "b", attrs: hTenant("globex")},
	)
	// A ring of 900 tenantless spans with 50 tenant spans hanging off it:
	// every walk up goes round the ring until its bound.
	var ring []hSpan
	for i := uint64(0); i < 900; i++ {
		ring = append(ring, hSpan{trace: hTrace(4), id: hID(1000 + i), parent: hID(1000 + (i+1)%900), service: "proxy", name: "ring"})
	}
	for i := uint64(0); i < 50; i++ {
		ring = append(ring, hSpan{trace: hTrace(4), id: hID(1 + i), parent: hID(1000 + i*17), service: "svc", name: "leaf",
			attrs: hTenant(fmt.Sprintf("tenant-%d", i%2))})
	}
	ringReq := hRequest(ring...)

	var run *hostileRun
	withTimeout(t, 30*time.Second, "judging parent cycles", func() {
		// The ring also arrives span by span, so it is judged again on every request.
		tds := []ptrace.Traces{cycle, self, through, ringReq}
		for i := 0; i < 200; i++ {
			tds = append(tds, hRequest(hSpan{trace: hTrace(4), id: hID(5000 + uint64(i)), parent: hID(1000 + uint64(i)), service: "svc", name: "late leaf", attrs: hTenant("tenant-1")}))
		}
		run = runHostile(t, cfg, tds...)
	})

	f := run.mustLatest(t, hTrace(1), detector.RuleCrossTenantTrace)
	if got, want := edgesOf(f), []hEdge{{1, 2, 0}, {2, 1, 0}}; !slices.Equal(got, want) {
		t.Errorf("A↔B: edges %v, want %v", got, want)
	}
	f = run.mustLatest(t, hTrace(2), detector.RuleCrossTenantTrace)
	if got, want := edgesOf(f), []hEdge{{1, 2, 0}}; !slices.Equal(got, want) {
		t.Errorf("self-parent: edges %v, want %v (no edge from a span to itself, none through a tenantless loop)", got, want)
	}
	if !slices.Equal(f.Tenants, []string{"acme", "globex", "initech"}) {
		t.Errorf("self-parent: tenants %q", f.Tenants)
	}
	f = run.mustLatest(t, hTrace(3), detector.RuleCrossTenantTrace)
	if len(f.Edges) != 0 || !slices.Equal(f.Tenants, []string{"acme", "globex"}) {
		t.Errorf("loop through tenantless spans: edges %v, tenants %q; want no edge (no tenant-carrying ancestor), two tenants", edgesOf(f), f.Tenants)
	}
	f = run.mustLatest(t, hTrace(4), detector.RuleCrossTenantTrace)
	if len(f.Edges) != 0 || !slices.Equal(f.Tenants, []string{"tenant-0", "tenant-1"}) {
		t.Errorf("ring: edges %v, tenants %q; want no edge, two tenants", edgesOf(f), f.Tenants)
	}
}

// TestHostileHugeAttributeValues: a 1 MB tenant value is rejected and
// counted; a 1 MB url.path goes through the derivation, which reads only
// its first 4 KiB.
func TestHostileHugeAttributeValues(t *testing.T) {
	cfg := hostileConfig(t)
	mb := strings.Repeat("a", 1<<20)
	tr := hTrace(1)
	td := hRequest(
		hSpan{trace: tr, id: hID(1), service: "gateway", name: "1 MB tenant", attrs: hTenant(mb)},
		hSpan{trace: tr, id: hID(2), parent: hID(1), service: "gateway", name: "1 MB tenant, padded", attrs: map[string]any{"tenant_id": " " + mb + " "}},
		hSpan{trace: tr, id: hID(3), parent: hID(1), service: "gateway", name: "1 MB path", attrs: map[string]any{"url.path": "/t/globex/" + mb}},
		// The closing slash is past the first 4 KiB: no tenant.
		hSpan{trace: tr, id: hID(4), parent: hID(1), service: "gateway", name: "slash past 4 KiB", attrs: map[string]any{"url.path": "/t/" + strings.Repeat("b", 5000) + "/x"}},
		// A derived tenant longer than 256 bytes is rejected like any other.
		hSpan{trace: tr, id: hID(5), parent: hID(1), service: "gateway", name: "long derived tenant", attrs: map[string]any{"url.path": "/t/" + strings.Repeat("c", 300) + "/x"}},
		hSpan{trace: tr, id: hID(6), parent: hID(1), service: "gateway", name: "acme", attrs: hTenant("acme")},
	)
	run := runHostile(t, cfg, td)
	if run.stats.TenantsRejected != 3 {
		t.Errorf("%d tenant values rejected, want 3 (two 1 MB values, one 300-byte derived tenant)", run.stats.TenantsRejected)
	}
	if run.stats.SpansWithoutTenant != 4 {
		t.Errorf("%d spans without tenant, want 4", run.stats.SpansWithoutTenant)
	}
	f := run.mustLatest(t, tr, detector.RuleCrossTenantTrace)
	if !slices.Equal(f.Tenants, []string{"acme", "globex"}) {
		t.Errorf("tenants %q, want acme and globex (from the first 4 KiB of the 1 MB path)", f.Tenants)
	}
	for _, ev := range run.evidence {
		if b, _ := json.Marshal(ev); len(b) > 64<<10 {
			t.Errorf("journal record %s is %d KiB: a 1 MB value leaked into evidence", ev.LeakID, len(b)>>10)
		}
	}

	// 1 MB service and span names are no tenants: judged and forwarded
	// like any other, and kept cut to MaxNameLength, so neither the name
	// tables nor the evidence grow with them.
	names := hRequest(
		hSpan{trace: hTrace(2), id: hID(1), service: "gateway", name: "GET /", attrs: hTenant("acme")},
		hSpan{trace: hTrace(2), id: hID(2), parent: hID(1), service: "svc-" + mb, name: "op-" + mb, attrs: hTenant("globex")},
	)
	run = runHostile(t, cfg, names)
	f = run.mustLatest(t, hTrace(2), detector.RuleCrossTenantTrace)
	if !slices.Equal(f.Tenants, []string{"acme", "globex"}) || len(f.Edges) != 1 {
		t.Errorf("1 MB names: tenants %q, %d edges; want acme, globex and one edge", f.Tenants, len(f.Edges))
	}
	largest := 0
	for _, ev := range run.evidence {
		b, _ := json.Marshal(ev)
		largest = max(largest, len(b))
	}
	if largest > 16<<10 {
		t.Errorf("1 MB service and span names: largest journal record %d KiB", largest>>10)
	}
	if to := f.Edges[0].To; len(to.Service) > detector.MaxNameLength || len(to.Name) > detector.MaxNameLength ||
		!strings.HasPrefix(to.Service, "svc-aaa") || !strings.HasSuffix(to.Name, "…") {
		t.Errorf("1 MB names in the edge: service %d bytes, span %d bytes, want them cut to %d and marked",
			len(to.Service), len(to.Name), detector.MaxNameLength)
	}
}

// TestHostileNonUTF8: tenant values, service and span names that are not
// UTF-8 are judged as they are, and the evidence the journal stores is still
// valid JSON that reads back.
func TestHostileNonUTF8(t *testing.T) {
	cfg := hostileConfig(t)
	tr := hTrace(1)
	td := hRequest(
		hSpan{trace: tr, id: hID(1), service: "gate\xffway", name: "GET /\xc0\xaf", attrs: hTenant("ac\xffme")},
		hSpan{trace: tr, id: hID(2), parent: hID(1), service: "inv\xfe-svc", name: "SELECT \x80stock", attrs: map[string]any{
			"tenant.id": "glo\xc3\x28bex", "db.system.name": "postgresql"}},
		hSpan{trace: tr, id: hID(3), parent: hID(2), service: "\xed\xa0\x80", name: "\x00", attrs: map[string]any{
			"tenant.id": "ok", "tenant_id": "\xf0\x28\x8c\xbc"}},
	)
	run := runHostile(t, cfg, td)
	f := run.mustLatest(t, tr, detector.RuleCrossTenantTrace)
	if want := []string{"ac\xffme", "glo\xc3\x28bex", "ok"}; !slices.Equal(f.Tenants, want) {
		t.Errorf("tenants %q, want %q", f.Tenants, want)
	}
	if len(run.evidence) == 0 {
		t.Fatal("no evidence in the journal")
	}
	sawMismatch := false
	for _, ev := range run.evidence {
		for _, s := range append(append([]string{ev.TraceID}, ev.Tenants...), ev.Services...) {
			if !utf8.ValidString(s) {
				t.Errorf("journal record %s reads back a string that is not UTF-8: %q", ev.LeakID, s)
			}
		}
		if ev.Rule == string(detector.RuleCrossTenantTrace) && len(ev.Tenants) != 3 {
			t.Errorf("journal record %s lists tenants %q, want 3", ev.LeakID, ev.Tenants)
		}
		if ev.Rule == string(detector.RuleTenantMismatch) {
			sawMismatch = true
		}
	}
	if !sawMismatch {
		t.Error("span 3 names two tenants: no tenant_mismatch in the journal")
	}
}

// hostileSeedRequests are small versions of the cases above, the hand-made
// seeds of FuzzOTLPProtobuf and FuzzOTLPJSON.
func hostileSeedRequests() []ptrace.Traces {
	zero := pcommon.TraceID{}
	var out []ptrace.Traces
	// All-zero trace and span ids.
	out = append(out, hRequest(
		hSpan{trace: zero, id: hID(1), service: "gateway", name: "zero trace", attrs: hTenant("acme")},
		hSpan{trace: hTrace(1), service: "gateway", name: "zero span", attrs: hTenant("acme")},
		hSpan{trace: hTrace(1), service: "db", name: "zero span again", attrs: hTenant("globex")},
		hSpan{trace: hTrace(1), id: hID(2), service: "db", name: "root", attrs: hTenant("globex")},
	))
	// Parent cycles: A↔B, self-parent, a loop through tenantless spans.
	out = append(out, hRequest(
		hSpan{trace: hTrace(2), id: hID(1), parent: hID(2), service: "a", name: "a", attrs: hTenant("acme")},
		hSpan{trace: hTrace(2), id: hID(2), parent: hID(1), service: "b", name: "b", attrs: hTenant("globex")},
		hSpan{trace: hTrace(3), id: hID(1), parent: hID(1), service: "a", name: "self", attrs: hTenant("acme")},
		hSpan{trace: hTrace(3), id: hID(2), parent: hID(3), service: "p", name: "p2"},
		hSpan{trace: hTrace(3), id: hID(3), parent: hID(2), service: "p", name: "p3"},
		hSpan{trace: hTrace(3), id: hID(4), parent: hID(3), service: "b", name: "b", attrs: hTenant("globex")},
	))
	// 300 tenants in one trace, and 300 in one span's array.
	var many []hSpan
	array := make([]any, 300)
	for i := range 300 {
		many = append(many, hSpan{trace: hTrace(4), id: hID(uint64(i + 1)), parent: hID(1), service: "svc", name: "op", attrs: hTenant(fmt.Sprintf("t%03d", i))})
		array[i] = fmt.Sprintf("t%03d", i)
	}
	many = append(many, hSpan{trace: hTrace(5), id: hID(1), service: "gateway", name: "array", attrs: map[string]any{"tenant.id": array}})
	out = append(out, hRequest(many...))
	// Long values, a derivation past 4 KiB, non-UTF-8, odd types.
	out = append(out, hRequest(
		hSpan{trace: hTrace(6), id: hID(1), service: "gateway", name: "long", attrs: map[string]any{
			"tenant.id": strings.Repeat("x", 5000), "url.path": "/t/" + strings.Repeat("y", 4100) + "/"}},
		hSpan{trace: hTrace(6), id: hID(2), parent: hID(1), service: "gate\xffway", name: "GET /\xc0", attrs: map[string]any{
			"tenant.id": "ac\xffme", "tenant_id": "globex", "http.request.header.x-tenant-id": []any{"initech", 42, 42.0, true, nil}}},
		hSpan{trace: hTrace(6), id: hID(3), parent: hID(1), service: "svc", name: "types", attrs: map[string]any{
			"tenant.id": math.NaN(), "tenant_id": int64(math.MinInt64), "url.path": 7, "auth.jwt.kid": "kid-legacy-shared",
			"db.query.text": "SELECT * FROM orders", "db.system.name": "redis", "http.response.status_code": int64(math.MaxInt64)}},
	))
	// Nesting, shallow enough to stay a small seed.
	out = append(out, hRequest(hSpan{trace: hTrace(7), id: hID(1), service: "gateway", name: "nested", set: func(m pcommon.Map) {
		sl := m.PutEmptySlice("tenant.id")
		mp := m.PutEmptyMap("tenant_id")
		for range 64 {
			sl = sl.AppendEmpty().SetEmptySlice()
			mp = mp.PutEmptyMap("x")
		}
	}}))
	// More traces than the fuzz config's max_traces, and links among them.
	var traces []hSpan
	for i := range 3 * fzMaxTraces {
		traces = append(traces, hSpan{trace: hTrace(uint64(100 + i)), id: hID(1), service: "svc", name: "op", attrs: hTenant(fmt.Sprintf("t%d", i%3))})
	}
	links := hRequest(traces...)
	spans := links.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	for i := 1; i < spans.Len(); i++ {
		l := spans.At(i).Links().AppendEmpty()
		l.SetTraceID(hTrace(uint64(100 + i - 1)))
		l.SetSpanID(hID(1))
		self := spans.At(i).Links().AppendEmpty()
		self.SetTraceID(spans.At(i).TraceID())
		self.SetSpanID(spans.At(i).SpanID())
	}
	out = append(out, links)
	return out
}
