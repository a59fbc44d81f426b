package detector_test

// Fuzz targets for tenant normalisation and regex derivation. Like
// FuzzUnscopedQuery they read their seeds explicitly from the shared
// ../testdata/fuzz/<Target>/ (go test only looks in detector/testdata/fuzz,
// where the fuzzer writes failing inputs: move them there once fixed).
// CI fuzzes each for a short fixed time:
//
//	go test ./detector -run '^$' -fuzz '^FuzzTenantNormalization$' -fuzztime 10s
//	go test ./detector -run '^$' -fuzz '^FuzzDerivation$' -fuzztime 10s

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tenantguard/tenantguard/detector"
)

// FuzzTenantNormalization checks, for any string, int and double:
//   - NormalizeTenant gives a tenant that is non-empty, has no leading or
//     trailing space, is at most MaxTenantLength bytes, and is its own
//     normal form (normalising it again, as a string, gives it back);
//   - a string is refused only when it is blank (ignored) or too long
//     (rejected); a double only when NaN or infinite;
//   - an int, its decimal string and (when exact) the double of the same
//     value are one tenant; a fractional double reads back as itself;
//   - a detector batch names the tenants NormalizeTenant does, counts the
//     rejected values and no others, and reports a mismatch exactly when one
//     span's values normalise to different tenants.
func FuzzTenantNormalization(f *testing.F) {
	for _, seed := range readFuzzValues(f, "FuzzTenantNormalization", "string", "int64", "float64") {
		f.Add(seed[0].(string), seed[1].(int64), seed[2].(float64))
	}
	f.Add(" 42 ", int64(42), 42.0)
	f.Add("\t-7\r\n", int64(-7), math.Copysign(0, -1))
	f.Add(strings.Repeat("x", detector.MaxTenantLength), int64(math.MinInt64), float64(math.MinInt64))
	f.Add(" "+strings.Repeat("x", detector.MaxTenantLength)+" ", int64(math.MaxInt64), math.Inf(1))
	f.Add(strings.Repeat("y", detector.MaxTenantLength+1), int64(0), math.NaN())
	f.Add("ac\xffme", int64(1<<53+1), float64(1<<53+1))
	f.Add("\u00a0acme\u2003", int64(1e15), 1e300)
	f.Add("", int64(-1), 0.1)
	f.Fuzz(func(t *testing.T, s string, i int64, x float64) {
		values := []detector.Value{
			detector.StringValue(s),
			detector.IntValue(i),
			detector.DoubleValue(x),
			detector.StringValue(strconv.FormatInt(i, 10)),
			detector.StringValue(" \t" + s + "\n"),
		}
		var (
			want     = map[string]bool{}
			rejected uint64
			without  uint64
		)
		for _, v := range values {
			n, ok := detector.NormalizeTenant(v)
			checkNormalized(t, v, n, ok)
			if ok {
				want[n] = true
				continue
			}
			without++
			if v.Kind != detector.KindString || strings.TrimSpace(v.Str) != "" {
				rejected++
			}
		}

		// An int and its decimal string agree, and so does an exact double.
		ni, ok := detector.NormalizeTenant(detector.IntValue(i))
		if !ok || ni != strconv.FormatInt(i, 10) {
			t.Fatalf("NormalizeTenant(int %d) = %q, %v", i, ni, ok)
		}
		if ns, _ := detector.NormalizeTenant(detector.StringValue(strconv.FormatInt(i, 10))); ns != ni {
			t.Fatalf("int %d is %q, its decimal string %q", i, ni, ns)
		}
		if nx, ok := detector.NormalizeTenant(detector.DoubleValue(x)); ok {
			if x == math.Trunc(x) && x >= math.MinInt64 && x < -math.MinInt64 {
				if want := strconv.FormatInt(int64(x), 10); nx != want {
					t.Fatalf("integral double %v is %q, the int of the same value %q", x, nx, want)
				}
			} else if back, err := strconv.ParseFloat(nx, 64); err != nil || back != x {
				t.Fatalf("double %v is %q, which reads back as %v (%v)", x, nx, back, err)
			}
		}

		// The detector names the same tenants. An anchor span starts the
		// trace; every value hangs off it on its own span. One trace: a
		// small max_traces, since every input builds a detector and a
		// detector allocates its state for max_traces when it is made.
		h := newHarness(t, func(c *detector.Config) { c.MaxTraces = 64 })
		tr := tid(1)
		const anchor = "\x00anchor"
		want[anchor] = true
		spans := []detector.Span{span(tr, 1, 0, "gateway", "GET /", ten(anchor))}
		for k, v := range values {
			spans = append(spans, span(tr, 2+k, 1, "svc", "op", tk(uint8(k%2), v)))
		}
		h.batch(spans...)
		st := h.d.Stats()
		if st.TenantsRejected != rejected || st.SpansWithoutTenant != without {
			t.Fatalf("%d values rejected and %d spans without tenant, want %d and %d", st.TenantsRejected, st.SpansWithoutTenant, rejected, without)
		}
		wantList := sortedKeys(want)
		if fs := h.rec.of(tr, cross); len(wantList) < 2 {
			if len(fs) != 0 {
				t.Fatalf("one tenant %q, yet %s", wantList, describe(fs))
			}
		} else if got := h.rec.last(t, tr, cross).Tenants; !slices.Equal(got, wantList) {
			t.Fatalf("detector names tenants %q, NormalizeTenant %q", got, wantList)
		}

		// One span with the string under one key and the int under the
		// other: a mismatch exactly when both are tenants and differ.
		tr2 := tid(2)
		h.batch(span(tr2, 1, 0, "gateway", "GET /", tk(0, detector.StringValue(s)), tk(1, detector.IntValue(i))))
		ns, okS := detector.NormalizeTenant(detector.StringValue(s))
		fs := h.rec.of(tr2, mismatch)
		if differ := okS && ns != ni; differ != (len(fs) > 0) {
			t.Fatalf("string %q (%q) and int %d: mismatch findings %s", s, ns, i, describe(fs))
		}
		if len(fs) > 0 {
			m := fs[len(fs)-1].Mismatches
			if len(m) != 1 || len(m[0].Values) != 2 || m[0].Values[0].Tenant != ns || m[0].Values[1].Tenant != ni {
				t.Fatalf("mismatch %+v, want values %q and %q", m, ns, ni)
			}
		}
	})
}

// checkNormalized checks one NormalizeTenant answer.
func checkNormalized(t *testing.T, v detector.Value, n string, ok bool) {
	t.Helper()
	if !ok {
		if n != "" {
			t.Fatalf("NormalizeTenant(%+v) refused but returned %q", v, n)
		}
		switch v.Kind {
		case detector.KindString:
			if s := strings.TrimSpace(v.Str); s != "" && len(s) <= detector.MaxTenantLength {
				t.Fatalf("NormalizeTenant(%q) refused a usable string", v.Str)
			}
		case detector.KindDouble:
			if !math.IsNaN(v.Double) && !math.IsInf(v.Double, 0) {
				t.Fatalf("NormalizeTenant(double %v) refused a finite double", v.Double)
			}
		case detector.KindInt:
			t.Fatalf("NormalizeTenant(int %d) refused an int", v.Int)
		}
		return
	}
	if n == "" || strings.TrimSpace(n) != n || len(n) > detector.MaxTenantLength {
		t.Fatalf("NormalizeTenant(%+v) = %q: empty, untrimmed or longer than %d bytes", v, n, detector.MaxTenantLength)
	}
	if v.Kind == detector.KindString && n != strings.TrimSpace(v.Str) {
		t.Fatalf("NormalizeTenant(%q) = %q, want the string trimmed", v.Str, n)
	}
	if again, ok := detector.NormalizeTenant(detector.StringValue(n)); !ok || again != n {
		t.Fatalf("NormalizeTenant(%+v) = %q, but NormalizeTenant(%q) = %q, %v: not idempotent", v, n, n, again, ok)
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// FuzzDerivation checks, for any pattern and value, that Config.Validate
// with the derivation never panics and either refuses it with an error
// that begins with tenant_derivations[0] (New refusing it alike), or
// accepts it, and then New builds a Derivator whose Derive never panics,
// captures what the pattern's tenant group captures in the first 4 KiB
// of the value (a substring of them), ignores the rest, discards (and
// counts as rejected) a match that reaches the 4 KiB cut of a longer value,
// matches nothing in the empty string, and whose tenant a batch accepts or
// counts.
func FuzzDerivation(f *testing.F) {
	for _, seed := range readFuzzValues(f, "FuzzDerivation", "string", "string") {
		f.Add(seed[0].(string), seed[1].(string))
	}
	f.Add(`^/t/(?P<tenant>[^/]+)/`, "/t/"+strings.Repeat("a", 5000)+"/x")
	// Shapes Derive matches by a scan rather than the regexp engine.
	f.Add(`/t/(?P<tenant>[^/]*)/$`, "/t//t/acme/")
	f.Add(`^(?P<tenant>[a-z0-9-]+)\.example\.com$`, "acme.example.com")
	f.Add(`^/t/(?P<tenant>.+)`, "/t/a\xffb\nc")
	f.Add(`(?P<tenant>a+)$`, strings.Repeat("a", 4096)+"b")
	f.Add(`(?P<tenant>[a-z]{1000}){1000}`, "")
	f.Add(`(?P<tenant>x?)`, "y")
	f.Add(`^(?P<tenant>(((((((((((a*)*)*)*)*)*)*)*)*)*)*)b`, strings.Repeat("a", 4000))
	f.Add(`(?P<tenant>\C)`, "\xff")
	f.Add(strings.Repeat("(?P<tenant>a)|", 200)+"b", "a")
	f.Fuzz(func(t *testing.T, pattern, value string) {
		cfg := detector.DefaultConfig()
		cfg.Shards = 1
		cfg.Derivations = []detector.Derivation{{Attribute: "url.path", Pattern: pattern}}
		verr := cfg.Validate()
		rec := &recorder{}
		d, nerr := detector.New(cfg, rec.sink)
		if verr != nil {
			if nerr == nil {
				t.Fatalf("Validate refused %q (%v) but New accepted it", pattern, verr)
			}
			// Validate joins one error per problem (a message may quote a
			// pattern with newlines in it).
			leaves := []error{verr}
			if j, ok := verr.(interface{ Unwrap() []error }); ok {
				leaves = j.Unwrap()
			}
			for _, e := range leaves {
				if !strings.HasPrefix(e.Error(), "tenant_derivations[0].regex: ") {
					t.Fatalf("error for pattern %q does not begin with tenant_derivations[0].regex: %q", pattern, e)
				}
			}
			return
		}
		if nerr != nil {
			t.Fatalf("Validate accepted %q but New refused it: %v", pattern, nerr)
		}
		dvs := d.Derivations()
		if len(dvs) != 1 || dvs[0].Attribute != "url.path" || int(dvs[0].KeyIndex) != len(cfg.TenantKeys) {
			t.Fatalf("Derivations() = %+v", dvs)
		}
		dv := dvs[0]
		if got, ok := dv.Derive(""); ok {
			t.Fatalf("pattern %q was accepted, yet finds tenant %q in the empty string", pattern, got)
		}
		prefix := value[:min(len(value), 4096)]
		got, ok := dv.Derive(value)
		if ok && !strings.Contains(prefix, got) {
			t.Fatalf("Derive(%q) = %q: not within the first 4 KiB", value, got)
		}
		// The oracle: the tenant group of the leftmost match in the prefix,
		// unless the match reaches the cut of a longer value.
		re := regexp.MustCompile(pattern)
		m := re.FindStringSubmatchIndex(prefix)
		g := re.SubexpIndex("tenant")
		matched := m != nil && m[2*g] >= 0
		atCut := matched && len(value) > len(prefix) && m[1] == len(prefix)
		if wantOK := matched && !atCut; ok != wantOK || (ok && got != prefix[m[2*g]:m[2*g+1]]) {
			t.Fatalf("Derive(%q) = %q, %v; the tenant group captures %v (match at the 4 KiB cut: %v)", value, got, ok, m, atCut)
		}
		if atCut {
			if st := d.Stats(); st.TenantsRejected != 1 {
				t.Fatalf("a match at the 4 KiB cut: %d tenant values rejected, want 1", st.TenantsRejected)
			}
			return
		}
		if again, againOK := dv.Derive(prefix); again != got || againOK != ok {
			t.Fatalf("Derive reads past 4 KiB: %q, %v on the value, %q, %v on its first 4 KiB", got, ok, again, againOK)
		}
		if !ok {
			return
		}
		// A batch takes the derived value like any other.
		tr := tid(1)
		b := d.NewBatch()
		s := span(tr, 1, 0, "gateway", "GET /", detector.RawTenant{KeyIndex: dv.KeyIndex, Value: detector.StringValue(got)})
		b.Add(&s)
		b.Close()
		st := d.Stats()
		n, nOK := detector.NormalizeTenant(detector.StringValue(got))
		switch {
		case nOK && (st.SpansWithoutTenant != 0 || st.TenantsRejected != 0):
			t.Fatalf("derived tenant %q: %+v", n, st)
		case !nOK && st.SpansWithoutTenant != 1:
			t.Fatalf("derived value %q is no tenant, yet %d spans without tenant", got, st.SpansWithoutTenant)
		case !nOK && (st.TenantsRejected == 1) != (strings.TrimSpace(got) != ""):
			t.Fatalf("derived value %q: %d rejected", got, st.TenantsRejected)
		}
	})
}

// readFuzzValues reads a shared corpus of files in Go's fuzz corpus format
// whose values have the given types (string, int64, float64).
func readFuzzValues(tb testing.TB, target string, types ...string) [][]any {
	tb.Helper()
	dir := filepath.Join("..", "testdata", "fuzz", target)
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatalf("reading the seed corpus: %v", err)
	}
	var seeds [][]any
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		vals, err := parseFuzzValues(data, types)
		if err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
		seeds = append(seeds, vals)
	}
	if len(seeds) == 0 {
		tb.Fatalf("no seeds in %s", dir)
	}
	return seeds
}

func parseFuzzValues(data []byte, types []string) ([]any, error) {
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) == 0 || lines[0] != "go test fuzz v1" {
		return nil, fmt.Errorf("not a fuzz corpus file")
	}
	lines = lines[1:]
	if len(lines) != len(types) {
		return nil, fmt.Errorf("%d values, want %d (%s)", len(lines), len(types), strings.Join(types, ", "))
	}
	var out []any
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "math.Float64frombits(") && types[i] == "float64" {
			bits, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(line, "math.Float64frombits("), ")"), 0, 64)
			if err != nil {
				return nil, fmt.Errorf("value %d: %v", i+1, err)
			}
			out = append(out, math.Float64frombits(bits))
			continue
		}
		lit, found := strings.CutPrefix(line, types[i]+"(")
		if !found || !strings.HasSuffix(lit, ")") {
			return nil, fmt.Errorf("value %d: %q is not a %s", i+1, line, types[i])
		}
		lit = lit[:len(lit)-1]
		switch types[i] {
		case "string":
			s, err := strconv.Unquote(lit)
			if err != nil {
				return nil, fmt.Errorf("value %d: %v", i+1, err)
			}
			out = append(out, s)
		case "int64":
			n, err := strconv.ParseInt(lit, 0, 64)
			if err != nil {
				return nil, fmt.Errorf("value %d: %v", i+1, err)
			}
			out = append(out, n)
		case "float64":
			x, err := strconv.ParseFloat(lit, 64)
			if err != nil {
				return nil, fmt.Errorf("value %d: %v", i+1, err)
			}
			out = append(out, x)
		default:
			return nil, fmt.Errorf("unsupported type %s", types[i])
		}
	}
	return out, nil
}

// TestFuzzValueCorpora keeps the corpus reader honest about Go's format.
func TestFuzzValueCorpora(t *testing.T) {
	got, err := parseFuzzValues([]byte("go test fuzz v1\nstring(\"a\\xff\")\nint64(-9223372036854775808)\nmath.Float64frombits(0x7ff8000000000001)\n"),
		[]string{"string", "int64", "float64"})
	if err != nil || got[0] != "a\xff" || got[1] != int64(math.MinInt64) || !math.IsNaN(got[2].(float64)) {
		t.Fatalf("parseFuzzValues = %v, %v", got, err)
	}
	for _, lit := range []string{"float64(+Inf)", "float64(-0)", "float64(1e+300)", "float64(NaN)"} {
		if _, err := parseFuzzValues([]byte("go test fuzz v1\n"+lit+"\n"), []string{"float64"}); err != nil {
			t.Errorf("%s: %v", lit, err)
		}
	}
	if _, err := parseFuzzValues(bytes.TrimSpace([]byte("go test fuzz v1\nint64(1)\n")), []string{"string"}); err == nil {
		t.Error("an int64 read as a string")
	}
}

// TestMaxTracesIsExact: the traces held never exceed MaxTraces, whatever
// the shard count (found by FuzzOTLPProtobuf: each shard's limit was
// rounded up, and MaxTraces near MaxInt overflowed to one trace a shard).
func TestMaxTracesIsExact(t *testing.T) {
	for _, shards := range []int{1, 3, 4, 7} {
		for _, maxTraces := range []int{1, 2, 5, 8, math.MaxInt} {
			t.Run(fmt.Sprintf("%d shards, max_traces %d", shards, maxTraces), func(t *testing.T) {
				h := newHarness(t, func(c *detector.Config) { c.Shards, c.MaxTraces = shards, maxTraces })
				// Enough traces that every shard reaches its own share of the
				// cap whatever the random shard seed: a shard evicts at its
				// share even while another still has room, so with few traces
				// the total can stay below MaxTraces.
				const traces = 400
				for n := range traces {
					h.batch(span(tid(n+1), 1, 0, "svc", "op", ten("acme")))
					if st := h.d.Stats(); st.TracesActive > int64(maxTraces) {
						t.Fatalf("after %d traces: %d in memory, max_traces %d", n+1, st.TracesActive, maxTraces)
					}
				}
				st := h.d.Stats()
				if want := int64(min(maxTraces, traces)); st.TracesActive != want {
					t.Errorf("%d traces in memory, want %d (no eviction below the cap)", st.TracesActive, want)
				}
			})
		}
	}
}
