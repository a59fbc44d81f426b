package detector_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

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
		{"shared after a real tenant, and the real one again", []string{"system"}, []detector.Span{
			span(tr, 1, 0, "orders", "list", ten("acme")),
			span(tr, 2, 1, "cron", "tick", ten("system")),
			span(tr, 3, 1, "orders", "get", ten("acme")),
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
