package detector_test

import (
	"math"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/tenantguard/tenantguard/detector"
)

// TestNormalizeEquivalence puts two raw values on two spans of one trace,
// beside a third tenant, and reads back how the detector named them.
func TestNormalizeEquivalence(t *testing.T) {
	s, i, f := detector.StringValue, detector.IntValue, detector.DoubleValue
	tests := []struct {
		name string
		a, b detector.Value
		want []string // the tenants a and b normalise to (one when they agree)
	}{
		{"int and string", i(42), s("42"), []string{"42"}},
		{"int and integral double", i(42), f(42.0), []string{"42"}},
		{"double and string", f(42), s("42"), []string{"42"}},
		{"string padded with spaces", s(" 42 "), s("42"), []string{"42"}},
		{"string padded with tabs and newlines", s("\t42\r\n"), i(42), []string{"42"}},
		{"negative int and string", i(-7), s("-7"), []string{"-7"}},
		{"negative zero double and zero", f(math.Copysign(0, -1)), i(0), []string{"0"}},
		{"fractional double and string", f(42.5), s("42.5"), []string{"42.5"}},
		{"small fraction", f(0.1), s("0.1"), []string{"0.1"}},
		{"double 1e15 and int", f(1e15), i(1e15), []string{"1000000000000000"}},
		{"double 1e16 and int", f(1e16), i(1e16), []string{"10000000000000000"}},
		{"double 2^62 and int", f(1 << 62), i(1 << 62), []string{"4611686018427387904"}},
		{"double and int at MinInt64", f(math.MinInt64), i(math.MinInt64), []string{"-9223372036854775808"}},
		{"int at MaxInt64", i(math.MaxInt64), s("9223372036854775807"), []string{"9223372036854775807"}},
		{"double beyond int64", f(1e300), s("1e+300"), []string{"1e+300"}},
		{"case matters", s("Acme"), s("acme"), []string{"Acme", "acme"}},
		{"leading zeros matter in strings", s("42"), s("042"), []string{"042", "42"}},
		{"inner spaces are kept", s("4 2"), s("42"), []string{"4 2", "42"}},
		{"fraction is not truncated", f(42.5), i(42), []string{"42", "42.5"}},
		{"string 42.0 is a string", s("42.0"), i(42), []string{"42", "42.0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			tr := tid(1)
			h.batch(
				span(tr, 1, 0, "gateway", "GET /", ten("~other")),
				span(tr, 2, 1, "a", "a", tk(0, tc.a)),
				span(tr, 3, 1, "b", "b", tk(1, tc.b)),
			)
			got := h.rec.last(t, tr, cross).Tenants
			want := append(slices.Clone(tc.want), "~other")
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("Tenants = %q, want %q", got, want)
			}
			if st := h.d.Stats(); st.TenantsRejected != 0 {
				t.Errorf("TenantsRejected = %d", st.TenantsRejected)
			}
		})
	}
}

func TestNormalizeRejects(t *testing.T) {
	s := detector.StringValue
	long := strings.Repeat("a", detector.MaxTenantLength)
	tests := []struct {
		name         string
		v            detector.Value
		want         string // the tenant; "" when the value is not one
		wantRejected uint64
	}{
		{"empty string is ignored", s(""), "", 0},
		{"whitespace is ignored", s(" \t\r\n "), "", 0},
		{"exactly MaxTenantLength", s(long), long, 0},
		{"MaxTenantLength after trimming", s("  " + long + "\n"), long, 0},
		{"longer than MaxTenantLength", s(long + "a"), "", 1},
		{"far longer", s(strings.Repeat("x", 1<<16)), "", 1},
		{"no kind (bool, map, bytes upstream)", detector.Value{}, "", 1},
		{"unknown kind", detector.Value{Kind: 99, Str: "acme"}, "", 1},
		{"NaN", detector.DoubleValue(math.NaN()), "", 1},
		{"+Inf", detector.DoubleValue(math.Inf(1)), "", 1},
		{"-Inf", detector.DoubleValue(math.Inf(-1)), "", 1},
		{"zero int is a tenant", detector.IntValue(0), "0", 0},
		{"zero string is a tenant", s("0"), "0", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			tr := tid(2)
			h.batch(span(tr, 1, 0, "gateway", "GET /", ten("~other")), span(tr, 2, 1, "a", "a", tk(0, tc.v)))
			st := h.d.Stats()
			if st.TenantsRejected != tc.wantRejected {
				t.Errorf("TenantsRejected = %d, want %d", st.TenantsRejected, tc.wantRejected)
			}
			if tc.want == "" {
				if st.SpansWithoutTenant != 1 {
					t.Errorf("SpansWithoutTenant = %d, want 1", st.SpansWithoutTenant)
				}
				if h.rec.len() != 0 {
					t.Errorf("want no finding, got %s", describe(h.rec.all()))
				}
				return
			}
			if st.SpansWithoutTenant != 0 {
				t.Errorf("SpansWithoutTenant = %d, want 0", st.SpansWithoutTenant)
			}
			if got := h.rec.last(t, tr, cross).Tenants; !slices.Contains(got, tc.want) || len(got) != 2 {
				t.Errorf("Tenants = %q, want %q and ~other", got, tc.want)
			}
		})
	}
}

// A rejected value under the most trusted key does not hide a usable value
// under the next key.
func TestRejectedValueFallsThroughToNextKey(t *testing.T) {
	h := newHarness(t, nil)
	tr := tid(3)
	h.batch(
		span(tr, 1, 0, "gateway", "GET /", ten("acme")),
		span(tr, 2, 1, "a", "a", tk(0, detector.StringValue(strings.Repeat("z", 300))), tk(1, detector.StringValue("globex"))),
	)
	f := h.rec.last(t, tr, cross)
	if len(f.Edges) != 1 || f.Edges[0].To.Tenant != "globex" {
		t.Fatalf("Edges = %+v, want one to globex", f.Edges)
	}
	i := slices.IndexFunc(f.Spans, func(e detector.EvidenceSpan) bool { return e.SpanID == sid(2) })
	if i < 0 || f.Spans[i].TenantKey != "tenant_id" {
		t.Errorf("evidence %+v, want span 2 with key tenant_id", f.Spans)
	}
	if len(h.rec.of(tr, mismatch)) != 0 {
		t.Errorf("a rejected value is not a mismatch: %s", describe(h.rec.all()))
	}
	if st := h.d.Stats(); st.TenantsRejected != 1 {
		t.Errorf("TenantsRejected = %d, want 1", st.TenantsRejected)
	}
}

// Every rejected value is counted once, including on a mismatching span
// (whose values are read a second time to describe the mismatch).
func TestRejectedCountedOnce(t *testing.T) {
	h := newHarness(t, nil)
	tr := tid(4)
	h.batch(span(tr, 1, 0, "a", "a",
		tk(0, detector.StringValue("acme")),
		tk(1, detector.StringValue("globex")),
		tk(1, detector.Value{}),
		tk(1, detector.StringValue(strings.Repeat("z", detector.MaxTenantLength+1))),
	))
	m := h.rec.last(t, tr, mismatch)
	if len(m.Mismatches) != 1 || len(m.Mismatches[0].Values) != 2 {
		t.Errorf("Mismatches = %+v, want one span with the two usable values", m.Mismatches)
	}
	if st := h.d.Stats(); st.TenantsRejected != 2 {
		t.Errorf("TenantsRejected = %d, want 2 (one per rejected value)", st.TenantsRejected)
	}
}

// Span strings may alias the caller's buffers, which the caller reuses as
// soon as Add returns; nothing the detector reports may change with them.
func TestCallerBuffersMayBeReused(t *testing.T) {
	h := newHarness(t, nil)
	tr := tid(5)
	buf := make([]byte, 0, 64)
	alias := func(s string) string {
		buf = append(buf[:0], s...)
		return unsafe.String(unsafe.SliceData(buf), len(buf))
	}
	scrub := func() {
		for i := range buf[:cap(buf)] {
			buf[:cap(buf)][i] = '#'
		}
	}
	b := h.d.NewBatch()
	add := func(id, parent int, service, name, tenant string) {
		s := span(tr, id, parent, "", "")
		s.Service = alias(service)
		svcLen := len(buf)
		buf = append(buf, name...)
		s.Name = unsafe.String(&buf[svcLen], len(name))
		buf = append(buf, tenant...)
		s.Tenants = []detector.RawTenant{tk(0, detector.StringValue(unsafe.String(&buf[svcLen+len(name)], len(tenant))))}
		b.Add(&s)
		scrub()
	}
	add(1, 0, "gateway-svc", "GET /x", "acme-corp")
	add(2, 1, "billing-svc", "charge", "globex-inc")
	b.Close()
	scrub()
	h.clock.Advance(1)
	h.batch(span(tr, 3, 2, "search", "q", ten("initech"))) // a later version rebuilt from state
	f := h.rec.last(t, tr, cross)
	if want := []string{"acme-corp", "globex-inc", "initech"}; !slices.Equal(f.Tenants, want) {
		t.Errorf("Tenants = %q, want %q", f.Tenants, want)
	}
	if want := []string{"billing-svc", "gateway-svc", "search"}; !slices.Equal(f.Services, want) {
		t.Errorf("Services = %q, want %q", f.Services, want)
	}
	e := f.Edges[0]
	if e.From.Service != "gateway-svc" || e.From.Name != "GET /x" || e.To.Service != "billing-svc" || e.To.Name != "charge" {
		t.Errorf("edge = %+v", e)
	}
}
