package sqlscope_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// sqlSeedDir is the seed corpus shared with the rest of the project. It is
// read explicitly: go test only looks in detector/sqlscope/testdata/fuzz,
// where the fuzzer writes the inputs that fail (move them here once fixed).
var sqlSeedDir = filepath.Join("..", "..", "testdata", "fuzz", "FuzzUnscopedQuery")

// FuzzUnscopedQuery checks properties that hold for any text:
//   - Unscoped does not panic, and returns configured names, sorted, once each;
//   - it is deterministic (the pooled scratch space leaks nothing between calls);
//   - for ASCII text without dollar quotes (whose tags are case-sensitive), the
//     answer does not depend on letter case;
//   - a line comment after the text changes nothing, unless the text ends in
//     an ellipsis (which says it was cut, and then no longer ends the text);
//   - adding "AND o.tenant_id = ? AND s.tenant_id = o.tenant_id" to a join whose
//     WHERE clause is the input (made safe to parenthesise) never adds an
//     unscoped table, and leaves none when the input holds no subquery.
func FuzzUnscopedQuery(f *testing.F) {
	for _, seed := range readSQLSeeds(f) {
		f.Add(seed)
	}
	s := newSQLScope(f)
	f.Fuzz(func(t *testing.T, q string) {
		got := s.Unscoped(q)
		checkSQLResult(t, q, got)
		if again := s.Unscoped(q); !slices.Equal(again, got) {
			t.Fatalf("Unscoped(%q) = %q, then %q", q, got, again)
		}

		if sqlASCII(q) && !strings.Contains(q, "$") {
			for _, c := range []string{strings.ToUpper(q), strings.ToLower(q)} {
				if other := s.Unscoped(c); !slices.Equal(other, got) {
					t.Fatalf("Unscoped(%q) = %q\nbut Unscoped(%q) = %q", q, got, c, other)
				}
			}
		}

		if trimmed := strings.TrimRight(q, " \t\r\n"); !strings.HasSuffix(trimmed, "...") && !strings.HasSuffix(trimmed, "…") {
			c := q + "\n-- a trailing comment"
			if other := s.Unscoped(c); !slices.Equal(other, got) {
				t.Fatalf("Unscoped(%q) = %q\nbut Unscoped(%q) = %q", q, got, c, other)
			}
		}

		frag := sqlParenthesisable(q)
		bare := "SELECT * FROM orders o JOIN stock s ON s.sku = o.sku WHERE (" + frag + ")"
		scoped := bare + " AND o.tenant_id = ? AND s.tenant_id = o.tenant_id"
		before, after := s.Unscoped(bare), s.Unscoped(scoped)
		checkSQLResult(t, bare, before)
		checkSQLResult(t, scoped, after)
		for _, tbl := range after {
			if !slices.Contains(before, tbl) {
				t.Fatalf("adding the predicate made %q unscoped:\n%q -> %q\n%q -> %q", tbl, bare, before, scoped, after)
			}
		}
		if after != nil && !sqlMayHoldQuery(frag) {
			t.Fatalf("Unscoped(%q) = %q, want nil", scoped, after)
		}
	})
}

func checkSQLResult(t *testing.T, q string, got []string) {
	t.Helper()
	if got != nil && len(got) == 0 {
		t.Fatalf("Unscoped(%q) = empty non-nil slice", q)
	}
	for i, tbl := range got {
		if !slices.Contains(sqlTables, tbl) {
			t.Fatalf("Unscoped(%q) = %q: %q is not a configured table", q, got, tbl)
		}
		if i > 0 && got[i-1] >= tbl {
			t.Fatalf("Unscoped(%q) = %q: not sorted and deduplicated", q, got)
		}
	}
}

// sqlParenthesisable keeps what cannot leave a pair of parentheses: no
// parentheses, brackets, quotes, comments, dollar quotes or semicolons.
func sqlParenthesisable(q string) string {
	if len(q) > 2048 {
		q = q[:2048]
	}
	return strings.Map(func(r rune) rune {
		if strings.ContainsRune("()[]'\"`;-/$\\", r) {
			return ' '
		}
		return r
	}, q)
}

// sqlMayHoldQuery reports whether the parenthesised text could be a subquery.
func sqlMayHoldQuery(frag string) bool {
	l := strings.ToLower(frag)
	for _, w := range []string{"select", "with", "values", "table"} {
		if strings.Contains(l, w) {
			return true
		}
	}
	return false
}

func sqlASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// readSQLSeeds reads the shared corpus, files in Go's fuzz corpus format:
// "go test fuzz v1" then one string(...) line.
func readSQLSeeds(tb testing.TB) []string {
	tb.Helper()
	entries, err := os.ReadDir(sqlSeedDir)
	if err != nil {
		tb.Fatalf("reading the seed corpus: %v", err)
	}
	var seeds []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		path := filepath.Join(sqlSeedDir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		header, value, _ := bytes.Cut(data, []byte("\n"))
		value = bytes.TrimSpace(value)
		if string(header) != "go test fuzz v1" || !bytes.HasPrefix(value, []byte("string(")) || !bytes.HasSuffix(value, []byte(")")) {
			tb.Fatalf("%s: not a fuzz corpus file with one string value", path)
		}
		s, err := strconv.Unquote(string(value[len("string(") : len(value)-1]))
		if err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
		seeds = append(seeds, s)
	}
	if len(seeds) == 0 {
		tb.Fatalf("no seeds in %s", sqlSeedDir)
	}
	return seeds
}

// TestSQLSeedCorpus pins what the seed corpus says, so that a change in the
// analysis shows up here and not only as a different fuzzing start.
func TestSQLSeedCorpus(t *testing.T) {
	s := newSQLScope(t)
	want := map[string][]string{
		"SELECT * FROM orders WHERE tenant_id = ?":                                    nil,
		"SELECT id, total FROM orders WHERE status = 'open'":                          wantOrders,
		"SELECT * FROM orders o JOIN stock s ON s.sku = o.sku WHERE o.tenant_id = $1": wantStock,
		"SELECT * FROM orders WHERE tenant_id = ? OR 1=1":                             wantOrders,
		"SELECT * FROM orders WHERE note = 'it\\'s":                                   nil,
		"HGETALL orders:42": nil,
		"SELECT * FROM orders WHERE ((((((((((((((((((((tenant_id = ?))))))))))))))))))))": nil,
	}
	seeds := readSQLSeeds(t)
	for q, w := range want {
		if !slices.Contains(seeds, q) {
			t.Errorf("seed %q is missing from %s", q, sqlSeedDir)
			continue
		}
		if got := s.Unscoped(q); !slices.Equal(got, w) {
			t.Errorf("Unscoped(%q) = %q, want %q", q, got, w)
		}
	}
}
