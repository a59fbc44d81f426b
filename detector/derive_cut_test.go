package detector_test

import (
	"strings"
	"testing"

	"github.com/tenantguard/tenantguard/detector"
)

// A derivation reads the first 4 KiB of a value. A match that reaches that
// cut may be a tenant cut short: `…&tenant=tailspin` straddling byte 4,096
// reads `tail`. Such a match is discarded and counted, never a tenant, so it
// cannot raise a tenant_mismatch naming a tenant that does not exist.
func TestDerivationMatchAtTheCutIsNoTenant(t *testing.T) {
	h := newHarness(t, func(c *detector.Config) {
		c.Derivations = []detector.Derivation{{Attribute: "url.full", Pattern: `[?&]tenant=(?P<tenant>[a-z]+)`}}
	})
	dv := h.d.Derivations()[0]
	const query = "&tenant=tailspin"
	// The cut falls after "tail".
	straddling := "https://shop.example/search?q=" + strings.Repeat("x", 4096-len("https://shop.example/search?q=")-len("&tenant=tail")) + query
	if got := straddling[:4096]; !strings.HasSuffix(got, "&tenant=tail") {
		t.Fatalf("the value must be cut after tail, it ends %q", got[len(got)-20:])
	}
	for _, tc := range []struct {
		name, value, want string
	}{
		{"straddling the cut", straddling, ""},
		{"cut right after the tenant", straddling[:len(straddling)-len("spin")] + "/more", ""},
		{"ending before the cut", "https://shop.example/?tenant=tailspin&" + strings.Repeat("x", 5000), "tailspin"},
		{"ending exactly at 4 KiB, not cut", straddling[:4096-len("tail")] + "tailspin"[:4], "tail"},
		{"short", "/?tenant=tailspin", "tailspin"},
	} {
		before := h.d.Stats().TenantsRejected
		got, ok := dv.Derive(tc.value)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: Derive = %q, %v; want %q", tc.name, got, ok, tc.want)
		}
		wantRejected := uint64(0)
		if tc.want == "" {
			wantRejected = 1
		}
		if rejected := h.d.Stats().TenantsRejected - before; rejected != wantRejected {
			t.Errorf("%s: %d tenant values rejected, want %d", tc.name, rejected, wantRejected)
		}
	}
}
