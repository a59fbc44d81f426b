package detector_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

func totalSpans(cov map[string]detector.ServiceCoverage) uint64 {
	var n uint64
	for _, c := range cov {
		n += c.Spans
	}
	return n
}

// The bound is one for the detector, not one per shard: 16 shards and 200
// invented names give at most MaxServices names plus _other, and no span
// goes uncounted.
func TestServiceTableBoundIsPerDetector(t *testing.T) {
	h := newHarness(t, func(c *detector.Config) { c.Shards = 16; c.MaxServices = 10 })
	// one real service on traces in every shard takes one place, not 16
	for i := range 64 {
		h.batch(span(tid(1000+i), 1, 0, "api", "op", ten("acme")))
	}
	for i := range 200 {
		h.batch(span(tid(i+1), 1, 0, fmt.Sprintf("junk-%d", i), "op", ten("acme")))
	}
	cov := h.d.Coverage()
	if len(cov) != 11 || cov["api"].Spans != 64 {
		t.Fatalf("want api (64 spans), 9 junk names and %s, got %d names: %v", detector.OtherServices, len(cov), cov)
	}
	if cov[detector.OtherServices].Spans != 191 || totalSpans(cov) != 264 {
		t.Fatalf("want 191 spans under %s and 264 in all, got %v", detector.OtherServices, cov)
	}
}

// A junk flood fills the table; once it has been idle for ServiceIdle, a
// real service that arrived during the flood (and so was counted under
// _other) gets its own counters at its next span, and the junk is gone.
func TestServiceTableForgetsIdleServices(t *testing.T) {
	h := newHarness(t, func(c *detector.Config) { c.Shards = 4; c.MaxServices = 5; c.ServiceIdle = time.Minute })
	trace := 1
	send := func(service string) {
		h.batch(span(tid(trace), 1, 0, service, "op", ten("acme")))
		trace++
	}
	for i := range 50 {
		send(fmt.Sprintf("junk-%d", i))
	}
	send("orders-svc")
	h.d.Sweep()
	if cov := h.d.Coverage(); len(cov) != 6 || cov["orders-svc"].Spans != 0 || cov[detector.OtherServices].Spans != 46 {
		t.Fatalf("during the flood: want 5 junk names and _other holding 46 spans, got %v", cov)
	}
	h.clock.Advance(30 * time.Second)
	send("orders-svc") // still busy: not forgotten, still no room
	h.d.Sweep()
	h.clock.Advance(31 * time.Second)
	h.d.Sweep() // junk idle 61s: forgotten
	cov := h.d.Coverage()
	if len(cov) != 1 || cov[detector.OtherServices].Spans != 47 {
		t.Fatalf("after the idle period: want only _other (47 spans), got %v", cov)
	}
	send("orders-svc")
	send("payments")
	cov = h.d.Coverage()
	if cov["orders-svc"].Spans != 1 || cov["payments"].Spans != 1 {
		t.Fatalf("orders-svc and payments must have their own counters now, got %v", cov)
	}
}

// A service that goes quiet in some shards but not in others keeps one
// total that never goes down: Prometheus would read a drop as a counter
// reset and count the whole value again.
func TestServiceTotalNeverGoesDown(t *testing.T) {
	h := newHarness(t, func(c *detector.Config) { c.Shards = 8; c.ServiceIdle = time.Minute })
	sent := uint64(0)
	for i := range 64 { // 64 traces: several in each shard
		h.batch(span(tid(i+1), 1, 0, "api", "op"))
		sent++
	}
	h.d.Sweep()
	for range 3 {
		h.clock.Advance(40 * time.Second)
		h.batch(span(tid(1), 2, 1, "api", "op")) // one trace: one shard stays busy
		sent++
		h.d.Sweep()
		if got := h.d.Coverage()["api"]; got.Spans != sent || got.WithoutTenant != sent {
			t.Fatalf("api: want %d spans, all without tenant, got %+v", sent, got)
		}
	}
	h.clock.Advance(2 * time.Minute)
	h.d.Sweep()
	h.d.Sweep()
	if cov := h.d.Coverage(); len(cov) != 0 {
		t.Fatalf("idle everywhere: want the service forgotten, got %v", cov)
	}
}
