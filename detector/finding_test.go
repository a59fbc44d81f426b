package detector_test

import (
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

// Only the first version of a finding is new (metrics count findings, not
// versions), and its latency runs from the trace's first arrival.
func TestOnlyTheFirstVersionIsNew(t *testing.T) {
	h := newHarness(t, nil)
	tr := tid(7)
	h.batch(span(tr, 1, 0, "gateway", "GET /inventory", ten("acme")))
	arrived := h.clock.Now()
	h.clock.Advance(3 * time.Millisecond)
	h.batch(span(tr, 2, 1, "inventory-svc", "SELECT stock", ten("globex")))
	h.batch(span(tr, 3, 1, "billing", "charge", ten("initech")))
	h.d.Flush()
	fs := h.rec.of(tr, detector.RuleCrossTenantTrace)
	if len(fs) < 3 {
		t.Fatalf("want open, update and closing versions, got %s", describe(fs))
	}
	for i, f := range fs {
		if f.New != (i == 0) {
			t.Errorf("version %d: New = %v", i, f.New)
		}
	}
	if lat := fs[0].DetectedAt.Sub(fs[0].ArrivedAt); fs[0].ArrivedAt.After(arrived) || lat < 3*time.Millisecond {
		t.Errorf("arrived %s, detected %s: latency must run from the first span's arrival", fs[0].ArrivedAt, fs[0].DetectedAt)
	}
}
