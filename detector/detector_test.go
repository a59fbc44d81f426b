package detector_test

import (
	"slices"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

const (
	cross    = detector.RuleCrossTenantTrace
	mismatch = detector.RuleTenantMismatch
)

func TestSingleTenantTraceHasNoFinding(t *testing.T) {
	tr := tid(1)
	tests := []struct {
		name    string
		batches [][]detector.Span
	}{
		{"one span", [][]detector.Span{{span(tr, 1, 0, "api", "GET /", ten("acme"))}}},
		{"many spans over several batches", [][]detector.Span{
			{span(tr, 1, 0, "api", "GET /", ten("acme"))},
			{span(tr, 2, 1, "orders", "load", ten("acme")), span(tr, 3, 2, "db", "query", ten("acme"))},
			{span(tr, 4, 1, "billing", "charge", ten("acme"))},
		}},
		{"same tenant as int, double and padded string", [][]detector.Span{{
			span(tr, 1, 0, "api", "GET /", tk(0, detector.IntValue(42))),
			span(tr, 2, 1, "orders", "load", tk(0, detector.DoubleValue(42))),
			span(tr, 3, 2, "db", "query", tk(1, detector.StringValue(" 42\t"))),
		}}},
		{"tenanted root with untenanted children", [][]detector.Span{{
			span(tr, 1, 0, "api", "GET /", ten("acme")),
			span(tr, 2, 1, "proxy", "forward"),
			span(tr, 3, 2, "db", "query"),
		}}},
		{"same tenant under both keys and the resource", [][]detector.Span{{
			span(tr, 1, 0, "api", "GET /", ten("acme"), tk(1, detector.StringValue("acme")), res(0, detector.StringValue("acme"))),
		}}},
		{"no tenant anywhere", [][]detector.Span{{
			span(tr, 1, 0, "api", "GET /"),
			span(tr, 2, 1, "db", "query"),
		}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			for _, b := range tc.batches {
				h.batch(b...)
				h.clock.Advance(time.Second)
			}
			h.d.Flush()
			if n := h.rec.len(); n != 0 {
				t.Fatalf("want no finding, got %s", describe(h.rec.all()))
			}
			st := h.d.Stats()
			if st.Findings != 0 || st.FindingsByRule[cross] != 0 || st.FindingsByRule[mismatch] != 0 {
				t.Errorf("stats count findings: %+v", st)
			}
		})
	}
}

func TestSecondTenantFlaggedAtCloseOfItsBatch(t *testing.T) {
	h := newHarness(t, nil)
	tr := tid(1)

	h.batch(span(tr, 1, 0, "api", "GET /invoices", ten("acme")))
	if n := h.rec.len(); n != 0 {
		t.Fatalf("one tenant: want no finding, got %s", describe(h.rec.all()))
	}

	t1 := h.clock.Advance(time.Second)
	b := h.d.NewBatch()
	child := span(tr, 2, 1, "billing", "charge", ten("globex"))
	b.Add(&child)
	if n := h.rec.len(); n != 0 {
		t.Fatalf("rules must run at Close, not Add; got %s", describe(h.rec.all()))
	}
	b.Close()

	fs := h.rec.all()
	if len(fs) != 1 {
		t.Fatalf("want exactly one finding at Close of the second batch, got %s", describe(fs))
	}
	f := fs[0]
	// A succeeded crossing with no data-bearing span of the foreign tenant
	// is high; the data-bearing case (critical) has its own test.
	if f.Rule != cross || f.Severity != detector.SeverityHigh || f.Status != detector.StatusOpen {
		t.Errorf("rule/severity/status = %s/%s/%s, want %s/%s/%s", f.Rule, f.Severity, f.Status,
			cross, detector.SeverityHigh, detector.StatusOpen)
	}
	if f.LeakID != detector.LeakID(tr, cross) || f.TraceID != tr {
		t.Errorf("LeakID/TraceID = %s/%s", f.LeakID, f.TraceID)
	}
	if f.AllowedBy != "" {
		t.Errorf("AllowedBy = %q on an open finding", f.AllowedBy)
	}
	if want := []string{"acme", "globex"}; !slices.Equal(f.Tenants, want) {
		t.Errorf("Tenants = %v, want %v", f.Tenants, want)
	}
	if want := []string{"api", "billing"}; !slices.Equal(f.Services, want) {
		t.Errorf("Services = %v, want %v", f.Services, want)
	}
	if f.SpanCount != 2 {
		t.Errorf("SpanCount = %d, want 2", f.SpanCount)
	}
	if !f.FirstSeen.Equal(epoch) || !f.LastSeen.Equal(t1) || !f.DetectedAt.Equal(t1) {
		t.Errorf("FirstSeen/LastSeen/DetectedAt = %v/%v/%v, want %v/%v/%v", f.FirstSeen, f.LastSeen, f.DetectedAt, epoch, t1, t1)
	}
	if f.Version < uint64(t1.UnixNano()) {
		t.Errorf("Version = %d, want at least the emission time %d", f.Version, t1.UnixNano())
	}
	wantEdge := detector.CrossingEdge{
		From:    detector.EdgeEnd{SpanID: sid(1), Service: "api", Name: "GET /invoices", Tenant: "acme"},
		To:      detector.EdgeEnd{SpanID: sid(2), Service: "billing", Name: "charge", Tenant: "globex"},
		Outcome: detector.OutcomeSucceeded,
	}
	if len(f.Edges) != 1 || f.Edges[0] != wantEdge {
		t.Errorf("Edges = %+v, want [%+v]", f.Edges, wantEdge)
	}
	wantSpans := []detector.EvidenceSpan{
		{SpanID: sid(1), Service: "api", Name: "GET /invoices", Tenant: "acme", TenantKey: "tenant.id", Outcome: detector.OutcomeSucceeded},
		{SpanID: sid(2), ParentID: sid(1), Service: "billing", Name: "charge", Tenant: "globex", TenantKey: "tenant.id", Outcome: detector.OutcomeSucceeded},
	}
	if !slices.Equal(f.Spans, wantSpans) {
		t.Errorf("Spans = %+v, want %+v", f.Spans, wantSpans)
	}
	if len(f.Mismatches) != 0 {
		t.Errorf("cross finding carries mismatches: %+v", f.Mismatches)
	}
	st := h.d.Stats()
	if st.Findings != 1 || st.FindingsByRule[cross] != 1 || st.FindingsByRule[mismatch] != 0 {
		t.Errorf("stats: Findings=%d byRule=%v", st.Findings, st.FindingsByRule)
	}
	if st.TracesActive != 1 || st.TracesExpired != 0 {
		t.Errorf("the trace must still be open (streaming): %+v", st)
	}
}

// TestLaterSpansUpdateSameLeak walks one trace through batches, saying for
// each whether the cross-tenant finding must get a new version.
func TestLaterSpansUpdateSameLeak(t *testing.T) {
	h := newHarness(t, nil)
	tr := tid(7)
	steps := []struct {
		name        string
		spans       []detector.Span
		wantVersion bool
		tenants     int
		edges       int
		services    int
	}{
		{"first tenant", []detector.Span{span(tr, 1, 0, "api", "GET /", ten("acme"))}, false, 0, 0, 0},
		{"second tenant", []detector.Span{span(tr, 2, 1, "billing", "charge", ten("globex"))}, true, 2, 1, 2},
		{"same tenant as parent, known service", []detector.Span{span(tr, 3, 2, "billing", "refund", ten("globex"))}, false, 2, 1, 2},
		{"untenanted span, known service", []detector.Span{span(tr, 4, 3, "billing", "audit")}, false, 2, 1, 2},
		{"known tenant, new edge", []detector.Span{span(tr, 5, 4, "billing", "notify", ten("acme"))}, true, 2, 2, 2},
		{"third tenant in a separate root", []detector.Span{span(tr, 6, 0, "api", "GET /other", ten("initech"))}, true, 3, 2, 2},
		{"new service only", []detector.Span{span(tr, 7, 6, "search", "index", ten("initech"))}, true, 3, 2, 3},
		{"repeat of the previous shape", []detector.Span{span(tr, 8, 6, "search", "index", ten("initech"))}, false, 3, 2, 3},
		{"several unchanged spans in one batch", []detector.Span{
			span(tr, 9, 8, "search", "index", ten("initech")),
			span(tr, 10, 9, "api", "GET /"),
			span(tr, 11, 10, "api", "GET /", ten("initech")),
		}, false, 3, 2, 3},
	}
	spans := 0
	for _, st := range steps {
		before := h.rec.len()
		h.batch(st.spans...)
		spans += len(st.spans)
		got := h.rec.since(before)
		if !st.wantVersion {
			if len(got) != 0 {
				t.Fatalf("step %q: want no new version, got %s", st.name, describe(got))
			}
			h.clock.Advance(time.Second)
			continue
		}
		if len(got) != 1 {
			t.Fatalf("step %q: want exactly one new version, got %s", st.name, describe(got))
		}
		f := got[0]
		if f.Rule != cross || f.Status != detector.StatusOpen {
			t.Errorf("step %q: %s %s", st.name, f.Rule, f.Status)
		}
		if len(f.Tenants) != st.tenants || len(f.Edges) != st.edges || len(f.Services) != st.services {
			t.Errorf("step %q: tenants=%v edges=%d services=%v; want %d tenants, %d edges, %d services",
				st.name, f.Tenants, len(f.Edges), f.Services, st.tenants, st.edges, st.services)
		}
		if f.SpanCount != spans {
			t.Errorf("step %q: SpanCount = %d, want %d", st.name, f.SpanCount, spans)
		}
		h.clock.Advance(time.Second)
	}

	h.d.Flush()
	fs := h.rec.all()
	ids := map[string]bool{}
	for _, f := range fs {
		ids[f.LeakID] = true
	}
	if len(ids) != 1 || !ids[detector.LeakID(tr, cross)] {
		t.Fatalf("want one leak id, got %d: %s", len(ids), describe(fs))
	}
	if len(fs) != 5 { // four open versions, one closing version
		t.Fatalf("want 5 versions, got %s", describe(fs))
	}
	last := fs[len(fs)-1]
	if last.Status != detector.StatusClosed || last.SpanCount != spans {
		t.Errorf("closing version: status %s span count %d, want closed with %d spans", last.Status, last.SpanCount, spans)
	}
	first := fs[0]
	for _, f := range fs[1:] {
		if !f.DetectedAt.Equal(first.DetectedAt) {
			t.Errorf("DetectedAt changed between versions: %v then %v", first.DetectedAt, f.DetectedAt)
		}
	}
}

// TestFindingSlicesAreOwned checks that a sink may keep or modify what it is
// given without affecting later versions.
func TestFindingSlicesAreOwned(t *testing.T) {
	h := newHarness(t, nil)
	tr := tid(1)
	h.batch(span(tr, 1, 0, "api", "GET /", ten("acme")), span(tr, 2, 1, "billing", "charge", ten("globex")))
	f := h.rec.last(t, tr, cross)
	f.Tenants[0] = "tampered"
	f.Services[0] = "tampered"
	h.batch(span(tr, 3, 2, "search", "q", ten("initech")))
	g := h.rec.last(t, tr, cross)
	if want := []string{"acme", "globex", "initech"}; !slices.Equal(g.Tenants, want) {
		t.Errorf("Tenants = %v, want %v", g.Tenants, want)
	}
	if want := []string{"api", "billing", "search"}; !slices.Equal(g.Services, want) {
		t.Errorf("Services = %v, want %v", g.Services, want)
	}
}

func TestChildBeforeParentFillsEdge(t *testing.T) {
	tr := tid(3)
	parent := span(tr, 2, 1, "orders", "load order", ten("acme"))
	tests := []struct {
		name          string
		batch1        []detector.Span
		batch2        []detector.Span
		batch1Finding bool // a finding (without the edge) already after batch 1
		wantEdge      detector.CrossingEdge
	}{
		{
			name:   "only the child first",
			batch1: []detector.Span{span(tr, 3, 2, "billing", "charge", ten("globex"))},
			batch2: []detector.Span{parent},
			wantEdge: detector.CrossingEdge{
				From: detector.EdgeEnd{SpanID: sid(2), Service: "orders", Name: "load order", Tenant: "acme"},
				To:   detector.EdgeEnd{SpanID: sid(3), Service: "billing", Name: "charge", Tenant: "globex"},
			},
		},
		{
			name: "root and child first, tenanted parent later",
			batch1: []detector.Span{
				span(tr, 1, 0, "gateway", "GET /orders", ten("acme")),
				span(tr, 3, 2, "billing", "charge", ten("globex")),
			},
			batch1Finding: true,
			batch2:        []detector.Span{parent},
			wantEdge: detector.CrossingEdge{
				From: detector.EdgeEnd{SpanID: sid(2), Service: "orders", Name: "load order", Tenant: "acme"},
				To:   detector.EdgeEnd{SpanID: sid(3), Service: "billing", Name: "charge", Tenant: "globex"},
			},
		},
		{
			name: "root and child first, untenanted parent later",
			batch1: []detector.Span{
				span(tr, 1, 0, "gateway", "GET /orders", ten("acme")),
				span(tr, 3, 2, "billing", "charge", ten("globex")),
			},
			batch1Finding: true,
			batch2:        []detector.Span{span(tr, 2, 1, "orders", "load order")},
			wantEdge: detector.CrossingEdge{
				From: detector.EdgeEnd{SpanID: sid(1), Service: "gateway", Name: "GET /orders", Tenant: "acme"},
				To:   detector.EdgeEnd{SpanID: sid(3), Service: "billing", Name: "charge", Tenant: "globex"},
				Hops: 1,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.batch(tc.batch1...)
			got := h.rec.all()
			if !tc.batch1Finding && len(got) != 0 {
				t.Fatalf("after batch 1: want no finding, got %s", describe(got))
			}
			if tc.batch1Finding {
				if len(got) != 1 || len(got[0].Edges) != 0 {
					t.Fatalf("after batch 1: want one finding without edges (parent unknown), got %s", describe(got))
				}
				// Without an edge, every tenant still has a span as evidence.
				var tenants []string
				for _, s := range got[0].Spans {
					tenants = append(tenants, s.Tenant)
				}
				slices.Sort(tenants)
				if !slices.Equal(tenants, []string{"acme", "globex"}) {
					t.Errorf("evidence tenants = %v, want one span per tenant", tenants)
				}
			}
			h.clock.Advance(time.Second)
			h.batch(tc.batch2...)
			f := h.rec.last(t, tr, cross)
			tc.wantEdge.Outcome = detector.OutcomeSucceeded
			if len(f.Edges) != 1 || f.Edges[0] != tc.wantEdge {
				t.Fatalf("Edges = %+v, want [%+v]", f.Edges, tc.wantEdge)
			}
			if len(h.rec.of(tr, cross)) != 1+boolInt(tc.batch1Finding) {
				t.Errorf("want one version per batch, got %s", describe(h.rec.all()))
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

type edgeKey struct {
	from, to int
	hops     int
}

func TestCrossingEdges(t *testing.T) {
	tr := tid(4)
	tests := []struct {
		name   string
		shared []string
		spans  []detector.Span
		want   []edgeKey // sorted by to
	}{
		{"direct parent", nil, []detector.Span{
			span(tr, 1, 0, "a", "a", ten("acme")),
			span(tr, 2, 1, "b", "b", ten("globex")),
		}, []edgeKey{{1, 2, 0}}},
		{"one untenanted proxy", nil, []detector.Span{
			span(tr, 1, 0, "a", "a", ten("acme")),
			span(tr, 2, 1, "proxy", "fwd"),
			span(tr, 3, 2, "b", "b", ten("globex")),
		}, []edgeKey{{1, 3, 1}}},
		{"three untenanted intermediates", nil, []detector.Span{
			span(tr, 1, 0, "a", "a", ten("acme")),
			span(tr, 2, 1, "lb", "fwd"),
			span(tr, 3, 2, "mesh", "fwd"),
			span(tr, 4, 3, "queue", "fwd"),
			span(tr, 5, 4, "b", "b", ten("globex")),
		}, []edgeKey{{1, 5, 3}}},
		{"shared-tenant intermediate is a hop", []string{"system"}, []detector.Span{
			span(tr, 1, 0, "a", "a", ten("acme")),
			span(tr, 2, 1, "cron", "tick", ten("system")),
			span(tr, 3, 2, "b", "b", ten("globex")),
		}, []edgeKey{{1, 3, 1}}},
		{"untenanted chain up to the root is no edge", nil, []detector.Span{
			span(tr, 1, 0, "a", "a"),
			span(tr, 2, 1, "b", "b", ten("globex")),
			span(tr, 3, 0, "c", "c", ten("acme")),
		}, nil},
		{"chain to a missing parent is no edge", nil, []detector.Span{
			span(tr, 1, 0, "a", "a", ten("acme")),
			span(tr, 2, 99, "proxy", "fwd"),
			span(tr, 3, 2, "b", "b", ten("globex")),
		}, nil},
		{"nearest tenanted ancestor wins", nil, []detector.Span{
			span(tr, 1, 0, "a", "a", ten("acme")),
			span(tr, 2, 1, "a", "a2", ten("globex")),
			span(tr, 3, 2, "proxy", "fwd"),
			span(tr, 4, 3, "b", "b", ten("globex")),
		}, []edgeKey{{1, 2, 0}}},
		{"back and forth", nil, []detector.Span{
			span(tr, 1, 0, "a", "a", ten("acme")),
			span(tr, 2, 1, "b", "b", ten("globex")),
			span(tr, 3, 2, "c", "c", ten("acme")),
		}, []edgeKey{{1, 2, 0}, {2, 3, 0}}},
		{"fan out", nil, []detector.Span{
			span(tr, 1, 0, "a", "a", ten("acme")),
			span(tr, 2, 1, "b", "b", ten("globex")),
			span(tr, 3, 1, "c", "c", ten("initech")),
			span(tr, 4, 1, "d", "d", ten("acme")),
		}, []edgeKey{{1, 2, 0}, {1, 3, 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *detector.Config) { c.SharedTenants = tc.shared })
			h.batch(tc.spans...)
			f := h.rec.last(t, tr, cross)
			byID := map[detector.SpanID]detector.Span{}
			for _, s := range tc.spans {
				byID[s.SpanID] = s
			}
			var got []edgeKey
			for _, e := range f.Edges {
				got = append(got, edgeKey{idOf(e.From.SpanID), idOf(e.To.SpanID), e.Hops})
				for _, end := range []detector.EdgeEnd{e.From, e.To} {
					s := byID[end.SpanID]
					if end.Service != s.Service || end.Name != s.Name || end.Tenant != s.Tenants[0].Value.Str {
						t.Errorf("edge end %+v does not describe span %d (%s %s %s)", end, idOf(end.SpanID),
							s.Service, s.Name, s.Tenants[0].Value.Str)
					}
				}
				if e.From.Tenant == e.To.Tenant {
					t.Errorf("edge between the same tenant: %+v", e)
				}
			}
			slices.SortFunc(got, func(a, b edgeKey) int { return a.to - b.to })
			if !slices.Equal(got, tc.want) {
				t.Errorf("edges = %v, want %v", got, tc.want)
			}
			// Both ends of every edge are evidence.
			for _, e := range f.Edges {
				for _, id := range []detector.SpanID{e.From.SpanID, e.To.SpanID} {
					if !slices.ContainsFunc(f.Spans, func(s detector.EvidenceSpan) bool { return s.SpanID == id }) {
						t.Errorf("edge end %d missing from evidence %+v", idOf(id), f.Spans)
					}
				}
			}
		})
	}
}

func idOf(s detector.SpanID) int {
	n := 0
	for _, b := range s {
		n = n<<8 | int(b)
	}
	return n
}
