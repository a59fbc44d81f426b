package detector_test

import (
	"slices"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

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
