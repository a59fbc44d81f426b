package detector_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

// Span records name their endpoint (service, span name) by an id, and the
// endpoint table forgets names it was not asked for in a while. An id must
// keep naming its endpoint for as long as a record holds it, and be given
// to another endpoint only after: here the table retires names every 4 new
// ones, while traces holding them stay open, close, and leave link targets
// that later consumers reach. Every edge must name its own trace's spans.
func TestEndpointIDsOutliveRetiredNames(t *testing.T) {
	h := closedLinkHarness(t, func(c *detector.Config) { c.Shards, c.LateWindow = 1, time.Hour })
	h.d.SetEndpointLimitForTest(4)
	const n = 60
	producer := func(i int) detector.TraceID { return tid(1000 + i) }
	for i := range n {
		// A producer, closed (its spans buried as link targets) before
		// the names after it retire its own.
		p := producer(i)
		publish := span(p, 2, 1, "queue", fmt.Sprintf("publish %d", i), ten("acme"))
		publish.Data = detector.DataMessaging
		h.batch(span(p, 1, 0, "gateway", fmt.Sprintf("POST /orders/%d", i), ten("acme")), publish)
		h.closeAll()
		// A trace that crosses tenants and stays open across the next
		// traces' names, then gains a span.
		c := tid(5000 + i)
		h.batch(span(c, 1, 0, "gateway", fmt.Sprintf("GET /stock/%d", i), ten("acme")),
			span(c, 2, 1, "inventory", fmt.Sprintf("SELECT stock %d", i), ten("globex")))
		if err := h.d.CheckEndpointRefsForTest(); err != nil {
			t.Fatalf("after trace %d: %v", i, err)
		}
	}
	for i := range n {
		// A consumer of another tenant linking to a long-closed producer.
		h.batch(consumer(tid(9000+i), "globex", producer(i), 2))
		wantLinkEdge(t, h.rec.last(t, tid(9000+i), cross), detector.EdgeEnd{
			TraceID: producer(i), SpanID: sid(2), Service: "queue", Name: fmt.Sprintf("publish %d", i), Tenant: "acme"})
	}
	for i := range n {
		f := h.rec.last(t, tid(5000+i), cross)
		if len(f.Edges) != 1 {
			t.Fatalf("trace %d: want one crossing edge, got %+v", i, f.Edges)
		}
		e := f.Edges[0]
		if e.From.Service != "gateway" || e.From.Name != fmt.Sprintf("GET /stock/%d", i) ||
			e.To.Service != "inventory" || e.To.Name != fmt.Sprintf("SELECT stock %d", i) {
			t.Errorf("trace %d: edge %s %q → %s %q, want its own spans", i, e.From.Service, e.From.Name, e.To.Service, e.To.Name)
		}
	}
	if err := h.d.CheckEndpointRefsForTest(); err != nil {
		t.Fatal(err)
	}
}

// The table's shortcut for the names of the service asked for last must
// not hand out an endpoint it retired: "hot" is asked for through it while
// new names of the same service start two generations, which retire it;
// its trace (no tenant, so no link targets kept) then closes, so nothing
// holds it and its id is free.
func TestEndpointIDsOfHotNamesAcrossGenerations(t *testing.T) {
	h := closedLinkHarness(t, func(c *detector.Config) { c.Shards = 1 })
	h.d.SetEndpointLimitForTest(2)
	for i := range 3 {
		tr := tid(100 + i)
		spans := []detector.Span{span(tr, 1, 0, "svc", "hot")}
		for j := range 4 {
			spans = append(spans, span(tr, 2+j, 1, "svc", fmt.Sprintf("new %d.%d", i, j)))
		}
		spans = append(spans, span(tr, 6, 1, "svc", "hot"))
		h.batch(spans...)
		h.closeAll()
		if err := h.d.CheckEndpointRefsForTest(); err != nil {
			t.Fatalf("after trace %d: %v", i, err)
		}
	}
}
