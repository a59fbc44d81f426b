package detector

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// The scan answers as the regexp does (the tenant group of the leftmost
// match, and where that match ends) on the patterns it takes, and the
// patterns it does not take still answer through the regexp.
func TestDerivePatternScanAgreesWithRegexp(t *testing.T) {
	patterns := []struct {
		pattern string
		scanned bool
	}{
		{`^/t/(?P<tenant>[^/]+)/`, true},
		{`^/t/(?P<tenant>[^/]+)`, true},
		{`^/t/(?P<tenant>[^/]*)/`, true},
		{`^/t/(?P<tenant>[^/]+)/$`, true},
		{`^(?P<tenant>[a-z0-9-]+)\.example\.com$`, true},
		{`/t/(?P<tenant>[^/]+)/`, true},
		{`/(?P<tenant>[^/]+)/`, true},
		{`tenant=(?P<tenant>[0-9]+)`, true},
		{`tenant=(?P<tenant>[0-9a-z]+)&`, false}, // the class holds the prefix's start
		{`^/t/(?P<tenant>.+)`, true},
		{`^/t/(?P<tenant>(?s:.)+)`, true},
		{`^/t/(?P<tenant>[^/]+)$`, true},
		{`^/t/(?P<tenant>[é-ü/]+)x`, true},
		// Not the scanned shape: each for its own reason.
		{`^/t/(?P<tenant>[^/]+?)/`, false},     // lazy
		{`^/t/(?P<tenant>[a-z/]+)/`, false},    // the run could end at more than one /
		{`(?i)^/T/(?P<tenant>[^/]+)/`, false},  // case-folded literal
		{`a(?P<tenant>[a-z]+)`, false},         // unanchored, the class holds the prefix's start
		{`(?P<tenant>[a-z]+)\.example`, false}, // unanchored with no prefix
		{`[?&]tenant=(?P<tenant>[a-z]+)`, false},
		{`^/(t|tenants)/(?P<tenant>[^/]+)/`, false},
		{`^/t/(?P<tenant>[^/]+)/\d+`, false},
		{`^/t/(?P<tenant>[^/]{2,8})/`, false},
	}
	values := []string{
		"", "/", "/t/", "/t//", "/t/acme", "/t/acme/", "/t/acme/orders/4711", "/t/acme/x", "x/t/acme/",
		"/t//t/acme/", "/t/t/acme/", "//t/acme/", "/t/ac\xffme/", "/t/ac\nme/", "/t/acmé/x", "/t/éüé/x", "/t/é/ü/x",
		"acme.example.com", "ac.me.example.com", "acme.example.com.evil", "-.example.com", ".example.com",
		"?q=1&tenant=acme", "?tenant=&tenant=acme&", "tenant=tenant=acme", "tenant=ACME", "tenant=ac_me&x",
		"aab", "aaaa", "a1a2a3", "/a/b/c/", "//", "/x/", "/T/acme/", strings.Repeat("/t/", 50) + "acme/",
		"/t/" + strings.Repeat("a", 300) + "/", strings.Repeat("tenant=", 100),
	}
	// And values built at random from the pieces the patterns care about.
	rng := rand.New(rand.NewPCG(15, 1))
	pieces := []string{"/", "t", "/t/", "a", "1", "-", ".", "é", "ü", "\xff", "\n", "x", "&", "tenant=", ".example.com", "T"}
	for range 3000 {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		values = append(values, b.String())
	}
	for _, tc := range patterns {
		cfg := Derivation{Attribute: "url.path", Pattern: tc.pattern}
		p, err := compileDerivation(0, cfg)
		if err != nil {
			t.Fatalf("%s: %v", tc.pattern, err)
		}
		if (p.run != nil) != tc.scanned {
			t.Errorf("%s: scanned = %v, want %v", tc.pattern, p.run != nil, tc.scanned)
		}
		re := regexp.MustCompile(tc.pattern)
		g := re.SubexpIndex("tenant")
		for _, v := range values {
			lo, hi, end, ok := p.find(v)
			m := re.FindStringSubmatchIndex(v)
			want := m != nil && m[2*g] >= 0
			if ok != want || ok && (lo != m[2*g] || hi != m[2*g+1] || end != m[1]) {
				t.Errorf("%s on %q: [%d,%d) to %d, %v; regexp: %v", tc.pattern, v, lo, hi, end, ok, m)
			}
		}
	}
}

// Deriving a tenant allocates nothing, matched or not, on the scanned
// shape; the literal check turns away values without the prefix before
// the regexp runs on the others.
func TestDeriveAllocatesNothing(t *testing.T) {
	d, err := New(func() Config {
		c := DefaultConfig()
		c.Derivations = []Derivation{
			{Attribute: "url.path", Pattern: `^/t/(?P<tenant>[^/]+)/`},
			{Attribute: "url.full", Pattern: `tenant=(?P<tenant>[a-z]+)`}, // not scanned: the class holds the t
		}
		return c
	}(), nil)
	if err != nil {
		t.Fatal(err)
	}
	scanned, other := d.Derivations()[0], d.Derivations()[1]
	for _, tc := range []struct {
		dv    Derivator
		value string
		want  string
	}{
		{scanned, "/t/t-1042/orders/4711", "t-1042"},
		{scanned, "/orders/4711", ""},
		{other, "https://shop.example/orders/4711", ""},
	} {
		var got string
		allocs := testing.AllocsPerRun(100, func() { got, _ = tc.dv.Derive(tc.value) })
		if got != tc.want || allocs != 0 {
			t.Errorf("Derive(%q) = %q with %.1f allocations, want %q with none", tc.value, got, allocs, tc.want)
		}
	}
}
