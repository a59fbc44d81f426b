package detector_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
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

func TestTenantMismatch(t *testing.T) {
	s := detector.StringValue
	tests := []struct {
		name    string
		shared  []string
		tenants []detector.RawTenant
		want    []detector.TenantSource // nil: no mismatch
		primary string                  // the span's own tenant
		key     string                  // the key it came from
	}{
		{
			name:    "token key vs forged header key",
			tenants: []detector.RawTenant{tk(0, s("acme")), tk(1, s("globex"))},
			want:    []detector.TenantSource{{Key: "tenant.id", Tenant: "acme"}, {Key: "tenant_id", Tenant: "globex"}},
			primary: "acme", key: "tenant.id",
		},
		{
			name:    "header as a string array with two tenants",
			tenants: []detector.RawTenant{tk(1, s("acme")), tk(1, s("globex"))},
			want:    []detector.TenantSource{{Key: "tenant_id", Tenant: "acme"}, {Key: "tenant_id", Tenant: "globex"}},
			primary: "acme", key: "tenant_id",
		},
		{
			name:    "token plus header array smuggling a second tenant",
			tenants: []detector.RawTenant{tk(0, s("acme")), tk(1, s("acme")), tk(1, s("globex"))},
			want: []detector.TenantSource{
				{Key: "tenant.id", Tenant: "acme"}, {Key: "tenant_id", Tenant: "acme"}, {Key: "tenant_id", Tenant: "globex"},
			},
			primary: "acme", key: "tenant.id",
		},
		{
			name:    "span tenant vs resource tenant",
			tenants: []detector.RawTenant{tk(0, s("acme")), res(0, s("globex"))},
			want:    []detector.TenantSource{{Key: "tenant.id", Tenant: "acme"}, {Key: "tenant.id", Tenant: "globex", Resource: true}},
			primary: "acme", key: "tenant.id",
		},
		{
			name:    "int vs padded string of the same tenant",
			tenants: []detector.RawTenant{tk(0, detector.IntValue(42)), tk(1, s(" 42 "))},
			primary: "42", key: "tenant.id",
		},
		{
			name:    "double vs string of the same tenant",
			tenants: []detector.RawTenant{tk(0, detector.DoubleValue(42)), tk(1, s("42"))},
			primary: "42", key: "tenant.id",
		},
		{
			name:    "header array repeating the token tenant",
			tenants: []detector.RawTenant{tk(0, s("acme")), tk(1, s("acme")), tk(1, s(" acme"))},
			primary: "acme", key: "tenant.id",
		},
		{
			name:    "shared token tenant vs real header tenant",
			shared:  []string{"system"},
			tenants: []detector.RawTenant{tk(0, s("system")), tk(1, s("acme"))},
			primary: "acme", key: "tenant_id",
		},
		{
			name:    "real token tenant vs shared header tenant",
			shared:  []string{"system"},
			tenants: []detector.RawTenant{tk(0, s("acme")), tk(1, s("system"))},
			primary: "acme", key: "tenant.id",
		},
		{
			name:    "unusable value is not a second tenant",
			tenants: []detector.RawTenant{tk(0, detector.Value{}), tk(1, s("acme"))},
			primary: "acme", key: "tenant_id",
		},
		{
			name:    "empty value is not a second tenant",
			tenants: []detector.RawTenant{tk(0, s("  ")), tk(1, s("acme"))},
			primary: "acme", key: "tenant_id",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *detector.Config) { c.SharedTenants = tc.shared })
			tr := tid(5)
			// An untenanted root: the only tenant-bearing span is the one
			// under test, so any finding comes from its own values.
			h.batch(span(tr, 1, 0, "gateway", "GET /"), span(tr, 2, 1, "orders", "list", tc.tenants...))
			if got := h.rec.of(tr, cross); len(got) != 0 {
				t.Errorf("one span's own tenant is one tenant; want no cross finding, got %s", describe(got))
			}
			fs := h.rec.of(tr, mismatch)
			if tc.want == nil {
				if len(fs) != 0 {
					t.Fatalf("want no mismatch, got %s", describe(fs))
				}
				return
			}
			if len(fs) != 1 {
				t.Fatalf("want one mismatch finding, got %s", describe(h.rec.all()))
			}
			f := fs[0]
			if f.Severity != detector.SeverityHigh || f.Status != detector.StatusOpen || f.LeakID != detector.LeakID(tr, mismatch) {
				t.Errorf("severity/status/leak = %s/%s/%s", f.Severity, f.Status, f.LeakID)
			}
			// Every tenant the span named is listed (sorted), so a search
			// by the forged tenant finds the attempt too.
			var wantTenants []string
			for _, v := range tc.want {
				if !slices.Contains(wantTenants, v.Tenant) {
					wantTenants = append(wantTenants, v.Tenant)
				}
			}
			slices.Sort(wantTenants)
			if !slices.Equal(f.Tenants, wantTenants) || !slices.Contains(f.Tenants, tc.primary) {
				t.Errorf("Tenants = %v, want %v", f.Tenants, wantTenants)
			}
			if len(f.Mismatches) != 1 {
				t.Fatalf("Mismatches = %+v, want one", f.Mismatches)
			}
			m := f.Mismatches[0]
			if m.SpanID != sid(2) || m.Service != "orders" || m.Name != "list" {
				t.Errorf("mismatch span = %+v", m)
			}
			if !slices.Equal(m.Values, tc.want) {
				t.Errorf("Values = %+v, want %+v", m.Values, tc.want)
			}
			wantEv := detector.EvidenceSpan{SpanID: sid(2), ParentID: sid(1), Service: "orders", Name: "list", Tenant: tc.primary, TenantKey: tc.key, Outcome: detector.OutcomeSucceeded}
			if !slices.Equal(f.Spans, []detector.EvidenceSpan{wantEv}) {
				t.Errorf("Spans = %+v, want [%+v]", f.Spans, wantEv)
			}
			if len(f.Edges) != 0 {
				t.Errorf("mismatch finding carries edges: %+v", f.Edges)
			}
			if st := h.d.Stats(); st.FindingsByRule[mismatch] != 1 || st.FindingsByRule[cross] != 0 {
				t.Errorf("FindingsByRule = %v", st.FindingsByRule)
			}
		})
	}
}

func TestMismatchVersions(t *testing.T) {
	h := newHarness(t, nil)
	tr := tid(6)
	forged := func(id int) detector.Span {
		return span(tr, id, 1, "orders", "list", tk(0, detector.StringValue("acme")), tk(1, detector.StringValue("globex")))
	}
	h.batch(span(tr, 1, 0, "gateway", "GET /", ten("acme")), forged(2))
	if got := h.rec.of(tr, mismatch); len(got) != 1 || len(got[0].Mismatches) != 1 {
		t.Fatalf("want one mismatch version with one span, got %s", describe(h.rec.all()))
	}
	h.clock.Advance(time.Second)
	h.batch(span(tr, 3, 1, "orders", "list", ten("acme")))
	if got := h.rec.of(tr, mismatch); len(got) != 1 {
		t.Fatalf("an agreeing span changed nothing; want no new version, got %s", describe(got))
	}
	h.clock.Advance(time.Second)
	h.batch(forged(4))
	got := h.rec.of(tr, mismatch)
	if len(got) != 2 || len(got[1].Mismatches) != 2 {
		t.Fatalf("a second mismatching span: want a second version with two spans, got %s", describe(got))
	}
	if got[0].LeakID != got[1].LeakID || got[1].Version <= got[0].Version {
		t.Errorf("versions %d then %d of leaks %s, %s", got[0].Version, got[1].Version, got[0].LeakID, got[1].LeakID)
	}
	if len(h.rec.of(tr, cross)) != 0 {
		t.Errorf("no second tenant as a span's own tenant; want no cross finding, got %s", describe(h.rec.all()))
	}
}

// A trace that both crosses tenants (with an edge) and has a mismatching span
// must not re-emit the mismatch finding when nothing changed.
func TestNoReemissionWithBothRules(t *testing.T) {
	h := newHarness(t, nil)
	tr := tid(8)
	h.batch(
		span(tr, 1, 0, "gateway", "GET /", ten("acme")),
		span(tr, 2, 1, "orders", "list", tk(0, detector.StringValue("globex")), tk(1, detector.StringValue("acme"))),
	)
	if c, m := len(h.rec.of(tr, cross)), len(h.rec.of(tr, mismatch)); c != 1 || m != 1 {
		t.Fatalf("want one version of each rule, got %s", describe(h.rec.all()))
	}
	for i := range 3 {
		h.clock.Advance(time.Second)
		before := h.rec.len()
		h.batch(span(tr, 10+i, 2, "orders", "list"))
		if got := h.rec.since(before); len(got) != 0 {
			t.Fatalf("batch %d changed nothing; want no version, got %s", i, describe(got))
		}
	}
}

func TestSharedTenants(t *testing.T) {
	tr := tid(9)
	tests := []struct {
		name      string
		shared    []string
		spans     []detector.Span
		wantCross []string // tenants of the cross finding; nil: none
	}{
		{"shared plus one real tenant", []string{"system"}, []detector.Span{
			span(tr, 1, 0, "cron", "tick", ten("system")),
			span(tr, 2, 1, "orders", "list", ten("acme")),
		}, nil},
		{"shared given as an int", []string{"0"}, []detector.Span{
			span(tr, 1, 0, "cron", "tick", tk(0, detector.IntValue(0))),
			span(tr, 2, 1, "orders", "list", ten("acme")),
		}, nil},
		{"configured with spaces, seen padded", []string{" system "}, []detector.Span{
			span(tr, 1, 0, "cron", "tick", ten("system ")),
			span(tr, 2, 1, "orders", "list", ten("acme")),
		}, nil},
		{"shared vs real under two keys on one span", []string{"system"}, []detector.Span{
			span(tr, 1, 0, "orders", "list", tk(0, detector.StringValue("system")), tk(1, detector.StringValue("acme"))),
		}, nil},
		{"shared is never listed among leaking tenants", []string{"system"}, []detector.Span{
			span(tr, 1, 0, "cron", "tick", ten("system")),
			span(tr, 2, 1, "orders", "list", ten("acme")),
			span(tr, 3, 1, "orders", "list", ten("globex")),
		}, []string{"acme", "globex"}},
		{"without the setting it is a tenant", nil, []detector.Span{
			span(tr, 1, 0, "cron", "tick", ten("system")),
			span(tr, 2, 1, "orders", "list", ten("acme")),
		}, []string{"acme", "system"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *detector.Config) { c.SharedTenants = tc.shared })
			h.batch(tc.spans...)
			h.d.Flush()
			if got := h.rec.of(tr, mismatch); len(got) != 0 {
				t.Errorf("want no mismatch, got %s", describe(got))
			}
			got := h.rec.of(tr, cross)
			if tc.wantCross == nil {
				if len(got) != 0 {
					t.Errorf("want no cross finding, got %s", describe(got))
				}
				return
			}
			if len(got) == 0 {
				t.Fatalf("want a cross finding")
			}
			if f := got[len(got)-1]; !slices.Equal(f.Tenants, tc.wantCross) {
				t.Errorf("Tenants = %v, want %v", f.Tenants, tc.wantCross)
			}
		})
	}
}

func TestAllowServicesSameBatchSuppresses(t *testing.T) {
	tr := tid(10)
	tests := []struct {
		name  string
		allow []string
		spans []detector.Span
	}{
		{"allow-listed root", []string{"admin-console"}, []detector.Span{
			span(tr, 1, 0, "admin-console", "GET /tenants"),
			span(tr, 2, 1, "orders", "list", ten("acme")),
			span(tr, 3, 1, "orders", "list", ten("globex")),
			span(tr, 4, 1, "orders", "list", tk(0, detector.StringValue("acme")), tk(1, detector.StringValue("initech"))),
		}},
		{"allow-listed leaf last in the batch", []string{"billing-batch"}, []detector.Span{
			span(tr, 1, 0, "orders", "list", ten("acme")),
			span(tr, 2, 1, "orders", "list", ten("globex")),
			span(tr, 3, 2, "billing-batch", "run"),
		}},
		{"configured with surrounding spaces", []string{" admin-console "}, []detector.Span{
			span(tr, 1, 0, "orders", "list", ten("acme")),
			span(tr, 2, 1, "admin-console", "GET", ten("globex")),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *detector.Config) { c.AllowServices = tc.allow })
			h.batch(tc.spans...)
			h.clock.Advance(time.Second)
			h.batch(span(tr, 50, 1, "orders", "list", ten("umbrella")))
			h.d.Flush()
			if n := h.rec.len(); n != 0 {
				t.Fatalf("allow-listed trace: want no finding at all, got %s", describe(h.rec.all()))
			}
			if st := h.d.Stats(); st.Findings != 0 {
				t.Errorf("Findings = %d", st.Findings)
			}
		})
	}
}

func TestAllowServicesLaterBatchWithdraws(t *testing.T) {
	h := newHarness(t, func(c *detector.Config) { c.AllowServices = []string{"admin-console", "billing-batch"} })
	tr := tid(11)
	other := tid(12)
	h.batch(
		span(tr, 1, 0, "orders", "list", ten("acme")),
		span(tr, 2, 1, "orders", "list", ten("globex")),
		span(tr, 3, 1, "orders", "list", tk(0, detector.StringValue("acme")), tk(1, detector.StringValue("initech"))),
		span(other, 1, 0, "orders", "list", ten("acme")),
		span(other, 2, 1, "orders", "list", ten("globex")),
	)
	openCross, openMis := h.rec.last(t, tr, cross), h.rec.last(t, tr, mismatch)

	h.clock.Advance(time.Second)
	before := h.rec.len()
	h.batch(span(tr, 4, 0, "admin-console", "GET /tenants"))
	got := h.rec.since(before)
	if len(got) != 2 {
		t.Fatalf("want both open findings re-emitted as allowed, got %s", describe(got))
	}
	for _, f := range got {
		open := openCross
		if f.Rule == mismatch {
			open = openMis
		}
		if f.Status != detector.StatusAllowed {
			t.Errorf("%s: Status = %s, want allowed", f.Rule, f.Status)
		}
		if f.AllowedBy == "" || !strings.Contains(f.AllowedBy, "admin-console") {
			t.Errorf("%s: AllowedBy = %q, want it to name admin-console", f.Rule, f.AllowedBy)
		}
		if f.LeakID != open.LeakID || f.Version <= open.Version {
			t.Errorf("%s: leak %s v%d after leak %s v%d; want same leak, larger version",
				f.Rule, f.LeakID, f.Version, open.LeakID, open.Version)
		}
	}

	// Withdrawn findings stay withdrawn: no growth versions, no closing version.
	h.clock.Advance(time.Second)
	before = h.rec.len()
	h.batch(span(tr, 5, 1, "search", "q", ten("umbrella")))
	h.d.Flush()
	for _, f := range h.rec.since(before) {
		if f.TraceID == tr {
			t.Errorf("version after withdrawal: %s", describe([]detector.Finding{f}))
		}
	}
	// The other trace was never allow-listed and closes normally.
	if f := h.rec.last(t, other, cross); f.Status != detector.StatusClosed || f.AllowedBy != "" {
		t.Errorf("unrelated trace: status %s allowedBy %q", f.Status, f.AllowedBy)
	}
}

func TestResourceTenant(t *testing.T) {
	tr := tid(13)
	s := detector.StringValue
	tests := []struct {
		name    string
		tenants []detector.RawTenant
		want    detector.EvidenceSpan // the child's evidence; Tenant "" means no tenant
	}{
		{"resource tenant when the span has none", []detector.RawTenant{res(0, s("globex"))},
			detector.EvidenceSpan{Tenant: "globex", TenantKey: "tenant.id"}},
		{"resource tenant under the second key", []detector.RawTenant{res(1, s("globex"))},
			detector.EvidenceSpan{Tenant: "globex", TenantKey: "tenant_id"}},
		{"span tenant before resource tenant", []detector.RawTenant{tk(1, s("globex")), res(0, s("globex"))},
			detector.EvidenceSpan{Tenant: "globex", TenantKey: "tenant_id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.batch(span(tr, 1, 0, "gateway", "GET /", ten("acme")), span(tr, 2, 1, "orders", "list", tc.tenants...))
			f := h.rec.last(t, tr, cross)
			if len(f.Edges) != 1 || f.Edges[0].To.Tenant != tc.want.Tenant {
				t.Fatalf("Edges = %+v, want one edge to %q", f.Edges, tc.want.Tenant)
			}
			i := slices.IndexFunc(f.Spans, func(e detector.EvidenceSpan) bool { return e.SpanID == sid(2) })
			if i < 0 {
				t.Fatalf("child missing from evidence %+v", f.Spans)
			}
			if ev := f.Spans[i]; ev.Tenant != tc.want.Tenant || ev.TenantKey != tc.want.TenantKey {
				t.Errorf("evidence tenant/key = %q/%q, want %q/%q", ev.Tenant, ev.TenantKey, tc.want.Tenant, tc.want.TenantKey)
			}
			if got := h.rec.of(tr, mismatch); len(got) != 0 {
				t.Errorf("want no mismatch, got %s", describe(got))
			}
		})
	}

	t.Run("shared resource tenant is no tenant", func(t *testing.T) {
		h := newHarness(t, func(c *detector.Config) { c.SharedTenants = []string{"system"} })
		h.batch(span(tr, 1, 0, "gateway", "GET /", ten("acme")), span(tr, 2, 1, "cron", "tick", res(0, s("system"))))
		if h.rec.len() != 0 {
			t.Errorf("want no finding, got %s", describe(h.rec.all()))
		}
		if st := h.d.Stats(); st.SpansWithoutTenant != 1 {
			t.Errorf("SpansWithoutTenant = %d, want 1", st.SpansWithoutTenant)
		}
	})
}

func TestParentCyclesTerminate(t *testing.T) {
	tr := tid(14)
	tests := []struct {
		name      string
		spans     []detector.Span
		wantEdges []edgeKey
	}{
		{"two untenanted spans parenting each other", []detector.Span{
			span(tr, 10, 11, "a", "a"),
			span(tr, 11, 10, "b", "b"),
			span(tr, 1, 10, "c", "c", ten("acme")),
			span(tr, 2, 11, "d", "d", ten("globex")),
		}, nil},
		{"untenanted self-parent", []detector.Span{
			span(tr, 10, 10, "a", "a"),
			span(tr, 1, 10, "c", "c", ten("acme")),
			span(tr, 2, 10, "d", "d", ten("globex")),
		}, nil},
		{"tenanted spans parenting each other", []detector.Span{
			span(tr, 1, 2, "c", "c", ten("acme")),
			span(tr, 2, 1, "d", "d", ten("globex")),
		}, []edgeKey{{2, 1, 0}, {1, 2, 0}}},
		{"long untenanted ring", func() []detector.Span {
			var ss []detector.Span
			for i := range 200 {
				ss = append(ss, span(tr, 100+i, 100+(i+1)%200, "ring", "hop"))
			}
			return append(ss, span(tr, 1, 100, "c", "c", ten("acme")), span(tr, 2, 150, "d", "d", ten("globex")))
		}(), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			done := make(chan struct{})
			go func() {
				defer close(done)
				h.batch(tc.spans...)
				h.clock.Advance(time.Second)
				h.batch(span(tr, 3, 10, "e", "e", ten("initech"))) // re-evaluates the cycle
				h.d.Flush()
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("detector hung on a parent cycle")
			}
			f := h.rec.of(tr, cross)[0]
			var got []edgeKey
			for _, e := range f.Edges {
				got = append(got, edgeKey{idOf(e.From.SpanID), idOf(e.To.SpanID), e.Hops})
			}
			if !slices.Equal(got, tc.wantEdges) {
				t.Errorf("edges = %v, want %v", got, tc.wantEdges)
			}
			if len(f.Tenants) != 2 {
				t.Errorf("Tenants = %v", f.Tenants)
			}
		})
	}
}

func TestManyTenantsInOneTrace(t *testing.T) {
	const n = 300
	h := newHarness(t, nil)
	tr := tid(15)
	var spans []detector.Span
	spans = append(spans, span(tr, 1, 0, "gateway", "GET /", ten("tenant-000")))
	for i := 1; i < n; i++ {
		spans = append(spans, span(tr, 1+i, 1, "svc", "op", ten(fmt.Sprintf("tenant-%03d", i))))
	}
	// One span carrying all of them under one key (a huge header array).
	var all []detector.RawTenant
	for i := range n {
		all = append(all, tk(1, detector.StringValue(fmt.Sprintf("tenant-%03d", i))))
	}
	spans = append(spans, span(tr, 1000, 1, "svc", "op", all...))
	h.batch(spans...)
	h.clock.Advance(time.Second)
	h.batch(span(tr, 1001, 1, "svc", "op", ten("tenant-late"))) // beyond the cap: no new version
	h.d.Flush()

	f := h.rec.last(t, tr, cross)
	if len(f.Tenants) != 255 {
		t.Errorf("len(Tenants) = %d, want the cap 255", len(f.Tenants))
	}
	if !slices.IsSorted(f.Tenants) || len(slices.Compact(slices.Clone(f.Tenants))) != len(f.Tenants) {
		t.Errorf("Tenants not sorted and distinct")
	}
	if len(f.Spans) > h.cfg.MaxEvidenceSpans {
		t.Errorf("len(Spans) = %d > MaxEvidenceSpans %d", len(f.Spans), h.cfg.MaxEvidenceSpans)
	}
	if len(f.Edges) != 254 {
		t.Errorf("len(Edges) = %d, want 254 (one per tenant below the cap, beside the root's)", len(f.Edges))
	}
	for _, e := range f.Edges {
		if e.To.Tenant == "" || e.From.Tenant == "" {
			t.Errorf("edge with an empty tenant: %+v", e)
		}
	}
	if f.SpanCount != n+2 {
		t.Errorf("SpanCount = %d, want %d", f.SpanCount, n+2)
	}
	// The span naming 300 tenants keeps the first 255 (the cap on a
	// trace's tenants), not all of them.
	if m := h.rec.last(t, tr, mismatch); len(m.Mismatches) != 1 || len(m.Mismatches[0].Values) != 255 {
		t.Errorf("mismatch: %d spans, want 1 with 255 of its %d values", len(m.Mismatches), n)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*detector.Config)
		want   []string // substrings of the error; nil: valid
	}{
		{"defaults", func(*detector.Config) {}, nil},
		{"32 keys", func(c *detector.Config) { c.TenantKeys = keys(32) }, nil},
		{"zero shards means one per CPU", func(c *detector.Config) { c.Shards = 0 }, nil},
		{"no keys", func(c *detector.Config) { c.TenantKeys = nil }, []string{"tenant_attributes"}},
		{"33 keys", func(c *detector.Config) { c.TenantKeys = keys(33) }, []string{"tenant_attributes", "33"}},
		{"blank key", func(c *detector.Config) { c.TenantKeys = []string{"tenant.id", "  "} }, []string{"tenant_attributes[1]"}},
		{"duplicate key", func(c *detector.Config) { c.TenantKeys = []string{"a", "b", "a"} }, []string{"tenant_attributes[2]", "twice"}},
		{"blank allow service", func(c *detector.Config) { c.AllowServices = []string{"admin", ""} }, []string{"allow.services[1]"}},
		{"blank shared tenant", func(c *detector.Config) { c.SharedTenants = []string{" "} }, []string{"allow.shared_tenants[0]"}},
		{"zero idle window", func(c *detector.Config) { c.IdleWindow = 0 }, []string{"idle_window"}},
		{"negative idle window", func(c *detector.Config) { c.IdleWindow = -time.Second }, []string{"idle_window"}},
		{"zero max traces", func(c *detector.Config) { c.MaxTraces = 0 }, []string{"max_traces"}},
		{"negative max traces", func(c *detector.Config) { c.MaxTraces = -1 }, []string{"max_traces"}},
		{"zero max spans per trace", func(c *detector.Config) { c.MaxSpansPerTrace = 0 }, []string{"max_spans_per_trace"}},
		{"zero max evidence spans", func(c *detector.Config) { c.MaxEvidenceSpans = 0 }, []string{"max_evidence_spans"}},
		{"negative shards", func(c *detector.Config) { c.Shards = -2 }, []string{"shards"}},
		{"every problem at once", func(c *detector.Config) { *c = detector.Config{} }, []string{
			"tenant_attributes", "idle_window", "max_traces", "max_spans_per_trace", "max_evidence_spans",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := detector.DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			d, newErr := detector.New(cfg, nil)
			if tc.want == nil {
				if err != nil || newErr != nil {
					t.Fatalf("Validate: %v; New: %v; want valid", err, newErr)
				}
				if d == nil {
					t.Fatal("New returned a nil detector")
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted the config; want an error naming %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if newErr == nil || d != nil {
				t.Errorf("New = %v, %v; want nil and the validation error", d, newErr)
			} else if newErr.Error() != err.Error() {
				t.Errorf("New error %q differs from Validate error %q", newErr, err)
			}
		})
	}
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("key%d", i)
	}
	return out
}

func TestDefaultConfig(t *testing.T) {
	c := detector.DefaultConfig()
	if !slices.Equal(c.TenantKeys, []string{"tenant.id", "tenant_id"}) || c.IdleWindow != detector.DefaultIdleWindow ||
		c.MaxTraces != detector.DefaultMaxTraces || c.MaxSpansPerTrace != detector.DefaultMaxSpansPerTrace ||
		c.MaxEvidenceSpans != detector.DefaultMaxEvidenceSpans {
		t.Errorf("DefaultConfig = %+v", c)
	}
	// Callers get their own slice.
	c.TenantKeys[0] = "changed"
	if detector.DefaultConfig().TenantKeys[0] != "tenant.id" {
		t.Error("DefaultConfig shares its key slice")
	}
}

func TestLeakID(t *testing.T) {
	// Leak ids are stored and compared across collectors and releases:
	// pin the derivation, not just its determinism.
	golden := []struct {
		rule detector.Rule
		want string
	}{
		{cross, "bd4de55c42f4b47ef02f7d63964ac266"},
		{mismatch, "975c39e460e7a0b64f8819352a37fa3d"},
	}
	for _, g := range golden {
		if got := detector.LeakID(tid(1), g.rule); got != g.want {
			t.Errorf("LeakID(%s, %s) = %s, want %s", tid(1), g.rule, got, g.want)
		}
	}
	if detector.LeakID(tid(1), cross) == detector.LeakID(tid(2), cross) {
		t.Error("different traces share a leak id")
	}
	if tid(1).String() != "ab000000000000000000000000000001" || sid(258).String() != "0000000000000102" {
		t.Errorf("id rendering: %s %s", tid(1), sid(258))
	}
	if !(detector.TraceID{}).IsEmpty() || tid(1).IsEmpty() || !sid(0).IsEmpty() || sid(1).IsEmpty() {
		t.Error("IsEmpty")
	}
}

func TestStatsCounters(t *testing.T) {
	h := newHarness(t, nil)
	h.batch(
		span(tid(1), 1, 0, "a", "a", ten("acme")),
		span(tid(1), 2, 1, "b", "b"),
		span(tid(1), 3, 1, "b", "b", ten("globex")),
		span(tid(2), 1, 0, "a", "a", tk(0, detector.Value{})),
		span(tid(3), 1, 0, "a", "a", tk(0, detector.StringValue("x")), tk(1, detector.StringValue("y"))),
	)
	st := h.d.Stats()
	want := detector.Stats{
		Spans:              5,
		SpansWithoutTenant: 2,
		TenantsRejected:    1,
		TracesActive:       3,
		Findings:           2,
		FindingsByRule:     byRule(map[detector.Rule]uint64{cross: 1, mismatch: 1}),
	}
	if !statsEqual(st, want) {
		t.Errorf("Stats = %+v\nwant    %+v", st, want)
	}
	h.d.Flush()
	st = h.d.Stats()
	want.TracesActive, want.TracesExpired = 0, 3
	want.Findings, want.FindingsByRule = 4, byRule(map[detector.Rule]uint64{cross: 2, mismatch: 2})
	if !statsEqual(st, want) {
		t.Errorf("after Flush: Stats = %+v\nwant    %+v", st, want)
	}
}

func statsEqual(a, b detector.Stats) bool {
	return a.Spans == b.Spans && a.SpansWithoutTenant == b.SpansWithoutTenant && a.SpansOverCap == b.SpansOverCap &&
		a.TenantsRejected == b.TenantsRejected && a.TracesActive == b.TracesActive &&
		a.TracesExpired == b.TracesExpired && a.TracesEvicted == b.TracesEvicted && a.Findings == b.Findings &&
		maps.Equal(a.FindingsByRule, b.FindingsByRule)
}

func TestKeyIndexOutOfRangeIsRejected(t *testing.T) {
	h := newHarness(t, nil) // two keys
	tr := tid(16)
	h.batch(
		span(tr, 1, 0, "a", "a", ten("acme")),
		span(tr, 2, 1, "b", "b", tk(7, detector.StringValue("globex"))),
		span(tr, 3, 1, "b", "b", ten("acme"), tk(200, detector.StringValue("globex"))),
	)
	h.d.Flush()
	if h.rec.len() != 0 {
		t.Errorf("values under unknown keys are not tenants; got %s", describe(h.rec.all()))
	}
	if st := h.d.Stats(); st.TenantsRejected != 2 {
		t.Errorf("TenantsRejected = %d, want 2", st.TenantsRejected)
	}
}

func TestFirstSeen(t *testing.T) {
	at := func(d time.Duration) uint64 { return uint64(epoch.Add(d).UnixNano()) }
	tests := []struct {
		name   string
		starts []uint64 // StartUnixNano of the child, then of the parent (next batch)
		want   time.Time
	}{
		{"no start times: first arrival", []uint64{0, 0}, epoch},
		{"start time of the first span", []uint64{at(-2 * time.Second), 0}, epoch.Add(-2 * time.Second)},
		{"parent arriving later started earlier", []uint64{at(-2 * time.Second), at(-5 * time.Second)}, epoch.Add(-5 * time.Second)},
		{"start times in the future are ignored", []uint64{at(time.Hour), at(time.Hour)}, epoch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			tr := tid(17)
			c := span(tr, 2, 1, "b", "b", ten("globex"))
			c.StartUnixNano = tc.starts[0]
			h.batch(c)
			h.clock.Advance(time.Second)
			p := span(tr, 1, 0, "a", "a", ten("acme"))
			p.StartUnixNano = tc.starts[1]
			h.batch(p)
			f := h.rec.last(t, tr, cross)
			if !f.FirstSeen.Equal(tc.want) {
				t.Errorf("FirstSeen = %v, want %v", f.FirstSeen, tc.want)
			}
			if !f.LastSeen.Equal(epoch.Add(time.Second)) {
				t.Errorf("LastSeen = %v", f.LastSeen)
			}
		})
	}
}

// TestConcurrentBatches feeds overlapping traces from several goroutines, as
// concurrent export requests do, and checks that every leaking trace has one
// leak id whose versions only grow, and that clean traces have none.
func TestConcurrentBatches(t *testing.T) {
	const (
		workers   = 8
		traces    = 64
		rounds    = 40
		perBatch  = 6
		leakEvery = 3 // traces 0, 3, 6, ... leak
	)
	rec := &recorder{}
	cfg := detector.DefaultConfig()
	cfg.Shards = 4
	cfg.MaxTraces = 10 * traces // no eviction here; see evict_test.go
	d, err := detector.New(cfg, rec.sink)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	// Readers and a sweeper run alongside (nothing is idle for 60s).
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				d.Sweep()
				_ = d.Stats()
			}
		}
	}()
	var workersWG sync.WaitGroup
	for w := range workers {
		workersWG.Add(1)
		go func() {
			defer workersWG.Done()
			next := 1
			for r := range rounds {
				b := d.NewBatch()
				for k := range perBatch {
					n := (w*7 + r*perBatch + k) % traces
					tenant := fmt.Sprintf("t%d", n)
					if n%leakEvery == 0 {
						tenant = fmt.Sprintf("t%d-%d", n, w%2) // workers disagree
					}
					s := span(tid(n), w<<20|next, w<<20|(next-1), fmt.Sprintf("svc%d", w), "op", ten(tenant))
					next++
					b.Add(&s)
				}
				b.Close()
			}
		}()
	}
	workersWG.Wait()
	close(stop)
	wg.Wait()
	d.Flush()

	fs := rec.all()
	checkVersionInvariants(t, fs)
	byTrace := map[detector.TraceID]map[string]int{}
	closed := map[string]int{}
	for _, f := range fs {
		if f.Rule != cross {
			t.Fatalf("unexpected rule: %s", describe([]detector.Finding{f}))
		}
		if byTrace[f.TraceID] == nil {
			byTrace[f.TraceID] = map[string]int{}
		}
		byTrace[f.TraceID][f.LeakID]++
		if f.Status == detector.StatusClosed {
			closed[f.LeakID]++
		}
	}
	leaking := 0
	for n := range traces {
		ids := byTrace[tid(n)]
		if n%leakEvery != 0 {
			if len(ids) != 0 {
				t.Errorf("trace %d is single-tenant but has findings %v", n, ids)
			}
			continue
		}
		leaking++
		if len(ids) != 1 {
			t.Errorf("trace %d: want exactly one leak id, got %v", n, ids)
			continue
		}
		id := detector.LeakID(tid(n), cross)
		if ids[id] == 0 {
			t.Errorf("trace %d: leak id %v is not LeakID(trace, rule)", n, ids)
		}
		if closed[id] != 1 {
			t.Errorf("trace %d: %d closing versions, want 1", n, closed[id])
		}
	}
	if leaking == 0 || len(byTrace) != leaking {
		t.Errorf("%d traces with findings, want %d", len(byTrace), leaking)
	}
	if st := d.Stats(); st.Spans != workers*rounds*perBatch || st.TracesActive != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

// byRule fills in zero counts for the rules m does not mention.
func byRule(m map[detector.Rule]uint64) map[detector.Rule]uint64 {
	out := map[detector.Rule]uint64{}
	for _, r := range detector.Rules {
		out[r] = m[r]
	}
	return out
}
