package detector_test

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

// A trace whose spans arrive further apart than the idle window is judged
// in parts: the first part closes, and the rest reopens it as late spans.
// The crossing edge between a span of the closed part and one of the late
// part must still be seen, with its outcome: a refused attempt whose
// refused child closed first used to come out as a crossing that
// succeeded (no edge known), and on-call was told of a leak that did not
// happen.
func TestTraceSplitAcrossTheIdleWindowKeepsItsCrossingEdge(t *testing.T) {
	storefront := func(tr detector.TraceID) detector.Span {
		return span(tr, 1, 0, "storefront", "GET /cart", ten("acme"))
	}
	inventory := func(tr detector.TraceID, status int32) detector.Span {
		s := span(tr, 2, 1, "inventory", "GET /stock", ten("globex"))
		s.HTTPStatus = status
		return s
	}
	tests := []struct {
		name          string
		first, late   func(detector.TraceID) detector.Span
		wantRule      detector.Rule
		wantOutcome   string
		wantNoOpenRul detector.Rule
	}{
		{"the refused child closed first", func(tr detector.TraceID) detector.Span { return inventory(tr, 403) }, storefront,
			detector.RuleBlockedAttempt, detector.OutcomeBlocked, cross},
		{"the parent closed first, the refused child late", storefront, func(tr detector.TraceID) detector.Span { return inventory(tr, 403) },
			detector.RuleBlockedAttempt, detector.OutcomeBlocked, cross},
		{"the child that succeeded closed first", func(tr detector.TraceID) detector.Span { return inventory(tr, 200) }, storefront,
			cross, detector.OutcomeSucceeded, detector.RuleBlockedAttempt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := closedLinkHarness(t, nil)
			tr := tid(1)
			h.batch(tc.first(tr))
			h.closeAll()
			h.batch(tc.late(tr))
			if err := h.d.CheckEndpointRefsForTest(); err != nil {
				t.Fatalf("reopened: %v", err)
			}
			h.closeAll()
			if err := h.d.CheckEndpointRefsForTest(); err != nil {
				t.Fatalf("closed again: %v", err)
			}
			if st := h.d.Stats(); st.SpansLate != 1 {
				t.Fatalf("the second part should arrive as a late span: %+v", st)
			}
			f := h.rec.last(t, tr, tc.wantRule)
			if len(f.Edges) != 1 {
				t.Fatalf("%s: want one crossing edge, got %+v", tc.wantRule, f.Edges)
			}
			e := f.Edges[0]
			if e.From.Service != "storefront" || e.From.Tenant != "acme" || e.To.Service != "inventory" || e.To.Tenant != "globex" || e.Outcome != tc.wantOutcome {
				t.Errorf("edge %+v, want storefront (acme) → inventory (globex), %s", e, tc.wantOutcome)
			}
			for _, g := range h.rec.of(tr, tc.wantNoOpenRul) {
				if g.Status == detector.StatusOpen || g.Status == detector.StatusClosed {
					t.Errorf("a %s finding was raised: %s", tc.wantNoOpenRul, describe([]detector.Finding{g}))
				}
			}
		})
	}
}

// The usual instrumentation puts a client span without a tenant between
// the caller's server span and the callee's, often below a handler span
// without one too: storefront's GET /cart (acme) → [CartHandler.load] →
// its client span → inventory's GET /stock (globex, refused). Split
// between the services, in either order, the refused edge is still found
// through those spans, whichever part closed first.
func TestTraceSplitAroundATenantlessClientSpan(t *testing.T) {
	for _, handler := range []bool{false, true} {
		for _, calleeFirst := range []bool{false, true} {
			t.Run(fmt.Sprintf("handler span %v/callee first %v", handler, calleeFirst), func(t *testing.T) {
				testSplitAroundClientSpan(t, handler, calleeFirst)
			})
		}
	}
}

func testSplitAroundClientSpan(t *testing.T, handler, calleeFirst bool) {
	hops := 1
	caller := func(tr detector.TraceID) []detector.Span {
		if !handler {
			return []detector.Span{
				span(tr, 1, 0, "storefront", "GET /cart", ten("acme")),
				client(span(tr, 2, 1, "storefront", "GET inventory")), // no tenant
			}
		}
		hops = 2
		return []detector.Span{
			span(tr, 1, 0, "storefront", "GET /cart", ten("acme")),
			span(tr, 4, 1, "storefront", "CartHandler.load"), // no tenant
			client(span(tr, 2, 4, "storefront", "GET inventory")),
			// A call to a store below the handler: not a call a late span hangs from.
			func() detector.Span {
				s := client(span(tr, 5, 4, "storefront", "GET"))
				s.Data = detector.DataCache
				return s
			}(),
		}
	}
	callee := func(tr detector.TraceID) []detector.Span {
		s := span(tr, 3, 2, "inventory", "GET /stock", ten("globex"))
		s.HTTPStatus = 403
		return []detector.Span{s}
	}
	h := closedLinkHarness(t, nil)
	tr := tid(1)
	first, late := caller(tr), callee(tr)
	if calleeFirst {
		first, late = late, first
	}
	h.batch(first...)
	h.closeAll()
	h.batch(late...)
	h.closeAll()
	f := h.rec.last(t, tr, detector.RuleBlockedAttempt)
	if len(f.Edges) != 1 || f.Edges[0].Hops != hops || f.Edges[0].From.Tenant != "acme" || f.Edges[0].To.Tenant != "globex" ||
		f.Edges[0].Outcome != detector.OutcomeBlocked {
		t.Fatalf("blocked attempt edges %+v, want acme → globex through %d spans, blocked", f.Edges, hops)
	}
	for _, g := range h.rec.of(tr, cross) {
		if g.Status == detector.StatusOpen || g.Status == detector.StatusClosed {
			t.Errorf("the refused call is also a crossing: %s", describe([]detector.Finding{g}))
		}
	}
}

func client(s detector.Span) detector.Span {
	s.Calls = true
	return s
}

// Random traffic whose traces close, reopen, close again and get evicted,
// with span caps hit on reopen: the endpoint holds stay exact and versions
// keep their order (the harness checks both when the test ends), and every
// edge of a blocked attempt is a refused one.
func TestReopenedTracesUnderRandomTraffic(t *testing.T) {
	for seed := range int64(8) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			h := closedLinkHarness(t, func(c *detector.Config) {
				c.MaxTraces = 16
				c.MaxSpansPerTrace = 6
			})
			rng := rand.New(rand.NewSource(seed))
			services := []string{"gateway", "orders", "inventory", "billing", "ledger"}
			tenants := []string{"acme", "globex", "initech"}
			for range 600 {
				var spans []detector.Span
				for range 1 + rng.Intn(5) {
					s := span(tid(1+rng.Intn(40)), 1+rng.Intn(12), rng.Intn(13), services[rng.Intn(len(services))], "op")
					if rng.Intn(4) > 0 {
						s.Tenants = []detector.RawTenant{ten(tenants[rng.Intn(len(tenants))])}
					}
					if rng.Intn(5) == 0 {
						s.HTTPStatus = 403
					}
					s.Calls = rng.Intn(3) == 0
					spans = append(spans, s)
				}
				h.batch(spans...)
				if rng.Intn(6) == 0 {
					h.clock.Advance(time.Duration(rng.Intn(1500)) * time.Millisecond)
					h.d.Sweep()
				}
			}
			if st := h.d.Stats(); st.SpansLate == 0 || st.TracesEvicted == 0 {
				t.Fatalf("the traffic should reopen and evict traces: %+v", st)
			}
			for _, f := range h.rec.all() {
				if f.Rule != detector.RuleBlockedAttempt {
					continue
				}
				for _, e := range f.Edges {
					if e.Outcome != detector.OutcomeBlocked {
						t.Fatalf("blocked attempt with an edge that succeeded: %+v", e)
					}
				}
			}
		})
	}
}
