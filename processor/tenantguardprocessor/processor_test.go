package tenantguardprocessor

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tenantguard/tenantguard/store"
	"github.com/tenantguard/tenantguard/store/journal"
)

// spanSpec describes one span for building test requests.
type spanSpec struct {
	trace, span, parent byte
	service, name       string
	attrs               map[string]any
}

func traceID(b byte) pcommon.TraceID { return pcommon.TraceID{0x4b, 0xf9, 15: b} }
func spanID(b byte) pcommon.SpanID {
	if b == 0 {
		return pcommon.SpanID{}
	}
	return pcommon.SpanID{0xa0, 7: b}
}

// request builds one OTLP request, one resource per span so that services differ.
func request(specs ...spanSpec) ptrace.Traces {
	td := ptrace.NewTraces()
	for _, s := range specs {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", s.service)
		sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		sp.SetTraceID(traceID(s.trace))
		sp.SetSpanID(spanID(s.span))
		sp.SetParentSpanID(spanID(s.parent))
		sp.SetName(s.name)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(time.Unix(1_700_000_000, 0)))
		if err := sp.Attributes().FromRaw(s.attrs); err != nil {
			panic(err)
		}
	}
	return td
}

// leakingTrace is the forgetful inventory service: gateway serves acme,
// the query below it reads globex's rows.
func leakingTrace(trace byte) ptrace.Traces {
	return request(
		spanSpec{trace, 1, 0, "gateway", "GET /inventory", map[string]any{"tenant.id": "acme"}},
		spanSpec{trace, 2, 1, "inventory-svc", "GET /stock", nil},
		spanSpec{trace, 3, 2, "inventory-svc", "SELECT stock", map[string]any{"tenant.id": "globex", "db.system.name": "postgresql"}},
	)
}

func testConfig(t *testing.T) *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.Store.Journal.Path = filepath.Join(t.TempDir(), "leaks.jsonl")
	cfg.Instance = "test-collector"
	cfg.Metrics.Endpoint = "" // tests that scrape pick a free port
	return cfg
}

func marshal(t *testing.T, td ptrace.Traces) []byte {
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPassThroughIsByteIdentical(t *testing.T) {
	cfg := testConfig(t)
	sink := new(consumertest.TracesSink)
	p, err := NewFactory().CreateTraces(context.Background(), processortest.NewNopSettings(Type), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if p.Capabilities().MutatesData {
		t.Fatal("tenantguard must declare that it does not mutate data")
	}
	if err := p.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	inputs := []ptrace.Traces{
		leakingTrace(1),
		request(spanSpec{2, 1, 0, "svc", "op", map[string]any{"tenant.id": []any{" acme ", 42}, "tenant_id": true, "big": string(make([]byte, 4096))}}),
		request(spanSpec{0, 1, 0, "svc", "zero trace id", nil}), // invalid id: still forwarded
		ptrace.NewTraces(),
	}
	var want [][]byte
	for _, td := range inputs {
		want = append(want, marshal(t, td))
		if err := p.ConsumeTraces(context.Background(), td); err != nil {
			t.Fatalf("ConsumeTraces must never fail: %v", err)
		}
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := sink.AllTraces()
	if len(got) != len(inputs) {
		t.Fatalf("forwarded %d requests, want %d", len(got), len(inputs))
	}
	for i := range got {
		if !bytes.Equal(marshal(t, got[i]), want[i]) {
			t.Errorf("request %d changed on its way through", i)
		}
	}
}

// startProcessor builds the processor directly so tests can reach its seams.
func startProcessor(t *testing.T, cfg *Config, logger *zap.Logger) *tenantguard {
	t.Helper()
	set := processortest.NewNopSettings(Type)
	if logger != nil {
		set.Logger = logger
	}
	p, err := newTenantguard(set, cfg, newShared())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func consume(t *testing.T, p *tenantguard, td ptrace.Traces) {
	t.Helper()
	out, err := p.processTraces(context.Background(), td)
	if err != nil {
		t.Fatal(err)
	}
	if out != td {
		t.Fatal("processTraces must return the request it was given")
	}
}

// journaled is the latest version of every finding in cfg's journal.
func journaled(t *testing.T, cfg *Config) []store.Evidence {
	t.Helper()
	recs, _, err := journal.ReadFile(cfg.Store.Journal.Path)
	if err != nil {
		t.Fatal(err)
	}
	return store.Latest(recs)
}

func TestFindingReachesJournalAndLog(t *testing.T) {
	cfg := testConfig(t)
	core, logs := observer.New(zap.InfoLevel)
	p := startProcessor(t, cfg, zap.New(core))
	if err := p.start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	consume(t, p, leakingTrace(1))
	consume(t, p, leakingTrace(2))
	consume(t, p, request(spanSpec{3, 1, 0, "gateway", "GET /cart", map[string]any{"tenant.id": "acme"}}))
	if err := p.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	latest := journaled(t, cfg)
	if len(latest) != 2 {
		t.Fatalf("want 2 findings (traces 1 and 2), got %d: %+v", len(latest), latest)
	}
	for _, ev := range latest {
		if ev.Rule != "cross_tenant_trace" || ev.Status != "closed" || ev.Collector != "test-collector" {
			t.Errorf("finding %+v", ev)
		}
		if len(ev.CrossingEdges) != 1 || ev.CrossingEdges[0].From.Service != "gateway" ||
			ev.CrossingEdges[0].To.Span != "SELECT stock" || ev.CrossingEdges[0].Hops != 1 {
			t.Errorf("crossing edge %+v", ev.CrossingEdges)
		}
	}
	warned := logs.FilterMessageSnippet("tenant isolation finding").FilterField(zap.String("trace_id", latest[0].TraceID))
	if warned.Len() == 0 {
		t.Fatalf("no log line for finding of trace %s", latest[0].TraceID)
	}
	// The log says what the journal's record says, in the one sentence.
	want := latest[0].Message(store.Plain)
	if !strings.Contains(want, "from tenant acme reached tenant globex at inventory-svc `SELECT stock`, from gateway `GET /inventory`") {
		t.Errorf("message of the journal's record: %q", want)
	}
	var said []string
	for _, e := range warned.All() {
		said = append(said, e.Message)
	}
	if !slices.Contains(said, "tenant isolation finding updated: "+want) {
		t.Errorf("no log line gives the closed finding's message %q; logged:\n%s", want, strings.Join(said, "\n"))
	}
}

// flakyStore fails on command, and records what it accepted.
type flakyStore struct {
	mu       sync.Mutex
	failNext int
	accepted []store.Evidence
	calls    int
}

func (f *flakyStore) Append(_ context.Context, batch []store.Evidence) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.failNext > 0 {
		f.failNext--
		return errors.New("disk full")
	}
	f.accepted = append(f.accepted, batch...)
	return nil
}
func (f *flakyStore) List(context.Context, store.Filter) ([]store.Evidence, error) { return nil, nil }
func (f *flakyStore) Close() error                                                 { return nil }

func TestStoreOutageLosesNothing(t *testing.T) {
	cfg := testConfig(t)
	cfg.Alerts.Log.Enabled = false
	p := startProcessor(t, cfg, nil)
	fs := &flakyStore{failNext: 3}
	p.openStore = func() (store.Store, error) { return fs, nil }
	if err := p.start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	for i := byte(1); i <= 20; i++ {
		consume(t, p, leakingTrace(i))
	}
	if err := p.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.calls < 4 {
		t.Fatalf("store saw %d calls; the 3 failures were not retried", fs.calls)
	}
	latest := store.Latest(fs.accepted)
	if len(latest) != 20 {
		t.Fatalf("want all 20 findings after the outage, got %d", len(latest))
	}
	for _, ev := range latest {
		if ev.Status != "closed" {
			t.Errorf("finding %s: last version should be closed, is %s", ev.LeakID, ev.Status)
		}
	}
	if got := p.storeFailures.Load(); got != 3 {
		t.Errorf("store failures counted %d, want 3", got)
	}
}

func TestQueueOverflowIsCountedAndLoggedWithTraceID(t *testing.T) {
	cfg := testConfig(t)
	cfg.QueueSize = 2
	core, logs := observer.New(zap.ErrorLevel)
	p := startProcessor(t, cfg, zap.New(core))
	// The worker is not started: the queue can only fill.
	for i := byte(1); i <= 3; i++ {
		consume(t, p, leakingTrace(i))
	}
	if got := p.queueFull.Load(); got != 1 {
		t.Fatalf("queue_full counted %d, want 1", got)
	}
	lost := logs.FilterMessageSnippet("evidence queue full").All()
	if len(lost) != 1 {
		t.Fatalf("want one error log for the lost finding, got %d", len(lost))
	}
	if tid := lost[0].ContextMap()["trace_id"]; tid != traceIDHex(3) {
		t.Errorf("log names trace %v, want %s", tid, traceIDHex(3))
	}
}

func traceIDHex(b byte) string {
	id := traceID(b)
	return pcommon.TraceID(id).String()
}

func TestUnopenableJournalKeepsSpansFlowing(t *testing.T) {
	cfg := testConfig(t)
	// A path under a regular file can never be created.
	blocker := filepath.Join(t.TempDir(), "file")
	if err := writeFile(blocker); err != nil {
		t.Fatal(err)
	}
	cfg.Store.Journal.Path = filepath.Join(blocker, "leaks.jsonl")
	core, logs := observer.New(zap.WarnLevel)
	sink := new(consumertest.TracesSink)
	set := processortest.NewNopSettings(Type)
	set.Logger = zap.New(core)
	proc, err := NewFactory().CreateTraces(context.Background(), set, cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatalf("a bad journal path must not stop the collector: %v", err)
	}
	if err := proc.ConsumeTraces(context.Background(), leakingTrace(1)); err != nil {
		t.Fatal(err)
	}
	if sink.SpanCount() != 3 {
		t.Fatalf("spans must flow while the store is down; got %d", sink.SpanCount())
	}
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessageSnippet("evidence store write failed").Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if logs.FilterMessageSnippet("evidence store write failed").Len() == 0 {
		t.Fatal("the store failure was not logged")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = proc.Shutdown(ctx)
	if err == nil {
		t.Fatal("shutdown must report findings the store refused")
	}
	if logs.FilterMessageSnippet("finding not recorded").FilterField(zap.String("trace_id", traceIDHex(1))).Len() == 0 {
		t.Fatal("the unrecorded finding's trace id must be logged")
	}
}

func writeFile(path string) error { return os.WriteFile(path, []byte("x"), 0o600) }

func TestEvictionsAreLogged(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxTraces = 1
	cfg.IdleWindow = time.Minute
	core, logs := observer.New(zap.WarnLevel)
	p := startProcessor(t, cfg, zap.New(core))
	if err := p.start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	defer p.shutdown(context.Background())
	for i := byte(1); i <= 50; i++ {
		consume(t, p, request(spanSpec{i, 1, 0, "gateway", "GET /", map[string]any{"tenant.id": "acme"}}))
	}
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessageSnippet("raise max_traces").Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	warned := logs.FilterMessageSnippet("raise max_traces").All()
	if len(warned) == 0 {
		t.Fatal("evictions were silent")
	}
	if n := warned[0].ContextMap()["evicted_since_last_warning"]; n == uint64(0) || n == nil {
		t.Fatalf("warning does not count the evictions: %v", warned[0].ContextMap())
	}
}

// A panic while a request is read (a bug in an allow condition, say) must
// not leave the shard the batch holds locked: the next request, the sweep
// and shutdown still go through.
func TestPanicWhileReadingReleasesTheShard(t *testing.T) {
	cfg := testConfig(t)
	p := startProcessor(t, cfg, nil)
	if err := p.start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	p.extract.allow = func(_ *allowState, _ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) string {
		if sp.Name() == "boom" {
			panic("allow condition bug")
		}
		return ""
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic was swallowed")
			}
		}()
		// The first span is ingested (its shard is now held), the second panics.
		_, _ = p.processTraces(context.Background(), request(
			spanSpec{1, 1, 0, "gateway", "GET /", map[string]any{"tenant.id": "acme"}},
			spanSpec{1, 2, 1, "svc", "boom", nil}))
	}()
	withTimeout(t, 10*time.Second, "the next request on the same trace, a sweep and shutdown", func() {
		consume(t, p, request(spanSpec{1, 3, 1, "inventory-svc", "SELECT stock", map[string]any{"tenant.id": "globex"}}))
		p.det.Sweep()
		if err := p.shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	if latest := journaled(t, cfg); len(latest) != 1 || len(latest[0].Tenants) != 2 {
		t.Errorf("the trace's crossing must still be found after the panic: %+v", latest)
	}
}
