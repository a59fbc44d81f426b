package sqlscope

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func (c *statementCache) size() (entries, bytes int) {
	for i := range c.stripes {
		st := &c.stripes[i]
		st.mu.Lock()
		entries += len(st.m)
		bytes += st.bytes
		st.mu.Unlock()
	}
	return entries, bytes
}

// A statement is remembered the second time it is seen, and a statement
// too long to be worth remembering is analysed every time.
func TestStatementCacheAdmitsOnSecondSight(t *testing.T) {
	s, err := New([]string{"orders"}, "tenant_id")
	if err != nil {
		t.Fatal(err)
	}
	q := "SELECT * FROM orders WHERE id = ?"
	for i, want := range []int{0, 1, 1} {
		if tables, joined := s.UnscopedCached(q); !slices.Equal(tables, []string{"orders"}) || joined != "orders" {
			t.Fatalf("call %d: %q, %q", i+1, tables, joined)
		}
		if n, _ := s.cache.size(); n != want {
			t.Fatalf("after call %d: %d statements cached, want %d", i+1, n, want)
		}
	}
	long := "SELECT * FROM orders WHERE id = ? /*" + strings.Repeat("x", maxCachedStatement) + "*/"
	for range 3 {
		if tables, _ := s.UnscopedCached(long); !slices.Equal(tables, []string{"orders"}) {
			t.Fatalf("long statement: %q", tables)
		}
	}
	if n, _ := s.cache.size(); n != 1 {
		t.Fatalf("%d statements cached after a long one, want 1", n)
	}
}

// Hostile floods of distinct statements: seen once each, none is kept;
// seen twice each, the cache stays within its count and byte bounds, and
// its answers stay right.
func TestStatementCacheBoundedUnderFloods(t *testing.T) {
	s, err := New([]string{"orders"}, "tenant_id")
	if err != nil {
		t.Fatal(err)
	}
	const n = 40_000
	stmt := func(i int) (string, []string) {
		if i%2 == 0 {
			return fmt.Sprintf("SELECT * FROM orders WHERE tenant_id = ? AND id = %d", i), nil
		}
		// Long ones too, to hit the byte bound before the count bound.
		return fmt.Sprintf("SELECT * FROM orders WHERE id = %d /* %s */", i, strings.Repeat("y", 1000)), []string{"orders"}
	}
	for i := range n {
		q, _ := stmt(i)
		s.UnscopedCached(q)
	}
	if entries, _ := s.cache.size(); entries != 0 {
		t.Errorf("%d statements cached from a flood of statements seen once each", entries)
	}
	for i := range n {
		q, want := stmt(i)
		for range 2 {
			if got, _ := s.UnscopedCached(q); !slices.Equal(got, want) {
				t.Fatalf("UnscopedCached(%.60q) = %q, want %q", q, got, want)
			}
		}
	}
	entries, bytes := s.cache.size()
	if entries == 0 || entries > maxCachedStatements || bytes > maxCachedBytes {
		t.Errorf("after a flood of statements seen twice: %d statements and %d bytes cached, want 1 to %d and at most %d",
			entries, bytes, maxCachedStatements, maxCachedBytes)
	}
	for i := range s.cache.stripes {
		if st := &s.cache.stripes[i]; st.bytes < 0 || len(st.m) > maxCachedStatements/cacheStripes {
			t.Errorf("stripe %d: %d statements, %d bytes", i, len(st.m), st.bytes)
		}
	}
}
