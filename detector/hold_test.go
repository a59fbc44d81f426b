package detector_test

import (
	"testing"

	"github.com/tenantguard/tenantguard/detector"
)

// A batch that groups its spans by shard takes the free shards first: a
// shard another batch holds is refused to TryHold, and free again once that
// batch lets go.
func TestTryHoldSkipsAShardAnotherBatchHolds(t *testing.T) {
	h := newHarness(t, func(c *detector.Config) { c.Shards = 2 })
	a, b := h.d.NewBatch(), h.d.NewBatch()
	if a.Shards() != 2 {
		t.Fatalf("Shards() = %d, want 2", a.Shards())
	}
	a.Hold(0)
	if b.TryHold(0) {
		t.Fatal("TryHold took shard 0 while another batch held it")
	}
	if !b.TryHold(1) {
		t.Fatal("TryHold refused shard 1, which nobody held")
	}
	if !b.TryHold(1) {
		t.Fatal("TryHold refused the shard the batch itself holds")
	}
	a.Close()
	if !b.TryHold(0) { // also lets shard 1 go
		t.Fatal("shard 0 still held after the batch holding it closed")
	}
	c := h.d.NewBatch()
	if !c.TryHold(1) {
		t.Fatal("shard 1 still held after the batch moved to shard 0")
	}
	c.Close()
	b.Close()
}

// Settle judges a shard's traces while the batch holds it, so a crossing is
// raised as soon as the batch moves on, before Close. A trace whose span
// carries a link is left to Close, which resolves the link first.
func TestSettleJudgesTheHeldShardUnlessALinkWaits(t *testing.T) {
	for _, linked := range []bool{false, true} {
		h := newHarness(t, func(c *detector.Config) { c.Shards = 2 })
		b := h.d.NewBatch()
		trace := tid(1)
		sh := b.ShardOf(trace)
		b.Hold(sh)
		root := span(trace, 1, 0, "gateway", "GET /orders", ten("acme"))
		child := span(trace, 2, 1, "orders", "SELECT orders", ten("globex"))
		if linked {
			child.Links = []detector.Link{{TraceID: tid(2), SpanID: sid(9)}}
		}
		b.Add(&root)
		b.Add(&child)
		b.Settle()
		b.TryHold(1 - sh) // lets the trace's shard go
		before := len(h.rec.of(trace, detector.RuleCrossTenantTrace))
		b.Close()
		after := len(h.rec.of(trace, detector.RuleCrossTenantTrace))
		switch {
		case after == 0:
			t.Fatalf("linked=%v: no crossing found", linked)
		case !linked && before == 0:
			t.Error("the crossing waited for Close though Settle had judged its trace")
		case linked && before != 0:
			t.Error("Settle judged a trace whose span carries a link before Close resolved it")
		}
	}
}

// A batch lists each trace it touches once, whatever the runs its spans
// come in; a trace Settle judged and the batch touches again, after taking
// its shard anew, is listed again, and judged again at Close.
func TestTraceTouchedAgainAfterSettleIsJudgedAgain(t *testing.T) {
	h := newHarness(t, func(c *detector.Config) { c.Shards = 2 })
	b := h.d.NewBatch()
	trace, other := tid(1), tid(2)
	sh := b.ShardOf(trace)
	for n := 3; b.ShardOf(other) != sh; n++ { // another trace of the same shard
		other = tid(n)
	}
	b.Hold(sh)
	for i, tr := range []detector.TraceID{trace, other, trace, other} { // runs of one span
		s := span(tr, 1+i, 0, "gateway", "GET /orders", ten("acme"))
		b.Add(&s)
	}
	if n := b.TouchedForTest(); n != 2 {
		t.Errorf("two traces in four runs listed %d times, want once each", n)
	}
	b.Settle()
	b.TryHold(1 - sh) // lets the trace's shard go
	b.Hold(sh)
	child := span(trace, 9, 1, "orders", "SELECT orders", ten("globex"))
	b.Add(&child)
	b.Close()
	if got := h.rec.of(trace, detector.RuleCrossTenantTrace); len(got) != 1 {
		t.Fatalf("the span added after Settle made the trace cross; the batch raised %s", describe(got))
	}
}
