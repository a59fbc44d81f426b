package detector_test

import (
	"testing"

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
