package sqlscope

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Scope decides whether statements against tenant-scoped tables filter on
// the tenant column. It is the analysis behind the unscoped_query rule: a
// database span whose query reads or writes a tenant-scoped table with no
// predicate on the tenant column is a leak waiting for a second tenant, and
// it can be reported before one shows up.
//
// What counts as a predicate on the tenant column of a table t, in the WHERE
// clause of the SELECT (or UPDATE, DELETE) that reads t, or in the ON clause
// that joins t:
//
//   - t.tenant_id compared for equality with a value: a placeholder (?, $1,
//     :tenant, @tenant, %s, %(tenant)s), a literal ('acme', 42), a function
//     call (ANY($1), current_setting('app.tenant')), a typed literal or a
//     subquery; also IN (...) and IS NOT DISTINCT FROM, and a row value
//     (t.tenant_id, t.id) = (?, ?). The column may be unqualified (it then
//     counts for every table of that SELECT: SQL would reject it if it were
//     ambiguous), or qualified by the table's alias, name or schema.name.
//   - t.tenant_id = u.tenant_id, when u is itself scoped (by a predicate, by
//     a join like this one, or because u is a CTE or derived table whose own
//     tables are all scoped); JOIN ... USING (tenant_id) and NATURAL JOIN
//     count the same way. A LEFT JOIN's ON clause restricts only the joined
//     table (the left rows are kept whatever it says), a RIGHT JOIN's only
//     the left side, and a FULL JOIN's neither.
//
// What does not count, because it does not confine the rows to one tenant:
// tenant_id IS NULL and = NULL (no tenant at all), <> / != / NOT IN / LIKE
// and the other comparisons (every tenant but one, or a pattern), tenant_id =
// tenant_id (true of every row), a comparison with another column of the same
// row, anything under NOT, and a predicate that an OR can bypass: an OR (or
// XOR) counts only when every branch carries the predicate, so WHERE
// tenant_id = ? OR 1=1 is unscoped. Text inside string literals and comments
// is never read as a predicate.
//
// Every SELECT is its own scope: subqueries, UNION branches, CTE bodies and
// derived tables each need their own predicate (a correlated predicate
// against an outer table counts). References to a CTE are not tables.
// INSERT INTO t (columns) must list the tenant column (a statement without a
// column list writes every column); INSERT ... SELECT also checks the SELECT.
// Several statements separated by semicolons are each checked.
//
// Deliberately not understood (the statement is passed, or the part is
// ignored): DDL, TRUNCATE, MERGE, EXPLAIN, COPY and other statements that are
// not SELECT, INSERT, REPLACE, UPDATE or DELETE; predicates hidden in
// functions (lower(tenant_id) = ?); HAVING; scoping by another column that
// implies the tenant (o.customer_id IN (SELECT ...), a join to a tenants table
// on its id), which needs the explicit predicate too; || and && as MySQL's OR
// and AND, and # comments. Names fold case, quoted or not, ASCII only. In a
// string a backslash escapes the next character, as in MySQL; a PostgreSQL
// string ending in a backslash may then leave the text unreadable (passed).
//
// Text that cannot be understood is passed rather than guessed at, so that
// the rule raises no false alarm. A text with an unterminated string, quoted
// name or comment, or with unbalanced parentheses, yields nil. A statement
// that cannot be read (a FROM with no table, an UPDATE with no SET), nests
// deeper than 100 levels, or has more than 64 tables in one SELECT is passed,
// and the other statements of the text are still checked. A text that was
// cut short (it ends in "..." or "…", or in a word that needs more, like AND,
// WHERE, ( or a comma), and a text longer than 64 KiB, of which only the first
// 64 KiB are read, are judged only where they are complete: a SELECT that
// runs to the cut is not judged, a subquery closed before it is, and so are
// the statements before it. Unclosed parentheses are accepted at a cut.
//
// A Scope is safe for concurrent use. Unscoped allocates nothing for a
// statement that names no scoped table, and only the result for one that
// does; UnscopedCached answers a statement it has seen before from a bounded
// cache, allocating nothing.
type Scope struct {
	tables []scopedTable // sorted by name, no duplicates
	bare   []bareName    // the distinct table names without schema
	slots  []int32       // open addressing over bare by hash: index+1, 0 is empty
	column string        // the tenant column, lower-cased
	colH   uint32
	minLen int // bounds on the length of a bare name, for the quick check
	maxLen int
	pool   sync.Pool // *sqlAnalyzer
	cache  statementCache
}

type scopedTable struct {
	name   string // as configured, lower-cased: "orders" or "shop.orders"
	schema string // "" when any schema matches
}

type bareName struct {
	name   string // lower-cased
	hash   uint32
	tables []int32 // indexes into Scope.tables
}

// Limits on what is analysed. Beyond maxSQLBytes a statement is not read;
// beyond the others it is passed as not understood.
const (
	maxSQLBytes     = 64 << 10
	maxSQLDepth     = 100     // nested subqueries, parenthesised conditions and join groups
	maxSQLScopeRefs = 64      // tables in one SELECT (they are a uint64 mask)
	maxSQLCTEs      = 256     // CTE names visible at once
	maxSQLEdges     = 1 << 16 // tenant-column equalities in one text
)

// New builds the analysis for the given tenant-scoped tables and
// tenant column. Table names are case-insensitive; "shop.orders" matches only
// orders in schema shop, "orders" matches orders in any schema. Names are
// written unquoted; errors name the bad input.
func New(tables []string, column string) (*Scope, error) {
	var errs []error
	col := strings.TrimSpace(column)
	switch {
	case col == "":
		errs = append(errs, errors.New("column: the tenant column is required (e.g. \"tenant_id\")"))
	case !plainIdent(col):
		errs = append(errs, fmt.Errorf("column: %q is not a plain column name: use letters, digits, _ and $, without quotes or a table prefix", column))
	}
	if len(tables) == 0 {
		errs = append(errs, errors.New("tables: at least one tenant-scoped table is required"))
	}
	s := &Scope{column: asciiLower(col), colH: foldHash(col)}
	for i, t := range tables {
		name := strings.TrimSpace(t)
		schema, table, qualified := strings.Cut(name, ".")
		if !qualified {
			schema, table = "", schema
		}
		switch {
		case name == "":
			errs = append(errs, fmt.Errorf("tables[%d]: empty table name", i))
			continue
		case !plainIdent(table) || (qualified && !plainIdent(schema)):
			errs = append(errs, fmt.Errorf("tables[%d]: %q is not a table name: write table or schema.table, unquoted, with letters, digits, _ and $", i, t))
			continue
		}
		s.tables = append(s.tables, scopedTable{name: asciiLower(name), schema: asciiLower(schema)})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortFunc(s.tables, func(a, b scopedTable) int { return strings.Compare(a.name, b.name) })
	s.tables = slices.CompactFunc(s.tables, func(a, b scopedTable) bool { return a.name == b.name })

	s.minLen = maxSQLBytes
	for i, t := range s.tables {
		table := t.name
		if t.schema != "" {
			table = t.name[len(t.schema)+1:]
		}
		h := foldHash(table)
		b := slices.IndexFunc(s.bare, func(b bareName) bool { return b.name == table })
		if b < 0 {
			b = len(s.bare)
			s.bare = append(s.bare, bareName{name: table, hash: h})
		}
		s.bare[b].tables = append(s.bare[b].tables, int32(i))
		s.minLen = min(s.minLen, len(table))
		s.maxLen = max(s.maxLen, len(table))
	}
	size := 8
	for size < 2*len(s.bare) {
		size *= 2
	}
	s.slots = make([]int32, size)
	for b := range s.bare {
		j := s.bare[b].hash & uint32(size-1)
		for s.slots[j] != 0 {
			j = (j + 1) & uint32(size-1)
		}
		s.slots[j] = int32(b + 1)
	}
	s.pool.New = func() any { return &sqlAnalyzer{s: s, hit: make([]bool, len(s.tables))} }
	s.cache.init()
	return s, nil
}

// Unscoped returns the scoped tables the statement reads or writes without a
// predicate on the tenant column: sorted, deduplicated, lower-cased as
// configured (when both "orders" and "shop.orders" are configured, a read of
// shop.orders is reported as "shop.orders"). nil means the statement is fine,
// touches no scoped table, or could not be understood.
func (s *Scope) Unscoped(query string) []string {
	cut := false
	if len(query) > maxSQLBytes {
		query, cut = query[:maxSQLBytes], true
	}
	if !s.mentions(query) {
		return nil
	}
	a := s.pool.Get().(*sqlAnalyzer)
	res := a.analyze(query, cut)
	a.reset()
	s.pool.Put(a)
	return res
}

// mentions is the cheap first look: does any word of the text (a run of
// identifier bytes, so also the inside of "orders" or [orders]) spell the name
// of a scoped table? Every table the tokenizer can find is such a word.
func (s *Scope) mentions(q string) bool {
	for i := 0; i < len(q); {
		if !sqlWordByte[q[i]] {
			i++
			continue
		}
		j := i + 1
		for j < len(q) && sqlWordByte[q[j]] {
			j++
		}
		if n := j - i; n >= s.minLen && n <= s.maxLen && s.bareIndex(foldHash(q[i:j]), q[i:j]) >= 0 {
			return true
		}
		i = j
	}
	return false
}

func (s *Scope) bareIndex(h uint32, name string) int {
	mask := uint32(len(s.slots) - 1)
	for j := h & mask; s.slots[j] != 0; j = (j + 1) & mask {
		b := int(s.slots[j] - 1)
		if s.bare[b].hash == h && foldEqual(s.bare[b].name, name) {
			return b
		}
	}
	return -1
}

// match returns the configured table a reference names, or -1. A
// schema-qualified configuration wins over an unqualified one.
func (s *Scope) match(schema, name string, nameHash uint32, qualified bool) int32 {
	b := s.bareIndex(nameHash, name)
	if b < 0 {
		return -1
	}
	unqualified := int32(-1)
	for _, t := range s.bare[b].tables {
		switch sch := s.tables[t].schema; {
		case sch == "":
			unqualified = t
		case qualified && foldEqual(sch, schema):
			return t
		}
	}
	return unqualified
}

// plainIdent reports whether s is a name the tokenizer reads as one word.
func plainIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !sqlWordByte[s[i]] {
			return false
		}
	}
	return true
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// foldEqual is strings.EqualFold for ASCII letters only: identifiers compare
// byte for byte otherwise.
func foldEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x != y {
			if 'A' <= x && x <= 'Z' {
				x += 'a' - 'A'
			}
			if 'A' <= y && y <= 'Z' {
				y += 'a' - 'A'
			}
			if x != y {
				return false
			}
		}
	}
	return true
}

// foldHash is FNV-1a over the ASCII-lower-cased bytes.
func foldHash(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = (h ^ uint32(c)) * 16777619
	}
	return h
}

// sqlWordByte marks the bytes of an identifier: letters, digits, _, $ and
// every byte of a non-ASCII character.
var sqlWordByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 0x80 || c == '_' || c == '$' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
	}
	return t
}()
