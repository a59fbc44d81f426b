package tenantguardprocessor

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"

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
func startOnJournal(t *testing.T, cfg *Config, wrap func(store.Store) store.Store) *tenantguard {
	t.Helper()
	p := startProcessor(t, cfg, nil)
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
