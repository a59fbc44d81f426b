package detector_test

import (
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

// An exporter that retries sends the same spans again; that must not add
// edges or mismatches, nor a new version of the finding.
func TestRedeliveredSpansAddNoEvidence(t *testing.T) {
	h := newHarness(t, nil)
	tr := tid(1)
	leak := []detector.Span{
		span(tr, 1, 0, "gateway", "GET /inventory", ten("acme")),
		span(tr, 2, 1, "inventory-svc", "SELECT stock", ten("globex")),
		span(tr, 3, 1, "gateway", "GET /profile", ten("acme"), tk(1, detector.StringValue("initech"))),
	}
	h.batch(leak...)
	before := h.rec.len()
	h.batch(leak...)
	if got := h.rec.since(before); len(got) != 0 {
		t.Fatalf("redelivery emitted new versions: %s", describe(got))
	}
	h.d.Flush()
	cross := h.rec.last(t, tr, detector.RuleCrossTenantTrace)
	// Span 3's own tenant is acme (key 0), so only span 2 crosses.
	if len(cross.Edges) != 1 {
		t.Fatalf("edges after redelivery = %+v, want the one edge", cross.Edges)
	}
	mm := h.rec.last(t, tr, detector.RuleTenantMismatch)
	if len(mm.Mismatches) != 1 {
		t.Fatalf("mismatches after redelivery = %+v, want one", mm.Mismatches)
	}
}

// Evidence is dated by the spans, so a replay of last month's traces says
// last month, not today.
func TestFindingIsDatedBySpanTimes(t *testing.T) {
	h := newHarness(t, nil)
	tr := tid(2)
	start := time.Date(2024, 3, 2, 9, 30, 0, 0, time.UTC) // before the fake clock's now
	a := span(tr, 1, 0, "gateway", "GET /inventory", ten("acme"))
	a.StartUnixNano, a.EndUnixNano = uint64(start.UnixNano()), uint64(start.Add(40*time.Millisecond).UnixNano())
	b := span(tr, 2, 1, "inventory-svc", "SELECT stock", ten("globex"))
	b.StartUnixNano, b.EndUnixNano = uint64(start.Add(10*time.Millisecond).UnixNano()), uint64(start.Add(30*time.Millisecond).UnixNano())
	h.batch(b, a)
	f := h.rec.last(t, tr, detector.RuleCrossTenantTrace)
	if !f.FirstSeen.Equal(start) || !f.LastSeen.Equal(start.Add(40*time.Millisecond)) {
		t.Fatalf("first/last seen = %s / %s, want the spans' %s / %s", f.FirstSeen, f.LastSeen, start, start.Add(40*time.Millisecond))
	}
	if !f.DetectedAt.After(f.LastSeen) {
		t.Fatalf("detected_at %s should be the clock's time, after the spans", f.DetectedAt)
	}
}
