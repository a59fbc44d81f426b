package main

// The two evidence holes of issue 13, through the built collector: a link
// to a producer whose trace already closed, and a tenant derivation over a
// value cut at 4 KiB.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/store"
)

func TestEvidenceHoles(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the collector binary")
	}
	tenantguardBinary(t)
	t.Run("link_to_closed_producer", testLinkToClosedProducer)
	t.Run("derivation_at_the_cut", testDerivationAtTheCut)
	t.Run("refused_call_split_after_the_client_span", testRefusedCallSplitAfterTheClientSpan)
}

// holeSpan appends a span with a tenant.id to a new ResourceSpans of td.
func holeSpan(td ptrace.Traces, service string, trace pcommon.TraceID, id, parent byte, name, tenant string) ptrace.Span {
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	now := time.Now()
	sp.SetTraceID(trace)
	sp.SetSpanID(pcommon.SpanID{id, id, id, id, id, id, id, id})
	if parent != 0 {
		sp.SetParentSpanID(pcommon.SpanID{parent, parent, parent, parent, parent, parent, parent, parent})
	}
	sp.SetName(name)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Millisecond)))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
	if tenant != "" {
		sp.Attributes().PutStr("tenant.id", tenant)
	}
	return sp
}

func holeTraceID(n byte) pcommon.TraceID {
	return pcommon.TraceID{0x40, 0x1e, 0x13, n, 0, 0, 0, 0, 0, 0, 0, 0, byte(time.Now().UnixNano()), 0, 0, n}
}

// awaitTracesClosed waits until at least n traces have closed after the
// idle window and none is left in memory.
func (c *collector) awaitTracesClosed(t *testing.T, n int, what string) {
	t.Helper()
	eventually(t, 20*time.Second, what+" to close after the idle window", func() (bool, string) {
		expired, live := c.metricSum(t, "tenantguard_traces_expired_total"), c.metricSum(t, "tenantguard_traces_in_memory")
		return expired >= float64(n) && live == 0, fmt.Sprintf("%v traces expired, %v in memory", expired, live)
	})
}

// metricSum adds up a metric's samples over its labels.
func (c *collector) metricSum(t *testing.T, name string) float64 {
	t.Helper()
	sum := 0.0
	for k, v := range c.scrapeMetrics(t) {
		if strings.HasPrefix(k, name+"{") {
			sum += v
		}
	}
	return sum
}

// A consumer linked to a producer span whose trace the collector already
// closed (idle_window 2s) gets a crossing edge with both ends: the
// producer's service and span name survive the close, not only its tenant.
func testLinkToClosedProducer(t *testing.T) {
	t.Parallel()
	c := startCollector(t)
	producer, consumer := holeTraceID(1), holeTraceID(2)
	td := ptrace.NewTraces()
	holeSpan(td, "checkout-svc", producer, 1, 0, "POST /orders", "acme")
	publish := holeSpan(td, "checkout-svc", producer, 2, 1, "publish orders", "acme")
	publish.Attributes().PutStr("messaging.system", "kafka")
	c.postOTLP(t, td)
	c.awaitTracesClosed(t, 1, "the producer's trace")

	td = ptrace.NewTraces()
	consume := holeSpan(td, "fulfilment-svc", consumer, 1, 0, "process orders", "globex")
	link := consume.Links().AppendEmpty()
	link.SetTraceID(producer)
	link.SetSpanID(publish.SpanID())
	c.postOTLP(t, td)

	var f store.Evidence
	eventually(t, 10*time.Second, "a cross_tenant_trace finding on the consumer's trace", func() (bool, string) {
		for _, e := range c.findings(t) {
			if e.TraceID == consumer.String() && e.Rule == ruleCross {
				f = e
				return true, ""
			}
		}
		return false, "none yet"
	})
	want := store.CrossingEdge{
		From: store.EdgeEnd{TraceID: producer.String(), SpanID: publish.SpanID().String(), Service: "checkout-svc", Span: "publish orders", Tenant: "acme"},
		To:   store.EdgeEnd{SpanID: consume.SpanID().String(), Service: "fulfilment-svc", Span: "process orders", Tenant: "globex"},
		Link: true,
	}
	if len(f.CrossingEdges) != 1 {
		t.Fatalf("crossing edges %+v, want the one link edge", f.CrossingEdges)
	}
	got := f.CrossingEdges[0]
	got.Outcome, got.Hops = "", 0 // not what this test is about
	if got != want {
		t.Errorf("link edge\n got %+v\nwant %+v", got, want)
	}
}

// A derivation whose match reaches the 4 KiB cut of url.full (`&tenant=
// tailspin` cut after `tail`) yields no tenant: the span agrees with its
// tenant.id and no tenant_mismatch names "tail". The discarded match is
// counted in tenantguard_tenant_values_rejected_total.
func testDerivationAtTheCut(t *testing.T) {
	t.Parallel()
	c := startCollector(t, withProcessorYAML("tenant_derivations:\n  - {attribute: url.full, regex: '[?&]tenant=(?P<tenant>[a-z]+)'}\n"))
	const base = "https://shop.example/search?q="
	straddling := base + strings.Repeat("x", 4096-len(base)-len("&tenant=tail")) + "&tenant=tailspin"
	cut, control := holeTraceID(3), holeTraceID(4)
	td := ptrace.NewTraces()
	holeSpan(td, "search-svc", cut, 1, 0, "GET /search", "tailspin").Attributes().PutStr("url.full", straddling)
	c.postOTLP(t, td)
	eventually(t, 10*time.Second, "the match at the cut to be counted as rejected", func() (bool, string) {
		n := c.metricSum(t, "tenantguard_tenant_values_rejected_total")
		return n == 1, fmt.Sprintf("%v rejected", n)
	})
	// A real mismatch after it: once its finding is journaled, a finding
	// for the earlier request would be too.
	td = ptrace.NewTraces()
	holeSpan(td, "search-svc", control, 1, 0, "GET /search", "tailspin").Attributes().PutStr("url.full", base+"&tenant=globex")
	c.postOTLP(t, td)
	eventually(t, 10*time.Second, "the control's tenant_mismatch finding", func() (bool, string) {
		for _, e := range c.findings(t) {
			if e.TraceID == control.String() && e.Rule == ruleMismatch {
				return true, ""
			}
		}
		return false, "none yet"
	})
	for _, e := range c.findings(t) {
		if e.TraceID != control.String() {
			t.Errorf("finding on %s (%s, tenants %v): only the control trace has one", e.TraceID, e.Rule, e.Tenants)
		}
		for _, tn := range e.Tenants {
			if tn == "tail" {
				t.Errorf("a finding names the invented tenant tail: %+v", e)
			}
		}
	}
	if n := c.metricSum(t, "tenantguard_tenant_values_rejected_total"); n != 1 {
		t.Errorf("%v tenant values rejected, want 1", n)
	}
}

// The caller's part of a trace closes first (idle_window 2s): storefront's
// acme server span and its client span, which carries no tenant, as
// instrumentation usually leaves it. inventory-svc's refusal for globex
// arrives later, a late span whose parent is that client span. The refused
// edge is still found, through the client span (the span kind is what
// marks it as a call worth keeping when the trace closes).
func testRefusedCallSplitAfterTheClientSpan(t *testing.T) {
	t.Parallel()
	c := startCollector(t)
	trace := holeTraceID(5)
	td := ptrace.NewTraces()
	holeSpan(td, "storefront-svc", trace, 1, 0, "GET /cart", "acme").SetKind(ptrace.SpanKindServer)
	holeSpan(td, "storefront-svc", trace, 2, 1, "GET", "").SetKind(ptrace.SpanKindClient)
	c.postOTLP(t, td)
	c.awaitTracesClosed(t, 1, "the caller's part")
	td = ptrace.NewTraces()
	refusal := holeSpan(td, "inventory-svc", trace, 3, 2, "GET /stock", "globex")
	refusal.SetKind(ptrace.SpanKindServer)
	refusal.Attributes().PutInt("http.response.status_code", 403)
	c.postOTLP(t, td)

	var blocked store.Evidence
	eventually(t, 15*time.Second, "the blocked attempt, closed again", func() (bool, string) {
		for _, e := range c.findings(t) {
			if e.TraceID == trace.String() && e.Rule == ruleBlocked && e.Status == "closed" {
				blocked = e
				return true, ""
			}
		}
		return false, "not yet"
	})
	// The trace's closing versions are written together: a crossing
	// finding raised for it would be in the journal by now.
	for _, e := range c.findings(t) {
		if e.TraceID == trace.String() && e.Rule == ruleCross {
			t.Errorf("the refused call is also reported as a crossing (%s, %d edges)", e.Status, len(e.CrossingEdges))
		}
	}
	if len(blocked.CrossingEdges) != 1 {
		t.Fatalf("blocked attempt edges %+v, want the refused one", blocked.CrossingEdges)
	}
	e := blocked.CrossingEdges[0]
	if e.From.Service != "storefront-svc" || e.From.Tenant != "acme" || e.To.Service != "inventory-svc" || e.To.Tenant != "globex" ||
		e.Hops != 1 || e.Outcome != "blocked" {
		t.Errorf("edge %+v, want storefront-svc (acme) → inventory-svc (globex) through the client span, blocked", e)
	}
}
