package detector_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

// closedLinkHarness closes traces after a second idle and keeps their tombs
// for a minute.
func closedLinkHarness(t *testing.T, mutate func(*detector.Config)) *harness {
	return newHarness(t, func(c *detector.Config) {
		c.IdleWindow = time.Second
		c.LateWindow = time.Minute
		if mutate != nil {
			mutate(c)
		}
	})
}

// closeAll lets every trace in memory pass its idle window and close.
func (h *harness) closeAll() {
	h.clock.Advance(h.cfg.IdleWindow + time.Second)
	h.d.Sweep()
}

// consumer is a span of tenant in its own trace, linked to a producer span.
func consumer(trace detector.TraceID, tenant string, producer detector.TraceID, producerSpan int) detector.Span {
	c := span(trace, 1, 0, "fulfilment", "process order", ten(tenant))
	c.Links = []detector.Link{{TraceID: producer, SpanID: sid(producerSpan)}}
	return c
}

func wantLinkEdge(t *testing.T, f detector.Finding, from detector.EdgeEnd) {
	t.Helper()
	if len(f.Edges) != 1 || !f.Edges[0].Link {
		t.Fatalf("want one link edge, got %+v", f.Edges)
	}
	if got := f.Edges[0].From; got != from {
		t.Fatalf("link edge from %+v, want %+v", got, from)
	}
	if to := f.Edges[0].To; to.Service != "fulfilment" || to.Name != "process order" || to.Tenant == "" {
		t.Fatalf("link edge to %+v", to)
	}
}

// A consumer linked to a producer whose trace already closed gets an edge
// with both ends: the closed trace keeps its producer span's service and
// name, not only its tenant. Before, the edge's origin service and span
// were empty.
func TestLinkToAClosedProducerHasBothEnds(t *testing.T) {
	h := closedLinkHarness(t, nil)
	producer := tid(1)
	publish := span(producer, 2, 1, "checkout", "publish order", ten("acme"))
	publish.Data = detector.DataMessaging
	h.batch(span(producer, 1, 0, "gateway", "POST /orders", ten("acme")), publish)
	h.closeAll()
	if h.d.Stats().TracesActive != 0 {
		t.Fatalf("the producer's trace should be closed: %+v", h.d.Stats())
	}
	h.batch(consumer(tid(2), "globex", producer, 2))
	wantLinkEdge(t, h.rec.last(t, tid(2), cross), detector.EdgeEnd{
		TraceID: producer, SpanID: sid(2), Service: "checkout", Name: "publish order", Tenant: "acme"})
	// The same for a link to the root span, which is not data-bearing.
	h.batch(consumer(tid(3), "globex", producer, 1))
	wantLinkEdge(t, h.rec.last(t, tid(3), cross), detector.EdgeEnd{
		TraceID: producer, SpanID: sid(1), Service: "gateway", Name: "POST /orders", Tenant: "acme"})
	if st := h.d.Stats(); st.LinksUnresolved != 0 {
		t.Errorf("LinksUnresolved %d", st.LinksUnresolved)
	}
}

// A closed trace with several tenants used to resolve no link at all (its
// tomb kept no per-span tenant); each kept span now answers with its own.
func TestLinkToAClosedMultiTenantProducer(t *testing.T) {
	h := closedLinkHarness(t, nil)
	producer := tid(1)
	h.batch(span(producer, 1, 0, "gateway", "POST /orders", ten("acme")),
		span(producer, 2, 1, "checkout", "publish order", ten("globex")))
	h.closeAll()
	h.batch(consumer(tid(2), "initech", producer, 2))
	wantLinkEdge(t, h.rec.last(t, tid(2), cross), detector.EdgeEnd{
		TraceID: producer, SpanID: sid(2), Service: "checkout", Name: "publish order", Tenant: "globex"})
}

// A link to a span the closed trace did not keep is unresolved and counted,
// never an edge with an empty end: a span with no tenant, a span id the
// trace never had, and spans beyond the cap. Data-bearing spans are kept
// first, so a producer late in a long trace is still found.
func TestLinkToAClosedTraceKeepsDataBearingSpansFirst(t *testing.T) {
	h := closedLinkHarness(t, nil)
	producer := tid(1)
	spans := []detector.Span{span(producer, 1, 0, "gateway", "GET /", ten("acme")), span(producer, 2, 1, "cron", "tick")}
	for i := 3; i <= 40; i++ {
		spans = append(spans, span(producer, i, 1, "worker", fmt.Sprint("step ", i), ten("acme")))
	}
	publish := span(producer, 41, 1, "worker", "publish batch", ten("acme"))
	publish.Data = detector.DataMessaging
	spans = append(spans, publish)
	h.batch(spans...)
	h.closeAll()

	h.batch(consumer(tid(2), "globex", producer, 41))
	wantLinkEdge(t, h.rec.last(t, tid(2), cross), detector.EdgeEnd{
		TraceID: producer, SpanID: sid(41), Service: "worker", Name: "publish batch", Tenant: "acme"})
	// Then the root, then the latest spans first.
	h.batch(consumer(tid(3), "globex", producer, 1))
	if f := h.rec.last(t, tid(3), cross); f.Edges[0].From.Service != "gateway" {
		t.Fatalf("the root is among the spans kept: %+v", f.Edges)
	}
	n := h.rec.len()
	h.batch(consumer(tid(4), "globex", producer, 2), // no tenant
		consumer(tid(5), "globex", producer, 99), // never existed
		consumer(tid(6), "globex", producer, 3))  // beyond the cap: the earliest step
	h.closeAll() // the unresolved links wait an idle window for their producer
	for _, f := range h.rec.since(n) {
		for _, e := range f.Edges {
			if e.Link && (e.From.Service == "" || e.From.Name == "") {
				t.Fatalf("a link edge with an empty end: %+v", f)
			}
		}
	}
	if st := h.d.Stats(); st.LinksUnresolved != 3 {
		t.Errorf("LinksUnresolved %d, want 3", st.LinksUnresolved)
	}
}

// A trace reopened by a late span and closed again still answers for the
// spans its first close kept.
func TestLinkToAReopenedProducer(t *testing.T) {
	h := closedLinkHarness(t, nil)
	producer := tid(1)
	h.batch(span(producer, 1, 0, "checkout", "publish order", ten("acme")))
	h.closeAll()
	h.clock.Advance(10 * time.Second)
	buried := h.d.BuriedSpansForTest()
	h.batch(span(producer, 2, 1, "audit", "record", ten("acme"))) // late
	h.closeAll()
	if st := h.d.Stats(); st.SpansLate != 1 || st.TracesActive != 0 {
		t.Fatalf("want one late span and the trace closed again: %+v", st)
	}
	// The second close keeps the first close's span once (the reopened
	// trace held it again, to find edges to it) and the late one.
	if got := h.d.BuriedSpansForTest() - buried; got != 2 {
		t.Errorf("the second close buried %d spans, want 2", got)
	}
	h.batch(consumer(tid(2), "globex", producer, 1), consumer(tid(3), "globex", producer, 2))
	wantLinkEdge(t, h.rec.last(t, tid(2), cross), detector.EdgeEnd{
		TraceID: producer, SpanID: sid(1), Service: "checkout", Name: "publish order", Tenant: "acme"})
	wantLinkEdge(t, h.rec.last(t, tid(3), cross), detector.EdgeEnd{
		TraceID: producer, SpanID: sid(2), Service: "audit", Name: "record", Tenant: "acme"})
}

// The spans tombs keep are bounded by the trace limit and go with their
// tombs: past the late window a link to the closed trace resolves nothing.
func TestClosedTraceLinkTargetsAreBounded(t *testing.T) {
	const maxTraces = 8
	h := closedLinkHarness(t, func(c *detector.Config) { c.MaxTraces = maxTraces; c.Shards = 1 })
	for tr := 1; tr <= 100; tr++ {
		var spans []detector.Span
		for s := 1; s <= 30; s++ {
			spans = append(spans, span(tid(tr), s, 0, "svc", "op", ten("acme")))
		}
		h.batch(spans...)
		h.closeAll()
	}
	if got := h.d.BuriedSpansForTest(); got != maxTraces*8 {
		t.Fatalf("%d buried spans, want %d (8 for each of the %d tombs)", got, maxTraces*8, maxTraces)
	}
	h.batch(consumer(tid(1000), "globex", tid(100), 5))
	wantLinkEdge(t, h.rec.last(t, tid(1000), cross), detector.EdgeEnd{
		TraceID: tid(100), SpanID: sid(5), Service: "svc", Name: "op", Tenant: "acme"})
	for range 2 { // the consumer's trace closes, then its tomb goes too
		h.clock.Advance(2 * h.cfg.LateWindow)
		h.d.Sweep()
	}
	if got := h.d.BuriedSpansForTest(); got != 0 {
		t.Fatalf("%d buried spans left after the late window", got)
	}
	n := h.rec.len()
	h.batch(consumer(tid(1001), "globex", tid(100), 5))
	if got := h.rec.since(n); len(got) != 0 {
		t.Fatalf("past the late window a link to the closed trace is unresolved: %s", describe(got))
	}
}
