package tenantguardprocessor

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
	"github.com/tenantguard/tenantguard/store/journal"
)

// Every request that raised a finding returns with the finding in the
// journal, also when many requests raise findings at once.
func TestAcknowledgedFindingsAreInTheJournal(t *testing.T) {
	cfg := testConfig(t)
	cfg.Alerts.Log.Enabled = false
	p := startProcessor(t, cfg, nil)
	if err := p.start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	defer p.shutdown(context.Background())
	var wg sync.WaitGroup
	for i := byte(1); i <= 40; i++ {
		wg.Go(func() {
			consume(t, p, leakingTrace(i))
			for _, ev := range journaled(t, cfg) {
				if ev.TraceID == traceIDHex(i) {
					return
				}
			}
			t.Errorf("request for trace %d returned before its finding was in the journal", i)
		})
	}
	wg.Wait()
}

// hungStore blocks every Append until released, as a disk that stopped
// answering does.
type hungStore struct {
	release  chan struct{}
	mu       sync.Mutex
	accepted []store.Evidence
}

func (h *hungStore) Append(ctx context.Context, batch []store.Evidence) error {
	select {
	case <-h.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	h.mu.Lock()
	h.accepted = append(h.accepted, batch...)
	h.mu.Unlock()
	return nil
}
func (h *hungStore) List(context.Context, store.Filter) ([]store.Evidence, error) { return nil, nil }
func (h *hungStore) Close() error                                                 { return nil }

// A store that hangs holds a request no longer than durableAckWait; the
// finding stays queued and lands once the store answers.
func TestHungStoreDoesNotHoldRequests(t *testing.T) {
	cfg := testConfig(t)
	cfg.Alerts.Log.Enabled = false
	p := startProcessor(t, cfg, nil)
	hs := &hungStore{release: make(chan struct{})}
	p.openStore = func() (store.Store, error) { return hs, nil }
	if err := p.start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	withTimeout(t, durableAckWait+5*time.Second, "a leaking request while the store hangs", func() {
		consume(t, p, leakingTrace(1))
	})
	if p.storeHealthy.Load() {
		t.Error("after a request waited out the bound the store must count as failing, so later requests do not wait")
	}
	close(hs.release)
	if err := p.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if latest := store.Latest(hs.accepted); len(latest) != 1 || latest[0].TraceID != traceIDHex(1) {
		t.Fatalf("the finding kept while the store hung: %+v", latest)
	}
}

// startOnJournal starts a processor whose store is cfg's journal as wrap
// returns it: a seam that notes or holds its appends.
func startOnJournal(t *testing.T, cfg *Config, wrap func(store.Store) store.Store, prepare ...func(*tenantguard)) *tenantguard {
	t.Helper()
	p := startProcessor(t, cfg, nil)
	for _, f := range prepare {
		f(p)
	}
	p.openStore = func() (store.Store, error) {
		j, err := journal.Open(cfg.Store.Journal.Path)
		if err != nil {
			return nil, err
		}
		return wrap(j), nil
	}
	if err := p.start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	return p
}

// withShards gives the processor a detector of n shards, whatever
// GOMAXPROCS (a startOnJournal preparation).
func withShards(t *testing.T, cfg *Config, n int) func(*tenantguard) {
	return func(p *tenantguard) {
		det, ex, err := newDetector(cfg, func(c *detector.Config) { c.Shards = n }, p.onFinding, componenttest.NewNopTelemetrySettings())
		if err != nil {
			t.Fatal(err)
		}
		p.det, p.extract = det, ex
	}
}

// gatedStore is the real journal whose appends after the first open ones
// wait until gate is closed, as a disk that stopped answering does.
type gatedStore struct {
	store.Store
	open int
	gate chan struct{}
	mu   sync.Mutex
	n    int
}

func (g *gatedStore) Append(ctx context.Context, batch []store.Evidence) error {
	g.mu.Lock()
	g.n++
	n := g.n
	g.mu.Unlock()
	if n > g.open {
		select {
		case <-g.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Store.Append(ctx, batch)
}

// A request that raised nothing of its own does not wait for the closing
// versions of the traces it pushed out of memory: their spans were judged,
// and made durable, with the requests that carried them. It returns while
// the journal hangs, without waiting out durableAckWait (after which the
// store would count as failing), and the closing versions reach the journal
// with the next write: here the one the sweep loop wakes once the journal
// answers again.
func TestEvictionAloneDoesNotWaitForTheJournal(t *testing.T) {
	const leaks = 20
	cfg := testConfig(t)
	cfg.Alerts.Log.Enabled = false
	cfg.MaxTraces = leaks // the second request pushes the first's traces out
	gs := &gatedStore{open: 1, gate: make(chan struct{})}
	var release sync.Once
	open := func() { release.Do(func() { close(gs.gate) }) }
	p := startOnJournal(t, cfg, func(j store.Store) store.Store { gs.Store = j; return gs })
	defer p.shutdown(context.Background())
	defer open() // runs first: shutdown waits for a worker held at the gate
	consume(t, p, storm(1, leaks))
	if got := len(journaled(t, cfg)); got != leaks {
		t.Fatalf("the leaking request returned with %d findings in the journal, want %d", got, leaks)
	}
	// Four times as many clean traces: every shard's share of the first
	// request's traces is pushed out.
	var clean []spanSpec
	for tr := leaks + 1; tr <= 5*leaks; tr++ {
		clean = append(clean, spanSpec{byte(tr), 1, 0, "gateway", "GET /", map[string]any{"tenant.id": "acme"}})
	}
	withTimeout(t, durableAckWait+5*time.Second, "a clean request pushing leaking traces out while the journal hangs", func() {
		consume(t, p, request(clean...))
	})
	if !p.storeHealthy.Load() {
		t.Fatal("the clean request waited out durableAckWait for the closing versions of the traces it evicted")
	}
	open()
	deadline := time.Now().Add(10 * time.Second)
	for {
		closed := 0
		for _, ev := range journaled(t, cfg) {
			if ev.Status == string(detector.StatusClosed) {
				closed++
			}
		}
		if closed == leaks {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d closing versions in the journal 10 s after it answered again", closed, leaks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// appendLog is the real journal, noting what each Append carried.
type appendLog struct {
	store.Store
	mu      sync.Mutex
	appends [][]store.Evidence
}

func (a *appendLog) Append(ctx context.Context, batch []store.Evidence) error {
	if err := a.Store.Append(ctx, batch); err != nil {
		return err
	}
	a.mu.Lock()
	a.appends = append(a.appends, slices.Clone(batch))
	a.mu.Unlock()
	return nil
}

// Everything one request raises is written with one Append (one fsync):
// its new findings, raised as its batch closes, and the closing versions
// of the open findings it pushes out of memory while its spans are read.
func TestOneRequestOneJournalWrite(t *testing.T) {
	const leaks = 40
	cfg := testConfig(t)
	cfg.Alerts.Log.Enabled = false
	cfg.MaxTraces = leaks // the second request evicts the first's traces
	log := &appendLog{}
	p := startOnJournal(t, cfg, func(j store.Store) store.Store { log.Store = j; return log })
	defer p.shutdown(context.Background())
	consume(t, p, storm(1, leaks))
	consume(t, p, storm(leaks+1, 2*leaks))
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.appends) != 2 {
		t.Fatalf("two requests took %d journal writes, want one each", len(log.appends))
	}
	first := map[string]bool{}
	for _, ev := range log.appends[0] {
		first[ev.LeakID] = true
	}
	var closed, raised int
	for _, ev := range log.appends[1] {
		switch {
		case first[ev.LeakID] && ev.Status == string(detector.StatusClosed):
			closed++
		case !first[ev.LeakID]:
			raised++
		}
	}
	if len(first) != leaks || closed == 0 || raised == 0 {
		t.Errorf("the first write holds %d findings, want %d; the second %d closing versions of them and %d findings "+
			"of its own, want some of each", len(first), leaks, closed, raised)
	}
}

// A request whose span another request judged, between the first one's
// reading and its batch's close, is acknowledged only once that judgement
// is durable. Here request A reads the gateway span of trace x (acme) and
// then a span of trace y, on another shard; request C, concurrent, brings
// x's query span (globex) and judges the crossing, which holds A's span as
// evidence. C waits for the journal, which hangs; A raised nothing itself,
// and before, it was acknowledged at once: a crash then lost the crossing,
// and the gateway span with it (its sender had its acknowledgement).
func TestRequestWaitsForItsSpansJudgedByAnother(t *testing.T) {
	cfg := testConfig(t)
	cfg.Alerts.Log.Enabled = false
	gs := &gatedStore{gate: make(chan struct{})} // every append waits
	var release sync.Once
	open := func() { release.Do(func() { close(gs.gate) }) }
	defer open()
	p := startOnJournal(t, cfg, func(j store.Store) store.Store { gs.Store = j; return gs }, withShards(t, cfg, 2))
	defer p.shutdown(context.Background())

	const x = 1
	y := byte(2)
	probe := p.det.NewBatch()
	for probe.ShardOf(detector.TraceID(traceID(y))) == probe.ShardOf(detector.TraceID(traceID(x))) {
		y++
	}
	probe.Close()

	// A, read up to y's span: x's shard is released, the batch still open.
	a := p.requests.Get().(*requestState)
	ticket := p.flights.board()
	b := p.det.NewBatch()
	b.Annotate = a.annotate
	p.extract.Feed(b, request(spanSpec{x, 1, 0, "gateway", "GET /inventory", map[string]any{"tenant.id": "acme"}}))
	p.extract.Feed(b, request(spanSpec{y, 1, 0, "gateway", "GET /", map[string]any{"tenant.id": "acme"}}))

	cDone := make(chan struct{})
	go func() {
		defer close(cDone)
		consume(t, p, request(spanSpec{x, 3, 1, "inventory-svc", "SELECT stock",
			map[string]any{"tenant.id": "globex", "db.system.name": "postgresql"}}))
	}()
	waitFor(t, "C to wait for its crossing's journal write", func() (bool, string) {
		p.acks.mu.Lock()
		defer p.acks.mu.Unlock()
		return len(p.acks.by) > 0, "no request waits"
	})
	if !b.Close() {
		t.Fatal("A's batch does not report that C judged its span")
	}
	boarded := p.flights.boarded()
	if a.raised {
		t.Fatal("A raised the crossing itself: the case is not exercised")
	}

	aDone := make(chan int, 1)
	go func() {
		p.answer(context.Background(), a, ticket, true, boarded)
		aDone <- len(journaled(t, cfg))
	}()
	waitFor(t, "A to return or wait for the requests in flight with it", func() (bool, string) {
		p.flights.mu.Lock()
		defer p.flights.mu.Unlock()
		return len(p.flights.waiters) > 0 || len(aDone) > 0, "A neither returned nor waits"
	})
	open()
	if n := <-aDone; n == 0 {
		t.Fatal("A was acknowledged while the crossing holding its span was not in the journal")
	}
	<-cDone
	if !p.storeHealthy.Load() {
		t.Error("a wait ran out durableAckWait")
	}
}

// flights signals a waiter once every request that boarded before its
// ticket has landed, in whatever order they land, and not before.
func TestFlightsSignalWhenEarlierRequestsLand(t *testing.T) {
	var f flights
	t0, t1, t2 := f.board(), f.board(), f.board()
	before := f.boarded()
	later := f.board() // boarded after: not waited for
	landed := make(chan struct{}, 1)
	if !f.wait(before, landed) {
		t.Fatal("no wait with three earlier requests in flight")
	}
	for _, tk := range []uint64{t1, t2, t1} { // landing twice does nothing
		f.land(tk)
		if len(landed) != 0 {
			t.Fatalf("signalled after ticket %d landed, with ticket %d still in flight", tk, t0)
		}
	}
	f.land(t0)
	if len(landed) != 1 {
		t.Fatal("not signalled once every earlier request landed")
	}
	if len(f.waiters) != 0 {
		t.Errorf("%d waiters left", len(f.waiters))
	}
	if f.wait(before, landed) {
		t.Error("a wait registered with no earlier request in flight")
	}
	f.land(later)
	if len(f.open) != 0 {
		t.Errorf("tickets %v still open", f.open)
	}
}

// The two halves of crossing traces, sent at the same moment by different
// requests, round after round (8 senders in lockstep: the gateway half of a
// trace in one request, its query half, linked to another trace's gateway
// span so that its batch judges it only at Close, in another): every
// request returns without waiting out durableAckWait, every crossing is in
// the journal once all have returned, and no request is left in flight or
// waiting for others.
func TestConcurrentHalvesOfTracesAreAllDurable(t *testing.T) {
	cfg := testConfig(t)
	cfg.Alerts.Log.Enabled = false
	p := startOnJournal(t, cfg, func(j store.Store) store.Store { return j })
	defer p.shutdown(context.Background())
	const senders, rounds, fillers = 8, 25, 300
	tid := func(r, s int) pcommon.TraceID { return pcommon.TraceID{0x99, byte(r), byte(s % senders), 15: 1} }
	gatewayID := pcommon.SpanID{1, 7: 1}
	add := func(td ptrace.Traces, service string, trace pcommon.TraceID, id, parent pcommon.SpanID, tenant string) ptrace.Span {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", service)
		sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		sp.SetTraceID(trace)
		sp.SetSpanID(id)
		sp.SetParentSpanID(parent)
		sp.SetName(service + " op")
		sp.Attributes().PutStr("tenant.id", tenant)
		return sp
	}
	var (
		wg     sync.WaitGroup
		failed atomic.Value
	)
	for r := range rounds {
		start := make(chan struct{})
		for s := range senders {
			td := ptrace.NewTraces()
			add(td, "gateway", tid(r, s), gatewayID, pcommon.SpanID{}, fmt.Sprintf("acme-%d-%d", r, s))
			q := add(td, "inventory-svc", tid(r, s+1), pcommon.SpanID{2, 7: 1}, gatewayID, "globex")
			l := q.Links().AppendEmpty()
			l.SetTraceID(tid(r, s+2))
			l.SetSpanID(gatewayID)
			// Clean traces after the halves keep the batch open while the
			// other half's request runs.
			for f := range fillers {
				add(td, "catalog", pcommon.TraceID{0x98, byte(r), byte(s), byte(f >> 8), byte(f), 15: 1}, gatewayID, pcommon.SpanID{}, "initech")
			}
			wg.Go(func() {
				<-start
				if _, err := p.processTraces(context.Background(), td); err != nil {
					failed.CompareAndSwap(nil, err)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	if err := failed.Load(); err != nil {
		t.Fatal(err)
	}
	if !p.storeHealthy.Load() {
		t.Fatal("a request waited out durableAckWait")
	}
	crossed := map[string]bool{}
	for _, ev := range journaled(t, cfg) {
		if ev.Rule == string(detector.RuleCrossTenantTrace) {
			crossed[ev.TraceID] = true
		}
	}
	for r := range rounds {
		for s := range senders {
			if id := tid(r, s).String(); !crossed[id] {
				t.Errorf("trace %s (round %d): no crossing in the journal after every request returned", id, r)
			}
		}
	}
	// On two cores and more, requests overlap enough that some find their
	// half judged by the other's request (a few dozen per run here).
	held := p.heldForOthers.Load()
	t.Logf("%d of %d requests held for others", held, senders*rounds)
	if held == 0 && runtime.GOMAXPROCS(0) > 1 {
		t.Error("no request found its spans judged by another: the case this test is for did not happen")
	}
	p.flights.mu.Lock()
	defer p.flights.mu.Unlock()
	if len(p.flights.open) != 0 || len(p.flights.waiters) != 0 {
		t.Errorf("left in flight: tickets %v, %d waiting", p.flights.open, len(p.flights.waiters))
	}
}

// startLingering starts a processor of 4 shards on an appendLog journal,
// its evidence worker waiting at most lingerMax for requests being read.
func startLingering(t *testing.T, lingerMax time.Duration) (*tenantguard, *Config, *appendLog) {
	t.Helper()
	cfg := testConfig(t)
	cfg.Alerts.Log.Enabled = false
	log := &appendLog{}
	p := startOnJournal(t, cfg, func(j store.Store) store.Store { log.Store = j; return log },
		withShards(t, cfg, 4), func(p *tenantguard) { p.lingerMax = lingerMax })
	return p, cfg, log
}

// readingLeak starts reading request A, a leaking trace, and leaves it
// open (its shard released): a request still being read. It returns
// another trace on a shard A does not hold, and what finishes A.
func readingLeak(t *testing.T, p *tenantguard) (other byte, finish func()) {
	t.Helper()
	a := p.requests.Get().(*requestState)
	ticket := p.reading.board()
	b := p.det.NewBatch()
	b.Annotate = a.annotate
	p.extract.Feed(b, leakingTrace(1))
	held := b.ShardOf(detector.TraceID(traceID(1)))
	other = 2
	for b.ShardOf(detector.TraceID(traceID(other))) == held {
		other++
	}
	return other, func() {
		b.Close()
		p.reading.land(ticket)
		p.writeRaised(a)
		p.awaitDurable(context.Background(), a)
	}
}

// The evidence worker, woken by one request's finding while another
// request is being read, waits for that one to raise its own, and both go
// in one write and one fsync (a group commit that also takes the requests
// not yet waiting).
func TestConcurrentRequestsShareAnFsync(t *testing.T) {
	p, cfg, log := startLingering(t, time.Minute) // A's end, not a timer, ends the wait
	defer p.shutdown(context.Background())
	other, finishA := readingLeak(t, p)
	finished := false
	defer func() { // before shutdown, whose flush needs the shard A holds
		if !finished {
			finishA()
		}
	}()
	bDone := make(chan struct{})
	go func() {
		defer close(bDone)
		consume(t, p, leakingTrace(other))
	}()
	waitFor(t, "the evidence worker to wait for the request being read", func() (bool, string) {
		p.reading.mu.Lock()
		defer p.reading.mu.Unlock()
		return len(p.reading.waiters) > 0, "nobody waits for the readers"
	})
	finishA()
	finished = true
	<-bDone
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.appends) != 1 || len(log.appends[0]) != 2 {
		t.Fatalf("two concurrent requests' findings took %d journal writes (%v), want one holding both", len(log.appends), log.appends)
	}
	if got := len(journaled(t, cfg)); got != 2 {
		t.Errorf("%d findings in the journal, want 2", got)
	}
}

// The worker waits for a request being read at most lingerMax: a request
// that never finishes reading does not hold the others' acknowledgement.
func TestLingerIsBounded(t *testing.T) {
	p, cfg, _ := startLingering(t, lingerMax)
	defer p.shutdown(context.Background())
	other, finishA := readingLeak(t, p)
	defer finishA()
	withTimeout(t, durableAckWait, "a request whose finding waits behind a request still being read", func() {
		consume(t, p, leakingTrace(other))
	})
	if got := len(journaled(t, cfg)); got != 1 {
		t.Errorf("%d findings in the journal once the second request returned, want its own", got)
	}
	if !p.storeHealthy.Load() {
		t.Error("a wait ran out durableAckWait")
	}
}
