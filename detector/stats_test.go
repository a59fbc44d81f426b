package detector_test

import (
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

func TestLeakID(t *testing.T) {
	// Leak ids are stored and compared across collectors and releases:
	// pin the derivation, not just its determinism.
	golden := []struct {
		rule detector.Rule
		want string
	}{
		{cross, "bd4de55c42f4b47ef02f7d63964ac266"},
		{mismatch, "975c39e460e7a0b64f8819352a37fa3d"},
	}
	for _, g := range golden {
		if got := detector.LeakID(tid(1), g.rule); got != g.want {
			t.Errorf("LeakID(%s, %s) = %s, want %s", tid(1), g.rule, got, g.want)
		}
	}
	if detector.LeakID(tid(1), cross) == detector.LeakID(tid(2), cross) {
		t.Error("different traces share a leak id")
	}
	if tid(1).String() != "ab000000000000000000000000000001" || sid(258).String() != "0000000000000102" {
		t.Errorf("id rendering: %s %s", tid(1), sid(258))
	}
	if !(detector.TraceID{}).IsEmpty() || tid(1).IsEmpty() || !sid(0).IsEmpty() || sid(1).IsEmpty() {
		t.Error("IsEmpty")
	}
}

func TestStatsCounters(t *testing.T) {
	h := newHarness(t, nil)
	h.batch(
		span(tid(1), 1, 0, "a", "a", ten("acme")),
		span(tid(1), 2, 1, "b", "b"),
		span(tid(1), 3, 1, "b", "b", ten("globex")),
		span(tid(2), 1, 0, "a", "a", tk(0, detector.Value{})),
		span(tid(3), 1, 0, "a", "a", tk(0, detector.StringValue("x")), tk(1, detector.StringValue("y"))),
	)
	st := h.d.Stats()
	want := detector.Stats{
		Spans:              5,
		SpansWithoutTenant: 2,
		TenantsRejected:    1,
		TracesActive:       3,
		Findings:           2,
		FindingsByRule:     byRule(map[detector.Rule]uint64{cross: 1, mismatch: 1}),
	}
	if !statsEqual(st, want) {
		t.Errorf("Stats = %+v\nwant    %+v", st, want)
	}
	h.d.Flush()
	st = h.d.Stats()
	want.TracesActive, want.TracesExpired = 0, 3
	want.Findings, want.FindingsByRule = 4, byRule(map[detector.Rule]uint64{cross: 2, mismatch: 2})
	if !statsEqual(st, want) {
		t.Errorf("after Flush: Stats = %+v\nwant    %+v", st, want)
	}
}

func statsEqual(a, b detector.Stats) bool {
	return a.Spans == b.Spans && a.SpansWithoutTenant == b.SpansWithoutTenant && a.SpansOverCap == b.SpansOverCap &&
		a.TenantsRejected == b.TenantsRejected && a.TracesActive == b.TracesActive &&
		a.TracesExpired == b.TracesExpired && a.TracesEvicted == b.TracesEvicted && a.Findings == b.Findings &&
		maps.Equal(a.FindingsByRule, b.FindingsByRule)
}

func TestFirstSeen(t *testing.T) {
	at := func(d time.Duration) uint64 { return uint64(epoch.Add(d).UnixNano()) }
	tests := []struct {
		name   string
		starts []uint64 // StartUnixNano of the child, then of the parent (next batch)
		want   time.Time
	}{
		{"no start times: first arrival", []uint64{0, 0}, epoch},
		{"start time of the first span", []uint64{at(-2 * time.Second), 0}, epoch.Add(-2 * time.Second)},
		{"parent arriving later started earlier", []uint64{at(-2 * time.Second), at(-5 * time.Second)}, epoch.Add(-5 * time.Second)},
		{"start times in the future are ignored", []uint64{at(time.Hour), at(time.Hour)}, epoch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			tr := tid(17)
			c := span(tr, 2, 1, "b", "b", ten("globex"))
			c.StartUnixNano = tc.starts[0]
			h.batch(c)
			h.clock.Advance(time.Second)
			p := span(tr, 1, 0, "a", "a", ten("acme"))
			p.StartUnixNano = tc.starts[1]
			h.batch(p)
			f := h.rec.last(t, tr, cross)
			if !f.FirstSeen.Equal(tc.want) {
				t.Errorf("FirstSeen = %v, want %v", f.FirstSeen, tc.want)
			}
			if !f.LastSeen.Equal(epoch.Add(time.Second)) {
				t.Errorf("LastSeen = %v", f.LastSeen)
			}
		})
	}
}

// TestConcurrentBatches feeds overlapping traces from several goroutines, as
// concurrent export requests do, and checks that every leaking trace has one
// leak id whose versions only grow, and that clean traces have none.
func TestConcurrentBatches(t *testing.T) {
	const (
		workers   = 8
		traces    = 64
		rounds    = 40
		perBatch  = 6
		leakEvery = 3 // traces 0, 3, 6, ... leak
	)
	rec := &recorder{}
	cfg := detector.DefaultConfig()
	cfg.Shards = 4
	cfg.MaxTraces = 10 * traces // no eviction here; see evict_test.go
	d, err := detector.New(cfg, rec.sink)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	// Readers and a sweeper run alongside (nothing is idle for 60s).
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				d.Sweep()
				_ = d.Stats()
			}
		}
	}()
	var workersWG sync.WaitGroup
	for w := range workers {
		workersWG.Add(1)
		go func() {
			defer workersWG.Done()
			next := 1
			for r := range rounds {
				b := d.NewBatch()
				for k := range perBatch {
					n := (w*7 + r*perBatch + k) % traces
					tenant := fmt.Sprintf("t%d", n)
					if n%leakEvery == 0 {
						tenant = fmt.Sprintf("t%d-%d", n, w%2) // workers disagree
					}
					s := span(tid(n), w<<20|next, w<<20|(next-1), fmt.Sprintf("svc%d", w), "op", ten(tenant))
					next++
					b.Add(&s)
				}
				b.Close()
			}
		}()
	}
	workersWG.Wait()
	close(stop)
	wg.Wait()
	d.Flush()

	fs := rec.all()
	checkVersionInvariants(t, fs)
	byTrace := map[detector.TraceID]map[string]int{}
	closed := map[string]int{}
	for _, f := range fs {
		if f.Rule != cross {
			t.Fatalf("unexpected rule: %s", describe([]detector.Finding{f}))
		}
		if byTrace[f.TraceID] == nil {
			byTrace[f.TraceID] = map[string]int{}
		}
		byTrace[f.TraceID][f.LeakID]++
		if f.Status == detector.StatusClosed {
			closed[f.LeakID]++
		}
	}
	leaking := 0
	for n := range traces {
		ids := byTrace[tid(n)]
		if n%leakEvery != 0 {
			if len(ids) != 0 {
				t.Errorf("trace %d is single-tenant but has findings %v", n, ids)
			}
			continue
		}
		leaking++
		if len(ids) != 1 {
			t.Errorf("trace %d: want exactly one leak id, got %v", n, ids)
			continue
		}
		id := detector.LeakID(tid(n), cross)
		if ids[id] == 0 {
			t.Errorf("trace %d: leak id %v is not LeakID(trace, rule)", n, ids)
		}
		if closed[id] != 1 {
			t.Errorf("trace %d: %d closing versions, want 1", n, closed[id])
		}
	}
	if leaking == 0 || len(byTrace) != leaking {
		t.Errorf("%d traces with findings, want %d", len(byTrace), leaking)
	}
	if st := d.Stats(); st.Spans != workers*rounds*perBatch || st.TracesActive != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

// byRule fills in zero counts for the rules m does not mention.
func byRule(m map[detector.Rule]uint64) map[detector.Rule]uint64 {
	out := map[detector.Rule]uint64{}
	for _, r := range detector.Rules {
		out[r] = m[r]
	}
	return out
}
