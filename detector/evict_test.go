package detector_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

func TestIdleWindowExpiry(t *testing.T) {
	const w = 30 * time.Second
	tests := []struct {
		name string
		// gaps between batches of one single-tenant span; the sweep runs
		// sweepAfter after the last batch.
		gaps        []time.Duration
		sweepAfter  time.Duration
		wantExpired bool
	}{
		{"idle for exactly the window", nil, w, true},
		{"idle for longer than the window", nil, 3 * w, true},
		{"one nanosecond short of the window", nil, w - 1, false},
		{"a recent span keeps the trace alive", []time.Duration{w / 2}, w / 2, false},
		{"the window counts from the last span", []time.Duration{w / 2, w / 2}, w, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *detector.Config) { c.IdleWindow = w })
			tr := tid(1)
			h.batch(span(tr, 1, 0, "a", "a", ten("acme")))
			for i, g := range tc.gaps {
				h.clock.Advance(g)
				h.batch(span(tr, 2+i, 1, "a", "a", ten("acme")))
			}
			h.clock.Advance(tc.sweepAfter)
			h.d.Sweep()
			st := h.d.Stats()
			if got := st.TracesExpired == 1; got != tc.wantExpired {
				t.Fatalf("TracesExpired = %d, want expired=%v", st.TracesExpired, tc.wantExpired)
			}
			if wantActive := int64(1 - boolInt(tc.wantExpired)); st.TracesActive != wantActive {
				t.Errorf("TracesActive = %d, want %d", st.TracesActive, wantActive)
			}
			if h.rec.len() != 0 || st.TracesEvicted != 0 {
				t.Errorf("single-tenant trace: findings %s, evicted %d", describe(h.rec.all()), st.TracesEvicted)
			}
		})
	}
}

func TestExpiryClosesOpenFindings(t *testing.T) {
	const w = 10 * time.Second
	h := newHarness(t, func(c *detector.Config) { c.IdleWindow = w })
	leak, clean := tid(1), tid(2)
	h.batch(
		span(leak, 1, 0, "gateway", "GET /", ten("acme")),
		span(leak, 2, 1, "orders", "list", ten("globex")),
		span(leak, 3, 1, "orders", "list", tk(0, detector.StringValue("acme")), tk(1, detector.StringValue("initech"))),
		span(clean, 1, 0, "gateway", "GET /", ten("acme")),
	)
	open := map[detector.Rule]detector.Finding{cross: h.rec.last(t, leak, cross), mismatch: h.rec.last(t, leak, mismatch)}
	h.clock.Advance(time.Second)
	h.batch(span(leak, 4, 2, "orders", "list")) // span count grows, shape does not
	if n := h.rec.len(); n != 2 {
		t.Fatalf("want only the two first versions so far, got %s", describe(h.rec.all()))
	}

	h.clock.Advance(w / 2)
	h.d.Sweep()
	if n := h.rec.len(); n != 2 {
		t.Fatalf("swept before the window: got %s", describe(h.rec.all()))
	}

	sweptAt := h.clock.Advance(w / 2)
	h.d.Sweep()
	got := h.rec.since(2)
	if len(got) != 2 {
		t.Fatalf("want one closing version per rule, got %s", describe(got))
	}
	for _, f := range got {
		o := open[f.Rule]
		if f.Status != detector.StatusClosed || f.LeakID != o.LeakID || f.Version <= o.Version {
			t.Errorf("%s: status %s leak %s v%d; want closed, leak %s, version > %d", f.Rule, f.Status, f.LeakID, f.Version, o.LeakID, o.Version)
		}
		if f.Version < uint64(sweptAt.UnixNano()) {
			t.Errorf("%s: closing version %d before the sweep time %d", f.Rule, f.Version, sweptAt.UnixNano())
		}
		if f.SpanCount != 4 || !f.LastSeen.Equal(epoch.Add(time.Second)) || !f.DetectedAt.Equal(o.DetectedAt) {
			t.Errorf("%s: SpanCount %d LastSeen %v DetectedAt %v", f.Rule, f.SpanCount, f.LastSeen, f.DetectedAt)
		}
	}
	st := h.d.Stats()
	if st.TracesExpired != 2 || st.TracesActive != 0 || st.TracesEvicted != 0 {
		t.Errorf("Stats = %+v, want both traces expired", st)
	}

	// Nothing left: further sweeps and a flush emit nothing.
	h.clock.Advance(w)
	h.d.Sweep()
	h.d.Flush()
	if n := h.rec.len(); n != 4 {
		t.Errorf("versions after the trace closed: %s", describe(h.rec.since(4)))
	}
}

func TestFlushClosesEverything(t *testing.T) {
	h := newHarness(t, nil)
	for n := range 10 {
		h.batch(span(tid(n), 1, 0, "a", "a", ten("acme")), span(tid(n), 2, 1, "b", "b", ten(fmt.Sprint("t", n%2))))
	}
	// Trace 1, 3, ... have acme and t1; 0, 2, ... acme and t0: all leak.
	h.d.Flush()
	st := h.d.Stats()
	if st.TracesActive != 0 || st.TracesExpired != 10 {
		t.Errorf("Stats = %+v", st)
	}
	for n := range 10 {
		vs := h.rec.of(tid(n), cross)
		if len(vs) != 2 || vs[1].Status != detector.StatusClosed {
			t.Errorf("trace %d: want open then closed, got %s", n, describe(vs))
		}
	}
}

// A batch still being filled when its trace expires: the sweep (on its own
// goroutine, as in the processor) waits for the shard the batch holds or
// evaluates the trace first; either way the spans already added are not
// lost and the finding is reported open, then closed.
func TestSweepEvaluatesUnclosedBatch(t *testing.T) {
	h := newHarness(t, func(c *detector.Config) { c.IdleWindow = time.Second })
	tr := tid(1)
	b := h.d.NewBatch()
	for _, s := range []detector.Span{span(tr, 1, 0, "a", "a", ten("acme")), span(tr, 2, 1, "b", "b", ten("globex"))} {
		b.Add(&s)
	}
	h.clock.Advance(time.Second)
	swept := make(chan struct{})
	go func() {
		h.d.Sweep()
		close(swept)
	}()
	b.Close()
	<-swept
	vs := h.rec.of(tr, cross)
	if len(vs) != 2 || vs[0].Status != detector.StatusOpen || vs[1].Status != detector.StatusClosed {
		t.Fatalf("want open then closed, got %s", describe(vs))
	}
}

// A trace that comes back after it was closed (late spans, or a batch that
// read the clock before the sweep) starts again under the same leak id; its
// versions must still be larger than the closing version already sent, or a
// store keeping the highest version would drop them.
func TestVersionsGrowAcrossTraceRestart(t *testing.T) {
	t.Run("batch older than the sweep", func(t *testing.T) {
		const w = 10 * time.Second
		h := newHarness(t, func(c *detector.Config) { c.IdleWindow = w })
		tr := tid(1)
		h.batch(span(tr, 1, 0, "a", "a", ten("acme")), span(tr, 2, 1, "b", "b", ten("globex")))
		late := h.d.NewBatch() // reads the clock now
		h.clock.Advance(w)
		h.d.Sweep()
		for _, s := range []detector.Span{span(tr, 3, 1, "c", "c", ten("acme")), span(tr, 4, 3, "d", "d", ten("initech"))} {
			late.Add(&s)
		}
		late.Close()
		vs := h.rec.of(tr, cross)
		if len(vs) != 3 || vs[1].Status != detector.StatusClosed || vs[2].Status != detector.StatusOpen {
			t.Fatalf("want open, closed, open again; got %s", describe(vs))
		}
		if vs[2].Version <= vs[1].Version {
			t.Errorf("restarted trace: version %d not above closing version %d", vs[2].Version, vs[1].Version)
		}
	})
	t.Run("evicted and recreated within one batch", func(t *testing.T) {
		h := newHarness(t, func(c *detector.Config) { c.Shards, c.MaxTraces = 1, 1 })
		a, b := tid(1), tid(2)
		h.batch(
			span(a, 1, 0, "a", "a", ten("acme")), span(a, 2, 1, "b", "b", ten("globex")),
			// b evicts a: a's open and closing versions go out.
			span(b, 1, 0, "a", "a", ten("acme")),
			// a comes back and evicts b.
			span(a, 3, 0, "a", "a", ten("acme")), span(a, 4, 3, "b", "b", ten("globex")),
		)
		vs := h.rec.of(a, cross)
		if len(vs) != 3 {
			t.Fatalf("want open, closed, open again; got %s", describe(vs))
		}
		for i := 1; i < len(vs); i++ {
			if vs[i].Version <= vs[i-1].Version {
				t.Errorf("version %d: %d not above %d", i, vs[i].Version, vs[i-1].Version)
			}
		}
		if st := h.d.Stats(); st.TracesEvicted != 2 {
			t.Errorf("TracesEvicted = %d, want 2", st.TracesEvicted)
		}
	})
}

func TestMaxTracesEvictsLeastRecentlyUpdated(t *testing.T) {
	tests := []struct {
		name    string
		touch   []int // traces (0: A, 1: B, 2: C) updated after all three exist
		victims []int // evicted by the next two new traces, in order
	}{
		{"no update: oldest first", nil, []int{0, 1}},
		{"oldest updated", []int{0}, []int{1, 2}},
		{"two oldest updated", []int{0, 1}, []int{2, 0}},
		{"all updated, newest first", []int{2, 1, 0}, []int{2, 1}},
		{"update twice", []int{0, 1, 0}, []int{2, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *detector.Config) { c.Shards, c.MaxTraces = 1, 3 })
			ids := []detector.TraceID{tid(100), tid(101), tid(102)}
			for _, tr := range ids {
				h.batch(span(tr, 1, 0, "a", "a", ten("acme")), span(tr, 2, 1, "b", "b", ten("globex")))
				h.clock.Advance(time.Second)
			}
			for i, n := range tc.touch {
				h.batch(span(ids[n], 10+i, 1, "a", "a"))
				h.clock.Advance(time.Second)
			}
			evicted := map[int]bool{}
			for k, want := range tc.victims {
				before := h.rec.len()
				h.batch(span(tid(200+k), 1, 0, "a", "a", ten("acme")))
				got := h.rec.since(before)
				if len(got) != 1 || got[0].TraceID != ids[want] || got[0].Status != detector.StatusClosed {
					t.Fatalf("new trace %d: want the closing version of trace %d, got %s", k, want, describe(got))
				}
				evicted[want] = true
				st := h.d.Stats()
				if st.TracesEvicted != uint64(k+1) || st.TracesActive != 3 || st.TracesExpired != 0 {
					t.Errorf("after new trace %d: Stats = %+v", k, st)
				}
				h.clock.Advance(time.Second)
			}
			for n, tr := range ids {
				if last := h.rec.last(t, tr, cross); (last.Status == detector.StatusClosed) != evicted[n] {
					t.Errorf("trace %d: last status %s, evicted=%v", n, last.Status, evicted[n])
				}
			}
		})
	}
}

func TestMaxTracesBoundsMemoryAcrossShards(t *testing.T) {
	h := newHarness(t, func(c *detector.Config) { c.Shards, c.MaxTraces = 4, 16 })
	for n := range 500 {
		h.batch(span(tid(n), 1, 0, "a", "a", ten("acme")))
		if st := h.d.Stats(); st.TracesActive > 16 {
			t.Fatalf("after %d traces: TracesActive = %d > MaxTraces", n+1, st.TracesActive)
		}
	}
	st := h.d.Stats()
	if st.TracesEvicted+uint64(st.TracesActive) != 500 {
		t.Errorf("evicted %d + active %d != 500 traces", st.TracesEvicted, st.TracesActive)
	}
}

func TestMaxSpansPerTrace(t *testing.T) {
	tr := tid(1)
	tests := []struct {
		name        string
		batches     [][]detector.Span
		wantOverCap uint64
		wantTenants []string // of the final finding; nil: no finding
		wantEdges   int
	}{
		{"under the cap", [][]detector.Span{{
			span(tr, 1, 0, "a", "a", ten("acme")), span(tr, 2, 1, "a", "a"), span(tr, 3, 1, "a", "a"),
		}}, 0, nil, 0},
		{"over the cap in one batch", [][]detector.Span{{
			span(tr, 1, 0, "a", "a", ten("acme")), span(tr, 2, 1, "a", "a"), span(tr, 3, 1, "a", "a"),
			span(tr, 4, 1, "a", "a"), span(tr, 5, 1, "a", "a"),
		}}, 2, nil, 0},
		{"over the cap across batches", [][]detector.Span{
			{span(tr, 1, 0, "a", "a", ten("acme")), span(tr, 2, 1, "a", "a")},
			{span(tr, 3, 1, "a", "a"), span(tr, 4, 1, "a", "a")},
			{span(tr, 5, 1, "a", "a")},
		}, 2, nil, 0},
		{"a tenant beyond the cap still counts", [][]detector.Span{{
			span(tr, 1, 0, "a", "a", ten("acme")), span(tr, 2, 1, "a", "a"), span(tr, 3, 1, "a", "a"),
			span(tr, 4, 1, "b", "b", ten("globex")),
		}}, 1, []string{"acme", "globex"}, 0},
		{"edges among recorded spans are kept", [][]detector.Span{{
			span(tr, 1, 0, "a", "a", ten("acme")), span(tr, 2, 1, "b", "b", ten("globex")), span(tr, 3, 1, "a", "a"),
			span(tr, 4, 1, "c", "c", ten("initech")),
		}}, 1, []string{"acme", "globex", "initech"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *detector.Config) { c.MaxSpansPerTrace = 3 })
			total := 0
			for _, b := range tc.batches {
				h.batch(b...)
				total += len(b)
			}
			h.d.Flush()
			if st := h.d.Stats(); st.SpansOverCap != tc.wantOverCap || st.Spans != uint64(total) {
				t.Errorf("SpansOverCap = %d, Spans = %d; want %d, %d", st.SpansOverCap, st.Spans, tc.wantOverCap, total)
			}
			if tc.wantTenants == nil {
				if h.rec.len() != 0 {
					t.Errorf("want no finding, got %s", describe(h.rec.all()))
				}
				return
			}
			f := h.rec.last(t, tr, cross)
			if !slices.Equal(f.Tenants, tc.wantTenants) || len(f.Edges) != tc.wantEdges {
				t.Errorf("Tenants = %v, edges %d; want %v, %d", f.Tenants, len(f.Edges), tc.wantTenants, tc.wantEdges)
			}
			if f.SpanCount != total {
				t.Errorf("SpanCount = %d, want every span (%d), recorded or not", f.SpanCount, total)
			}
		})
	}
}

func TestMaxEvidenceSpans(t *testing.T) {
	h := newHarness(t, func(c *detector.Config) { c.MaxEvidenceSpans = 4 })
	tr := tid(1)
	spans := []detector.Span{span(tr, 1, 0, "root", "r", ten("acme"))}
	for i := range 10 {
		spans = append(spans,
			span(tr, 10+i, 1, "svc", "op", ten(fmt.Sprint("t", i))),
			span(tr, 100+i, 1, "svc", "op", tk(0, detector.StringValue("acme")), tk(1, detector.StringValue(fmt.Sprint("h", i)))),
		)
	}
	h.batch(spans...)
	c := h.rec.last(t, tr, cross)
	if len(c.Edges) != 10 || len(c.Spans) != 4 {
		t.Errorf("cross: %d edges, %d evidence spans; want 10 edges, evidence capped at 4", len(c.Edges), len(c.Spans))
	}
	m := h.rec.last(t, tr, mismatch)
	if len(m.Mismatches) != 4 || len(m.Spans) > 4 {
		t.Errorf("mismatch: %d mismatches, %d evidence spans; want both capped at 4", len(m.Mismatches), len(m.Spans))
	}
}

// The tombstone queue is a ring: ids come out in the order they went in
// across growth and wrap-around.
func TestIDRingIsFIFO(t *testing.T) {
	var r detector.IDRingForTest
	next, want := 0, 0
	for round := range 50 {
		for range round % 7 * 5 {
			next++
			r.Push(tid(next))
		}
		for range round % 5 * 4 {
			if r.Len() == 0 {
				break
			}
			want++
			if got := r.Pop(); got != tid(want) {
				t.Fatalf("round %d: popped %v, want %v", round, got, tid(want))
			}
		}
	}
	if r.Len() != next-want {
		t.Fatalf("%d left, want %d", r.Len(), next-want)
	}
}

// Tombs are bounded like the traces: a shard keeps at most its limit of
// them, the oldest close dropped first, and a trace reopened by a late span
// and closed again counts from its new close. Past the bound a late span
// finds nothing to join; within it, it joins.
func TestTombsAreBoundedOldestCloseFirst(t *testing.T) {
	h := newHarness(t, func(c *detector.Config) {
		c.Shards, c.MaxTraces = 1, 2
		c.IdleWindow, c.LateWindow = time.Second, time.Hour
	})
	a, b, c := tid(1), tid(2), tid(3)
	closeTrace := func(tr detector.TraceID, n int) {
		h.batch(span(tr, n, 0, "gateway", "GET /", ten("acme")))
		h.clock.Advance(2 * time.Second)
		h.d.Sweep()
	}
	closeTrace(a, 1)
	closeTrace(b, 1)
	closeTrace(a, 2) // late: a reopens, closes again, now the newest tomb
	if st := h.d.Stats(); st.SpansLate != 1 || st.TracesActive != 0 {
		t.Fatalf("want a's second span late and every trace closed: %+v", st)
	}
	closeTrace(c, 1) // three tombs for a limit of two: b's goes
	n := h.rec.len()
	h.batch(span(b, 9, 1, "billing", "charge", ten("globex")))
	if got := h.rec.since(n); len(got) != 0 {
		t.Fatalf("b's tomb should have been dropped, got %s", describe(got))
	}
	for _, tr := range []detector.TraceID{a, c} {
		h.batch(span(tr, 9, 1, "billing", "charge", ten("globex")))
		if f := h.rec.last(t, tr, cross); !slices.Equal(f.Tenants, []string{"acme", "globex"}) {
			t.Errorf("trace %v: late crossing lists %v, want acme then globex", tr, f.Tenants)
		}
	}
	if st := h.d.Stats(); st.SpansLate != 3 {
		t.Errorf("SpansLate = %d, want 3 (a twice, c once; b's tomb was gone)", st.SpansLate)
	}
}

// A batch answers (Annotate) for every version its spans raise, and for the
// closing version of a trace it pushes out of memory with spans not yet
// judged; the closing version of a trace whose spans were all judged holds
// nothing of the batch's and goes to the sink alone.
func TestEvictingBatchAnswersOnlyForItsOwnSpans(t *testing.T) {
	h := newHarness(t, func(c *detector.Config) { c.Shards, c.MaxTraces = 1, 1 })
	batch := func(spans ...detector.Span) (annotated []detector.Finding) {
		b := h.d.NewBatch()
		b.Annotate = func(f *detector.Finding) { annotated = append(annotated, *f) }
		for i := range spans {
			b.Add(&spans[i])
		}
		b.Close()
		return annotated
	}
	leak := func(tr detector.TraceID) []detector.Span {
		return []detector.Span{span(tr, 1, 0, "gateway", "GET /", ten("acme")), span(tr, 2, 1, "orders", "list", ten("globex"))}
	}
	a, b, c, d := tid(1), tid(2), tid(3), tid(4)
	if got := batch(leak(a)...); len(got) != 1 || got[0].TraceID != a || got[0].Status != detector.StatusOpen {
		t.Fatalf("a's own batch answers for %s, want a's open version", describe(got))
	}
	// b pushes a (judged in its own batch) out: a's closing version reaches
	// the sink, and b's batch answers only for b's finding.
	before := h.rec.len()
	got := batch(leak(b)...)
	if len(got) != 1 || got[0].TraceID != b || got[0].Status != detector.StatusOpen {
		t.Errorf("b's batch answers for %s, want b's open version only", describe(got))
	}
	if sunk := h.rec.since(before); len(sunk) != 2 || sunk[0].TraceID != a || sunk[0].Status != detector.StatusClosed {
		t.Errorf("the sink got %s, want a's closing version, then b's open one", describe(sunk))
	}
	// c's spans are not judged yet when d, in the same batch, pushes c out:
	// c's versions (open, then closing) hold this batch's spans; b's closing
	// version, raised as c pushed b out, does not.
	got = batch(append(leak(c), span(d, 1, 0, "gateway", "GET /", ten("acme")))...)
	var answered []string
	for _, f := range got {
		answered = append(answered, fmt.Sprintf("%s/%s", f.TraceID, f.Status))
	}
	want := []string{fmt.Sprintf("%s/%s", c, detector.StatusOpen), fmt.Sprintf("%s/%s", c, detector.StatusClosed)}
	if !slices.Equal(answered, want) {
		t.Errorf("the batch pushing out b (judged) and its own c (not) answers for %v, want %v", answered, want)
	}
	if vs := h.rec.of(b, cross); len(vs) != 2 || vs[1].Status != detector.StatusClosed {
		t.Errorf("b's versions at the sink: %s, want open then closed", describe(vs))
	}
}
