package detector

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// SQLScope decides whether statements against tenant-scoped tables filter on
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
// A SQLScope is immutable and safe for concurrent use. Unscoped allocates
// nothing for a statement that names no scoped table, and only the result
// for one that does.
type SQLScope struct {
	tables []scopedTable // sorted by name, no duplicates
	bare   []bareName    // the distinct table names without schema
	slots  []int32       // open addressing over bare by hash: index+1, 0 is empty
	column string        // the tenant column, lower-cased
	colH   uint32
	minLen int // bounds on the length of a bare name, for the quick check
	maxLen int
	pool   sync.Pool // *sqlAnalyzer
}

type scopedTable struct {
	name   string // as configured, lower-cased: "orders" or "shop.orders"
	schema string // "" when any schema matches
}

type bareName struct {
	name   string // lower-cased
	hash   uint32
	tables []int32 // indexes into SQLScope.tables
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

// NewSQLScope builds the analysis for the given tenant-scoped tables and
// tenant column. Table names are case-insensitive; "shop.orders" matches only
// orders in schema shop, "orders" matches orders in any schema. Names are
// written unquoted; errors name the bad input.
func NewSQLScope(tables []string, column string) (*SQLScope, error) {
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
	s := &SQLScope{column: asciiLower(col), colH: foldHash(col)}
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
	return s, nil
}

// Unscoped returns the scoped tables the statement reads or writes without a
// predicate on the tenant column: sorted, deduplicated, lower-cased as
// configured (when both "orders" and "shop.orders" are configured, a read of
// shop.orders is reported as "shop.orders"). nil means the statement is fine,
// touches no scoped table, or could not be understood.
func (s *SQLScope) Unscoped(query string) []string {
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
func (s *SQLScope) mentions(q string) bool {
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

func (s *SQLScope) bareIndex(h uint32, name string) int {
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
func (s *SQLScope) match(schema, name string, nameHash uint32, qualified bool) int32 {
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

// ---- tokens ----

type sqlTokKind uint8

const (
	tkIdent  sqlTokKind = iota + 1 // a bare word; kw says which keyword, if any
	tkQuoted                       // "name", `name`, [name]: never a keyword
	tkString                       // 'text', E'text', $$text$$
	tkNumber
	tkParam // ?, ?1, $1, :name, @name, @@name, %s, %(name)s
	tkOp    // kw is opEq, opCmp, opCast or the operator's byte
	tkLParen
	tkRParen
	tkComma
	tkDot
	tkSemi
	tkOther
)

const (
	opEq   = 1 // =, ==, <=>
	opCmp  = 2 // <>, !=, <, >, <=, >=
	opCast = 3 // ::
)

// sqlTok is one token. start:end is its text, without the quotes for quoted
// names and strings. match pairs parentheses; an unclosed one (in a statement
// cut short) matches len(toks).
type sqlTok struct {
	start, end int32
	match      int32
	hash       uint32 // foldHash of the text, for words and quoted names
	kind       sqlTokKind
	kw         uint8
	quote      byte
}

// lex tokenizes q. It fails on an unterminated string, quoted name or comment
// unless the text was cut, and on a closing parenthesis without an opening
// one. Unclosed parentheses are left for the caller.
func (a *sqlAnalyzer) lex(q string, cut bool) bool {
	toks := a.toks[:0]
	if want := len(q)/4 + 16; cap(toks) < want { // about one token per 4 bytes
		toks = make([]sqlTok, 0, want)
	}
	n := len(q)
	for i := 0; i < n; {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case c == '-' && i+1 < n && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				i = n
			} else {
				i += j + 1
			}
			continue
		case c == '/' && i+1 < n && q[i+1] == '*':
			j := strings.Index(q[i+2:], "*/")
			if j < 0 {
				if !cut {
					return false
				}
				i = n
			} else {
				i += j + 4
			}
			continue
		}
		// Build the token in place: assembling it on the stack and copying
		// it in costs a store-forwarding stall per token.
		if len(toks) == cap(toks) {
			toks = slices.Grow(toks, n-i) // no more tokens than bytes left: grow once
		}
		toks = toks[:len(toks)+1]
		t := &toks[len(toks)-1]
		t.start, t.match, t.hash, t.kw, t.quote = int32(i), -1, 0, 0, 0
		switch {
		case c == '\'':
			j, ok := skipQuoted(q, i+1, '\'', true)
			if !ok && !cut {
				return false
			}
			t.kind, t.start, t.end, i = tkString, int32(i+1), int32(max(j-1, i+1)), j
		case c == '"' || c == '`' || (c == '[' && bracketQuotes(toks[:len(toks)-1])):
			closing := c
			if c == '[' {
				closing = ']'
			}
			j, ok := skipQuoted(q, i+1, closing, false)
			if !ok && !cut {
				return false
			}
			t.kind, t.start, t.end, t.quote, i = tkQuoted, int32(i+1), int32(max(j-1, i+1)), c, j
			if !ok {
				t.end = int32(n)
			}
			t.hash = foldHash(q[t.start:t.end])
		case sqlWordByte[c] && c != '$' && (c < '0' || c > '9'):
			j := i + 1
			for j < n && sqlWordByte[q[j]] {
				j++
			}
			if j < n && q[j] == '\'' && j-i == 1 && strings.IndexByte("eEnNxXbB", c) >= 0 {
				// E'...', N'...', X'...', B'...': a string with a prefix.
				k, ok := skipQuoted(q, j+1, '\'', true)
				if !ok && !cut {
					return false
				}
				t.kind, t.start, t.end, i = tkString, int32(j+1), int32(max(k-1, j+1)), k
				break
			}
			t.kind, t.end, t.hash = tkIdent, int32(j), foldHash(q[i:j])
			if j-i <= maxKeywordLen {
				t.kw = keywordOf(t.hash, q[i:j])
			}
			i = j
		case '0' <= c && c <= '9':
			j := i
			for j < n && '0' <= q[j] && q[j] <= '9' {
				j++
			}
			if j < n && j == i+1 && c == '0' && (q[j] == 'x' || q[j] == 'X') {
				j++
				for j < n && isHexDigit(q[j]) {
					j++
				}
			} else {
				if j+1 < n && q[j] == '.' && '0' <= q[j+1] && q[j+1] <= '9' {
					j += 2
					for j < n && '0' <= q[j] && q[j] <= '9' {
						j++
					}
				}
				if j < n && (q[j] == 'e' || q[j] == 'E') {
					k := j + 1
					if k < n && (q[k] == '+' || q[k] == '-') {
						k++
					}
					if k < n && '0' <= q[k] && q[k] <= '9' {
						for j = k; j < n && '0' <= q[j] && q[j] <= '9'; j++ {
						}
					}
				}
			}
			t.kind = tkNumber
			if j < n && sqlWordByte[q[j]] {
				// 1orders is a name in MySQL; read the whole word as one.
				for j < n && sqlWordByte[q[j]] {
					j++
				}
				t.kind = tkIdent
				t.hash = foldHash(q[i:j])
			}
			t.end, i = int32(j), j
		case c == '$':
			j := i + 1
			for j < n && sqlWordByte[q[j]] && q[j] != '$' {
				j++
			}
			switch {
			case j < n && q[j] == '$' && (j == i+1 || q[i+1] < '0' || q[i+1] > '9'):
				// $$...$$ or $tag$...$tag$: a dollar-quoted string.
				tag := q[i : j+1]
				k := strings.Index(q[j+1:], tag)
				if k < 0 {
					if !cut {
						return false
					}
					t.kind, t.start, t.end, i = tkString, int32(j+1), int32(n), n
					break
				}
				t.kind, t.start, t.end, i = tkString, int32(j+1), int32(j+1+k), j+1+k+len(tag)
			case j > i+1:
				t.kind, t.end, i = tkParam, int32(j), j
			default:
				t.kind, t.kw, t.end, i = tkOp, '$', int32(i+1), i+1
			}
		case c == '?':
			j := i + 1
			for j < n && '0' <= q[j] && q[j] <= '9' {
				j++
			}
			t.kind, t.end, i = tkParam, int32(j), j
		case c == ':' && i+1 < n && q[i+1] == ':':
			t.kind, t.kw, t.end, i = tkOp, opCast, int32(i+2), i+2
		case (c == ':' || c == '@') && i+1 < n && (sqlWordByte[q[i+1]] || (c == '@' && q[i+1] == '@')):
			j := i + 1
			if q[j] == '@' {
				j++
			}
			for j < n && sqlWordByte[q[j]] {
				j++
			}
			t.kind, t.end, i = tkParam, int32(j), j
		case c == '%' && i+1 < n && printfVerb(q, i+1):
			j := i + 1 // the verb, after %(name) if there is one
			if q[j] == '(' {
				j += strings.IndexByte(q[j:], ')') + 1
			}
			t.kind, t.end, i = tkParam, int32(j+1), j+1
		case c == '(':
			t.kind, t.end, i = tkLParen, int32(i+1), i+1
		case c == ')':
			t.kind, t.end, i = tkRParen, int32(i+1), i+1
		case c == ',':
			t.kind, t.end, i = tkComma, int32(i+1), i+1
		case c == ';':
			t.kind, t.end, i = tkSemi, int32(i+1), i+1
		case c == '.':
			t.kind, t.end, i = tkDot, int32(i+1), i+1
		case c == '=' || c == '<' || c == '>' || c == '!':
			t.kind = tkOp
			two := ""
			if i+1 < n {
				two = q[i : i+2]
			}
			switch {
			case i+2 < n && q[i:i+3] == "<=>":
				t.kw, i = opEq, i+3
			case two == "==":
				t.kw, i = opEq, i+2
			case two == "<>" || two == "!=" || two == "<=" || two == ">=":
				t.kw, i = opCmp, i+2
			case c == '=':
				t.kw, i = opEq, i+1
			case c == '!':
				t.kw, i = '!', i+1
			default:
				t.kw, i = opCmp, i+1
			}
			t.end = int32(i)
		case c > ' ' && c < 0x7f:
			t.kind, t.kw, t.end, i = tkOp, c, int32(i+1), i+1
		default:
			t.kind, t.end, i = tkOther, int32(i+1), i+1
		}
	}
	a.toks = toks
	return true
}

// skipQuoted returns the index after the closing quote of a quoted string or
// name whose text starts at i; a doubled quote is an escaped quote, and so is
// a backslash in strings (MySQL). Text that never closes returns len(q), false.
func skipQuoted(q string, i int, quote byte, backslash bool) (int, bool) {
	for i < len(q) {
		switch c := q[i]; {
		case c == quote:
			if i+1 < len(q) && q[i+1] == quote {
				i += 2
				continue
			}
			return i + 1, true
		case c == '\\' && backslash:
			i += 2
		default:
			i++
		}
	}
	return len(q), false
}

// bracketQuotes tells a SQL Server quoted name ([orders]) from a subscript
// (arr[1], ARRAY[...], int[]) by the token before it.
func bracketQuotes(toks []sqlTok) bool {
	if len(toks) == 0 {
		return true
	}
	switch p := toks[len(toks)-1]; p.kind {
	case tkIdent:
		return p.kw != kwNone && p.kw != kwArray
	case tkQuoted, tkNumber, tkString, tkParam, tkRParen:
		return false
	case tkOp:
		return p.kw != ']'
	}
	return true
}

// printfVerb reports whether q[i:] continues a %s / %d / %(name)s placeholder.
// The name is looked for only a short way ahead, so that "%(%(%(..." costs
// linear time.
func printfVerb(q string, i int) bool {
	if q[i] == '(' {
		j := strings.IndexByte(q[i:min(i+maxPrintfName, len(q))], ')')
		return j > 1 && i+j+1 < len(q) && isLetter(q[i+j+1])
	}
	return isLetter(q[i]) && (i+1 == len(q) || !sqlWordByte[q[i+1]])
}

const maxPrintfName = 64

func isLetter(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }
func isHexDigit(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// ---- keywords ----

const (
	kwNone uint8 = iota
	kwAll
	kwAnd
	kwAny
	kwApply
	kwArray
	kwAs
	kwBetween
	kwBinary
	kwBy
	kwCase
	kwCast
	kwCross
	kwCurrentRole
	kwCurrentSchema
	kwCurrentUser
	kwDate
	kwDefault
	kwDelayed
	kwDelete
	kwDistinct
	kwElse
	kwEnd
	kwExcept
	kwExists
	kwFalse
	kwFetch
	kwFor
	kwForce
	kwFrom
	kwFull
	kwGlob
	kwGroup
	kwHaving
	kwHighPriority
	kwIgnore
	kwIlike
	kwIn
	kwInner
	kwInsert
	kwIntersect
	kwInterval
	kwInto
	kwIs
	kwJoin
	kwLateral
	kwLeft
	kwLike
	kwLimit
	kwLowPriority
	kwMaterialized
	kwMinus
	kwNatural
	kwNot
	kwNull
	kwOffset
	kwOn
	kwOnly
	kwOr
	kwOrder
	kwOuter
	kwOutput
	kwPartition
	kwPercent
	kwQualify
	kwQuick
	kwRecursive
	kwRegexp
	kwReplace
	kwReturning
	kwRight
	kwRlike
	kwSelect
	kwSessionUser
	kwSet
	kwSimilar
	kwSome
	kwStraightJoin
	kwTable
	kwTablesample
	kwThen
	kwTime
	kwTimestamp
	kwTop
	kwTrue
	kwUnion
	kwUpdate
	kwUse
	kwUser
	kwUsing
	kwValue
	kwValues
	kwWhen
	kwWhere
	kwWindow
	kwWith
	kwXor
	kwCount
)

// Keyword properties.
const (
	kfReserved = 1 << iota // never a table name or an alias
	kfValue                // starts a value: TRUE, CURRENT_USER, ARRAY[...], ANY(...)
	kfTrailing             // a statement ending in it was cut short
	kfModifier             // skipped between INSERT/UPDATE/DELETE and the table
)

var sqlKeywords = [...]struct {
	word  string
	kw    uint8
	flags uint8
}{
	{"all", kwAll, kfReserved | kfValue | kfTrailing},
	{"and", kwAnd, kfReserved | kfTrailing},
	{"any", kwAny, kfValue | kfTrailing},
	{"apply", kwApply, kfReserved},
	{"array", kwArray, kfValue},
	{"as", kwAs, kfReserved | kfTrailing},
	{"between", kwBetween, kfReserved | kfTrailing},
	{"binary", kwBinary, kfValue},
	{"by", kwBy, kfReserved | kfTrailing},
	{"case", kwCase, kfReserved | kfTrailing},
	{"cast", kwCast, kfValue},
	{"cross", kwCross, kfReserved | kfTrailing},
	{"current_role", kwCurrentRole, kfValue},
	{"current_schema", kwCurrentSchema, kfValue},
	{"current_user", kwCurrentUser, kfValue},
	{"date", kwDate, kfValue},
	{"default", kwDefault, kfReserved},
	{"delayed", kwDelayed, kfModifier},
	{"delete", kwDelete, kfReserved},
	{"distinct", kwDistinct, kfReserved | kfTrailing},
	{"else", kwElse, kfReserved | kfTrailing},
	{"end", kwEnd, kfReserved},
	{"except", kwExcept, kfReserved | kfTrailing},
	{"exists", kwExists, kfReserved | kfTrailing},
	{"false", kwFalse, kfValue},
	{"fetch", kwFetch, kfReserved},
	{"for", kwFor, kfReserved},
	{"force", kwForce, kfReserved},
	{"from", kwFrom, kfReserved | kfTrailing},
	{"full", kwFull, kfReserved | kfTrailing},
	{"glob", kwGlob, kfReserved | kfTrailing},
	{"group", kwGroup, kfReserved | kfTrailing},
	{"having", kwHaving, kfReserved | kfTrailing},
	{"high_priority", kwHighPriority, kfModifier},
	{"ignore", kwIgnore, kfReserved | kfModifier},
	{"ilike", kwIlike, kfReserved | kfTrailing},
	{"in", kwIn, kfReserved | kfTrailing},
	{"inner", kwInner, kfReserved | kfTrailing},
	{"insert", kwInsert, kfReserved},
	{"intersect", kwIntersect, kfReserved | kfTrailing},
	{"interval", kwInterval, kfValue},
	{"into", kwInto, kfReserved | kfTrailing | kfModifier},
	{"is", kwIs, kfReserved | kfTrailing},
	{"join", kwJoin, kfReserved | kfTrailing},
	{"lateral", kwLateral, kfReserved},
	{"left", kwLeft, kfReserved | kfTrailing},
	{"like", kwLike, kfReserved | kfTrailing},
	{"limit", kwLimit, kfReserved | kfTrailing},
	{"low_priority", kwLowPriority, kfModifier},
	{"materialized", kwMaterialized, 0},
	{"minus", kwMinus, kfReserved},
	{"natural", kwNatural, kfReserved | kfTrailing},
	{"not", kwNot, kfReserved | kfTrailing},
	{"null", kwNull, kfReserved},
	{"offset", kwOffset, kfReserved | kfTrailing},
	{"on", kwOn, kfReserved | kfTrailing},
	{"only", kwOnly, kfReserved},
	{"or", kwOr, kfReserved | kfTrailing | kfModifier},
	{"order", kwOrder, kfReserved | kfTrailing},
	{"outer", kwOuter, kfReserved | kfTrailing},
	{"output", kwOutput, kfReserved},
	{"partition", kwPartition, kfReserved},
	{"percent", kwPercent, 0},
	{"qualify", kwQualify, kfReserved},
	{"quick", kwQuick, kfModifier},
	{"recursive", kwRecursive, kfReserved},
	{"regexp", kwRegexp, kfReserved | kfTrailing},
	{"replace", kwReplace, kfModifier},
	{"returning", kwReturning, kfReserved},
	{"right", kwRight, kfReserved | kfTrailing},
	{"rlike", kwRlike, kfReserved | kfTrailing},
	{"select", kwSelect, kfReserved | kfTrailing},
	{"session_user", kwSessionUser, kfValue},
	{"set", kwSet, kfReserved | kfTrailing},
	{"similar", kwSimilar, kfReserved | kfTrailing},
	{"some", kwSome, kfValue | kfTrailing},
	{"straight_join", kwStraightJoin, kfReserved | kfTrailing},
	{"table", kwTable, kfReserved},
	{"tablesample", kwTablesample, kfReserved},
	{"then", kwThen, kfReserved | kfTrailing},
	{"time", kwTime, kfValue},
	{"timestamp", kwTimestamp, kfValue},
	{"top", kwTop, 0},
	{"true", kwTrue, kfValue},
	{"union", kwUnion, kfReserved | kfTrailing},
	{"update", kwUpdate, kfReserved},
	{"use", kwUse, kfReserved},
	{"user", kwUser, kfValue},
	{"using", kwUsing, kfReserved | kfTrailing},
	{"value", kwValue, 0},
	{"values", kwValues, kfReserved | kfTrailing},
	{"when", kwWhen, kfReserved | kfTrailing},
	{"where", kwWhere, kfReserved | kfTrailing},
	{"window", kwWindow, kfReserved},
	{"with", kwWith, kfReserved | kfTrailing},
	{"xor", kwXor, kfReserved | kfTrailing},
}

const maxKeywordLen = len("current_schema")

type kwSlot struct {
	word string
	hash uint32
	kw   uint8
}

var (
	kwFlags [kwCount]uint8
	kwSlots = func() (t [512]kwSlot) {
		for _, k := range sqlKeywords {
			h := foldHash(k.word)
			j := h & uint32(len(t)-1)
			for t[j].word != "" {
				j = (j + 1) & uint32(len(t)-1)
			}
			t[j] = kwSlot{word: k.word, hash: h, kw: k.kw}
			kwFlags[k.kw] = k.flags
		}
		return t
	}()
)

func keywordOf(h uint32, word string) uint8 {
	for j := h & uint32(len(kwSlots)-1); kwSlots[j].word != ""; j = (j + 1) & uint32(len(kwSlots)-1) {
		if kwSlots[j].hash == h && foldEqual(kwSlots[j].word, word) {
			return kwSlots[j].kw
		}
	}
	return kwNone
}

// keywords is a set of keywords.
type keywords [2]uint64

// kwCount must stay within the 128 bits of keywords: this fails to compile
// otherwise.
var _ = [1]struct{}{}[kwCount>>7]

func keywordSet(kws ...uint8) (s keywords) {
	for _, k := range kws {
		s[k>>6] |= 1 << (k & 63)
	}
	return s
}

func (s *keywords) has(k uint8) bool { return s[k>>6]&(1<<(k&63)) != 0 }

var (
	selectClauses = keywordSet(kwFrom, kwWhere, kwGroup, kwHaving, kwWindow, kwQualify, kwOrder, kwLimit, kwOffset, kwFetch, kwFor, kwInto)
	updateClauses = keywordSet(kwSet, kwFrom, kwWhere, kwReturning, kwOutput, kwOrder, kwLimit)
	deleteClauses = keywordSet(kwFrom, kwUsing, kwWhere, kwReturning, kwOutput, kwOrder, kwLimit)
)

// ---- analysis ----

// The analysis builds a small graph. Each table reference is a node, scoped
// when a predicate confines it to a tenant; a tenant-column equality t.c =
// u.c is an edge u → t ("t is scoped if u is"); a CTE or derived table has an
// extra node that is scoped when all the tables its body reads are, with an
// edge to each reference to it. A node's counter is how many of its
// incoming edges must be scoped before it is (1 for a table, the number of
// body tables for a CTE, 0 for one scoped from the start), so propagation is
// a single breadth-first pass, linear in nodes and edges.
type sqlNode struct {
	cfg     int32 // index into SQLScope.tables, -1 for any other table or a CTE body
	counter int32
	schema  int32 // tokens naming the reference, -1 when absent
	name    int32
	alias   int32
	judge   bool // a configured table whose whole SELECT was seen
	scoped  bool
}

type sqlEdge struct{ from, to int32 }

// sqlFrame is one SELECT (or UPDATE, DELETE) scope: its tables are
// a.local[seg:seg+n], bit k of a mask standing for the k-th.
type sqlFrame struct {
	parent   int32
	seg, n   int32
	direct   uint64 // tables scoped by a predicate of this scope
	sink     int32  // CTE or derived-table node whose body this is, or -1
	complete bool   // the scope ends before a cut
}

type sqlCTE struct {
	name int32 // token
	node int32
	self bool // a recursive CTE's body, where the name refers to itself
}

// sqlAnalyzer is the scratch space of one Unscoped call, pooled by its
// SQLScope so that a call allocates nothing but its result.
type sqlAnalyzer struct {
	s         *SQLScope
	q         string
	toks      []sqlTok
	open      []int32
	nodes     []sqlNode
	edges     []sqlEdge
	local     []int32
	frames    []sqlFrame
	ctes      []sqlCTE
	start     []int32
	cursor    []int32
	out       []int32
	queue     []int32
	hit       []bool
	depth     int
	fail      bool // the current statement is not understood
	truncated bool // the text was cut short: scopes running to its end are not judged
}

func (a *sqlAnalyzer) reset() {
	a.q = ""
	const keep = 1 << 14 // tokens (320 KiB): do not hold on to the buffers of a freak statement
	if cap(a.toks) > keep {
		a.toks, a.open, a.nodes, a.edges, a.local = nil, nil, nil, nil, nil
		a.start, a.cursor, a.out, a.queue = nil, nil, nil, nil
	}
}

func (a *sqlAnalyzer) analyze(q string, cut bool) []string {
	end := len(q)
	for end > 0 && (q[end-1] == ' ' || q[end-1] == '\t' || q[end-1] == '\n' || q[end-1] == '\r') {
		end--
	}
	switch {
	case strings.HasSuffix(q[:end], "..."):
		q, cut = q[:end-3], true
	case strings.HasSuffix(q[:end], "…"):
		q, cut = q[:end-len("…")], true
	}
	a.q = q
	if !a.lex(q, cut) {
		return nil
	}
	a.truncated = cut
	if n := len(a.toks); n > 0 && !cut {
		switch t := &a.toks[n-1]; t.kind {
		case tkIdent:
			a.truncated = kwFlags[t.kw]&kfTrailing != 0
		case tkOp:
			a.truncated = t.kw != '*'
		case tkComma, tkDot, tkLParen:
			a.truncated = true
		}
	}
	if !a.matchParens() {
		return nil
	}
	a.nodes, a.edges = a.nodes[:0], a.edges[:0]
	for i := 0; i < len(a.toks); {
		end := i
		for end < len(a.toks) && a.toks[end].kind != tkSemi {
			end = a.skip(end)
		}
		nodes, edges := len(a.nodes), len(a.edges)
		a.stmt(i, end, -1)
		if a.fail {
			a.nodes, a.edges = a.nodes[:nodes], a.edges[:edges]
		}
		a.fail, a.depth = false, 0
		a.frames, a.local, a.ctes = a.frames[:0], a.local[:0], a.ctes[:0]
		i = end + 1
	}
	return a.result()
}

// matchParens pairs parentheses. An unclosed one is tolerated only in text
// that was cut short.
func (a *sqlAnalyzer) matchParens() bool {
	open := a.open[:0]
	for i := range a.toks {
		switch a.toks[i].kind {
		case tkLParen:
			open = append(open, int32(i))
		case tkRParen:
			if len(open) == 0 {
				return false
			}
			j := open[len(open)-1]
			open = open[:len(open)-1]
			a.toks[j].match, a.toks[i].match = int32(i), j
		}
	}
	a.open = open
	if len(open) > 0 && !a.truncated {
		return false
	}
	for _, j := range open {
		a.toks[j].match = int32(len(a.toks))
	}
	return true
}

func (a *sqlAnalyzer) result() []string {
	pending := false
	for i := range a.nodes {
		if n := &a.nodes[i]; n.cfg >= 0 && n.judge && n.counter != 0 {
			pending = true
			break
		}
	}
	if !pending {
		return nil
	}
	a.propagate()
	hit := a.hit
	count := 0
	for i := range a.nodes {
		if n := &a.nodes[i]; n.cfg >= 0 && n.judge && !n.scoped && !hit[n.cfg] {
			hit[n.cfg] = true
			count++
		}
	}
	if count == 0 {
		return nil
	}
	res := make([]string, 0, count)
	for i, h := range hit {
		if h {
			res = append(res, a.s.tables[i].name)
			hit[i] = false
		}
	}
	return res
}

// propagate marks the scoped nodes: those with a zero counter, then, breadth
// first, every node whose counter its scoped predecessors bring to zero.
func (a *sqlAnalyzer) propagate() {
	nn := len(a.nodes)
	a.start = grow(a.start, nn+1)
	clear(a.start)
	for _, e := range a.edges {
		a.start[e.from+1]++
	}
	for v := range nn {
		a.start[v+1] += a.start[v]
	}
	a.cursor = grow(a.cursor, nn)
	copy(a.cursor, a.start[:nn])
	a.out = grow(a.out, len(a.edges))
	for _, e := range a.edges {
		a.out[a.cursor[e.from]] = e.to
		a.cursor[e.from]++
	}
	queue := a.queue[:0]
	for v := range a.nodes {
		if a.nodes[v].counter == 0 {
			a.nodes[v].scoped = true
			queue = append(queue, int32(v))
		}
	}
	for h := 0; h < len(queue); h++ {
		v := queue[h]
		for _, w := range a.out[a.start[v]:a.start[v+1]] {
			if n := &a.nodes[w]; !n.scoped {
				if n.counter--; n.counter == 0 {
					n.scoped = true
					queue = append(queue, w)
				}
			}
		}
	}
	a.queue = queue
}

func grow(s []int32, n int) []int32 {
	if cap(s) < n {
		return make([]int32, n)
	}
	return s[:n]
}

// ---- token helpers ----

func (a *sqlAnalyzer) kw(i, hi int) uint8 {
	if i < hi && a.toks[i].kind == tkIdent {
		return a.toks[i].kw
	}
	return kwNone
}

func (a *sqlAnalyzer) kind(i, hi int) sqlTokKind {
	if i < hi {
		return a.toks[i].kind
	}
	return 0
}

func (a *sqlAnalyzer) text(i int32) string { return a.q[a.toks[i].start:a.toks[i].end] }

// skip returns the index after token i, after its group if it opens one.
func (a *sqlAnalyzer) skip(i int) int {
	if a.toks[i].kind == tkLParen {
		return min(int(a.toks[i].match)+1, len(a.toks))
	}
	return i + 1
}

// name reports whether token i can name a table, column or alias.
func (a *sqlAnalyzer) name(i, hi int) bool {
	switch a.kind(i, hi) {
	case tkQuoted:
		return true
	case tkIdent:
		return kwFlags[a.toks[i].kw]&kfReserved == 0
	}
	return false
}

func (a *sqlAnalyzer) sameWord(i, j int32) bool {
	return a.toks[i].hash == a.toks[j].hash && foldEqual(a.text(i), a.text(j))
}

// startsQuery reports whether the group whose content starts at i is a query.
func (a *sqlAnalyzer) startsQuery(i, hi int) bool {
	switch a.kw(i, hi) {
	case kwSelect, kwWith, kwValues, kwTable:
		return true
	}
	return false
}

func (a *sqlAnalyzer) enter() bool {
	if a.fail {
		return false
	}
	if a.depth >= maxSQLDepth {
		a.fail = true
		return false
	}
	a.depth++
	return true
}

func (a *sqlAnalyzer) leave() { a.depth-- }

func (a *sqlAnalyzer) edge(from, to int32) {
	if len(a.edges) >= maxSQLEdges {
		a.fail = true
		return
	}
	a.edges = append(a.edges, sqlEdge{from, to})
}

// bodyNode adds the node of a CTE or derived table body.
func (a *sqlAnalyzer) bodyNode() int32 {
	a.nodes = append(a.nodes, sqlNode{cfg: -1, schema: -1, name: -1, alias: -1})
	return int32(len(a.nodes) - 1)
}

func lowBits(n int32) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<n - 1
}

// scan analyses the subqueries in an expression that is otherwise not read.
func (a *sqlAnalyzer) scan(lo, hi int) {
	for i := lo; i < hi && !a.fail; i++ {
		if t := &a.toks[i]; t.kind == tkLParen && a.startsQuery(i+1, int(t.match)) {
			a.query(i+1, int(t.match), -1)
			i = int(t.match)
		}
	}
}

// ---- statements ----

func (a *sqlAnalyzer) stmt(lo, hi int, sink int32) {
	if lo >= hi || !a.enter() {
		return
	}
	switch a.kw(lo, hi) {
	case kwWith:
		ctes := len(a.ctes)
		i := a.with(lo, hi)
		if !a.fail {
			a.stmt(i, hi, sink)
		}
		a.ctes = a.ctes[:ctes]
	case kwSelect, kwValues, kwTable:
		a.query(lo, hi, sink)
	case kwInsert, kwReplace:
		a.insert(lo, hi, sink)
	case kwUpdate:
		a.update(lo, hi, sink)
	case kwDelete:
		a.delete(lo, hi, sink)
	default:
		if a.toks[lo].kind == tkLParen {
			a.query(lo, hi, sink)
		}
		// Anything else (DDL, SET, BEGIN, a Redis command, prose) reads no rows.
	}
	a.leave()
}

// with reads WITH [RECURSIVE] name [(columns)] AS [[NOT] MATERIALIZED] (body),
// ... and returns the index of the statement that follows.
func (a *sqlAnalyzer) with(lo, hi int) int {
	i := lo + 1
	recursive := a.kw(i, hi) == kwRecursive
	if recursive {
		i++
	}
	for !a.fail {
		if !a.name(i, hi) || len(a.ctes) >= maxSQLCTEs {
			a.fail = true
			break
		}
		name := int32(i)
		if i++; a.kind(i, hi) == tkLParen {
			i = a.skip(i)
		}
		if a.kw(i, hi) != kwAs {
			a.fail = true
			break
		}
		if i++; a.kw(i, hi) == kwNot {
			i++
		}
		if a.kw(i, hi) == kwMaterialized {
			i++
		}
		if a.kind(i, hi) != tkLParen {
			a.fail = true
			break
		}
		body := a.bodyNode()
		if recursive {
			a.ctes = append(a.ctes, sqlCTE{name: name, node: body, self: true})
		}
		a.stmt(i+1, int(a.toks[i].match), body)
		if a.fail {
			break
		}
		if recursive {
			a.ctes[len(a.ctes)-1].self = false
		} else {
			a.ctes = append(a.ctes, sqlCTE{name: name, node: body})
		}
		// SEARCH ... SET ... and CYCLE ... USING ... (PostgreSQL) follow the body.
		for i = a.skip(i); i < hi && a.toks[i].kind != tkComma && a.toks[i].kind != tkLParen; i++ {
			if k := a.kw(i, hi); k == kwSelect || k == kwInsert || k == kwUpdate || k == kwDelete || k == kwValues || k == kwTable || k == kwReplace {
				break
			}
		}
		if a.kind(i, hi) != tkComma {
			break
		}
		i++
	}
	return i
}

func (a *sqlAnalyzer) cte(name int32) int {
	for k := len(a.ctes) - 1; k >= 0; k-- {
		if a.sameWord(a.ctes[k].name, name) {
			return k
		}
	}
	return -1
}

// query reads a query expression: [WITH ...] branches joined by UNION,
// INTERSECT or EXCEPT, each a SELECT, VALUES, TABLE or parenthesised query.
func (a *sqlAnalyzer) query(lo, hi int, sink int32) {
	if !a.enter() {
		return
	}
	ctes := len(a.ctes)
	i := lo
	if a.kw(i, hi) == kwWith {
		i = a.with(i, hi)
	}
	for i < hi && !a.fail {
		t := &a.toks[i]
		switch {
		case t.kind == tkLParen:
			a.query(i+1, int(t.match), sink)
			i = a.skip(i)
		case t.kind == tkIdent && t.kw == kwSelect:
			end := a.setOp(i+1, hi)
			a.core(i, end, sink)
			i = end
		case t.kind == tkIdent && t.kw == kwValues:
			end := a.setOp(i+1, hi)
			a.scan(i+1, end)
			i = end
		case t.kind == tkIdent && t.kw == kwTable: // TABLE orders (PostgreSQL)
			end := a.setOp(i+1, hi)
			f := a.push(sink, end)
			a.fromList(f, i+1, end)
			a.pop(f)
			i = end
		default:
			a.fail = true
		}
		if a.fail || i >= hi {
			break
		}
		if k := a.kw(i, hi); k == kwUnion || k == kwIntersect || k == kwExcept || k == kwMinus {
			for i++; a.kw(i, hi) == kwAll || a.kw(i, hi) == kwDistinct; i++ {
			}
			continue
		}
		a.scan(i, hi) // ORDER BY, LIMIT after a parenthesised branch
		break
	}
	a.ctes = a.ctes[:ctes]
	a.leave()
}

// setOp returns the index of the next UNION, INTERSECT, EXCEPT or MINUS at
// this level, or hi. SELECT * EXCEPT (col) (BigQuery) is not one.
func (a *sqlAnalyzer) setOp(i, hi int) int {
	for ; i < hi; i = a.skip(i) {
		switch a.kw(i, hi) {
		case kwUnion, kwIntersect, kwMinus:
			return i
		case kwExcept:
			if p := &a.toks[i-1]; p.kind != tkOp || p.kw != '*' {
				return i
			}
		}
	}
	return hi
}

type sqlSection struct {
	kw     uint8
	lo, hi int
}

// sections splits lo:hi at the clause keywords of set found at this level.
// The first section (kw 0) is what precedes the first clause keyword.
func (a *sqlAnalyzer) sections(lo, hi int, set *keywords, out *[12]sqlSection) int {
	out[0] = sqlSection{lo: lo, hi: hi}
	n := 1
	for i := lo; i < hi && n < len(out); {
		t := &a.toks[i]
		if t.kind == tkIdent && set.has(t.kw) {
			next, ok := i+1, true
			switch t.kw {
			case kwGroup, kwOrder:
				ok = a.kw(next, hi) == kwBy
				next++
			case kwFrom: // x IS [NOT] DISTINCT FROM y
				ok = !(i >= 2 && a.toks[i-1].kind == tkIdent && a.toks[i-1].kw == kwDistinct &&
					a.toks[i-2].kind == tkIdent && (a.toks[i-2].kw == kwIs || a.toks[i-2].kw == kwNot))
			case kwUsing: // JOIN ... USING (col), not DELETE ... USING (SELECT ...)
				ok = a.kind(next, hi) != tkLParen || a.startsQuery(next+1, hi)
			}
			if ok {
				out[n-1].hi = i
				out[n] = sqlSection{kw: t.kw, lo: min(next, hi), hi: hi}
				n++
				i = min(next, hi)
				continue
			}
		}
		i = a.skip(i)
	}
	return n
}

// push opens a scope that ends at hi.
func (a *sqlAnalyzer) push(sink int32, hi int) int {
	f := len(a.frames)
	a.frames = append(a.frames, sqlFrame{
		parent:   int32(f - 1),
		seg:      int32(len(a.local)),
		sink:     sink,
		complete: !(a.truncated && hi >= len(a.toks)),
	})
	return f
}

// pop closes a scope: its tables learn whether a predicate scoped them and
// become premises of the body they belong to.
func (a *sqlAnalyzer) pop(f int) {
	fr := a.frames[f]
	if !a.fail {
		for k := range fr.n {
			id := a.local[fr.seg+k]
			n := &a.nodes[id]
			if fr.direct&(1<<k) != 0 || !fr.complete {
				n.counter = 0 // an unfinished scope might yet have its predicate: assume it
			}
			n.judge = fr.complete && n.cfg >= 0
			if fr.sink >= 0 {
				a.edge(id, fr.sink)
				a.nodes[fr.sink].counter++
			}
		}
	}
	a.local = a.local[:fr.seg]
	a.frames = a.frames[:f]
}

func (a *sqlAnalyzer) addRef(f int, cfg, schema, name, alias, counter int32) int32 {
	if a.frames[f].n >= maxSQLScopeRefs {
		a.fail = true
		return -1
	}
	id := int32(len(a.nodes))
	a.nodes = append(a.nodes, sqlNode{cfg: cfg, counter: counter, schema: schema, name: name, alias: alias})
	a.local = append(a.local, id)
	a.frames[f].n++
	return id
}

// core reads SELECT ... up to hi: the FROM clause first, so that the select
// list's correlated subqueries can see its tables.
func (a *sqlAnalyzer) core(lo, hi int, sink int32) {
	var secs [12]sqlSection
	n := a.sections(lo+1, hi, &selectClauses, &secs)
	f := a.push(sink, hi)
	for _, s := range secs[:n] {
		if s.kw == kwFrom {
			a.fromList(f, s.lo, s.hi)
		}
	}
	for _, s := range secs[:n] {
		switch s.kw {
		case kwFrom:
		case kwWhere:
			a.where(f, s.lo, s.hi)
		default:
			a.scan(s.lo, s.hi)
		}
	}
	a.pop(f)
}

func (a *sqlAnalyzer) where(f, lo, hi int) {
	all := lowBits(a.frames[f].n)
	m := a.cond(f, lo, hi, all, true)
	a.frames[f].direct |= m
}

// insert reads INSERT [INTO] t [(columns)] {VALUES | SELECT | SET | DEFAULT
// VALUES} ...: t is scoped when the tenant column is written.
func (a *sqlAnalyzer) insert(lo, hi int, sink int32) {
	i := lo + 1
	for i < hi && a.toks[i].kind == tkIdent && kwFlags[a.toks[i].kw]&kfModifier != 0 {
		i++
	}
	if a.kw(i, hi) == kwTable {
		i++
	}
	if !a.name(i, hi) {
		return
	}
	schema, name := int32(-1), int32(i)
	for i++; a.kind(i, hi) == tkDot && a.name(i+1, hi); i += 2 {
		schema, name = name, int32(i+1)
	}
	cfg := a.s.match(a.textOr(schema), a.text(name), a.toks[name].hash, schema >= 0)
	if a.kw(i, hi) == kwAs && a.name(i+1, hi) {
		i += 2
	}
	if a.kw(i, hi) == kwPartition && a.kind(i+1, hi) == tkLParen {
		i = a.skip(i + 1)
	}
	listed, hasTenant, known := false, false, false
	if t := a.kind(i, hi); t == tkLParen && !a.startsQuery(i+1, int(a.toks[i].match)) {
		listed = true
		hasTenant = a.listHasColumn(i+1, int(a.toks[i].match))
		i = a.skip(i)
	}
	end := i
	for end < hi && a.kw(end, hi) != kwReturning && !(a.kw(end, hi) == kwOn && a.onConflict(end+1, hi)) {
		end = a.skip(end)
	}
	switch k := a.kw(i, hi); {
	case k == kwValues || k == kwValue:
		known = true
		a.scan(i+1, end)
	case k == kwSelect || k == kwWith || a.kind(i, hi) == tkLParen:
		known = true
		a.stmt(i, end, -1)
	case k == kwSet: // INSERT ... SET col = v, ... (MySQL)
		known, listed, hasTenant = true, true, a.assignsColumn(i+1, end)
	case k == kwDefault: // DEFAULT VALUES: the tenant column too is left to its default
		known, listed = true, true
	}
	a.scan(end, hi)
	if cfg < 0 || !known || a.fail {
		return
	}
	counter := int32(1)
	if hasTenant || !listed {
		counter = 0
	}
	a.nodes = append(a.nodes, sqlNode{cfg: cfg, counter: counter, schema: -1, name: -1, alias: -1, judge: true})
	if sink >= 0 {
		a.edge(int32(len(a.nodes)-1), sink)
		a.nodes[sink].counter++
	}
}

func (a *sqlAnalyzer) textOr(i int32) string {
	if i < 0 {
		return ""
	}
	return a.text(i)
}

// onConflict reports whether the ON at i-1 starts ON CONFLICT or ON
// DUPLICATE KEY UPDATE, not a join condition of the inserted SELECT.
func (a *sqlAnalyzer) onConflict(i, hi int) bool {
	if a.kind(i, hi) != tkIdent {
		return false
	}
	w := a.text(int32(i))
	return foldEqual(w, "conflict") || foldEqual(w, "duplicate")
}

// update reads UPDATE t [alias] [joins] SET ... [FROM ...] [WHERE ...].
func (a *sqlAnalyzer) update(lo, hi int, sink int32) {
	i := a.modifiers(lo+1, hi)
	var secs [12]sqlSection
	n := a.sections(i, hi, &updateClauses, &secs)
	set := false
	for _, s := range secs[1:n] {
		set = set || s.kw == kwSet
	}
	if !set {
		return // "update orders failed" is prose, not a statement
	}
	f := a.push(sink, hi)
	a.fromList(f, secs[0].lo, secs[0].hi)
	for _, s := range secs[1:n] {
		if s.kw == kwFrom {
			a.fromList(f, s.lo, s.hi)
		}
	}
	for _, s := range secs[1:n] {
		switch s.kw {
		case kwFrom:
		case kwWhere:
			a.where(f, s.lo, s.hi)
		default:
			a.scan(s.lo, s.hi)
		}
	}
	a.pop(f)
}

// delete reads DELETE [targets] FROM t ... [USING ...] [WHERE ...], and SQL
// Server's DELETE t WHERE ....
func (a *sqlAnalyzer) delete(lo, hi int, sink int32) {
	i := a.modifiers(lo+1, hi)
	var secs [12]sqlSection
	n := a.sections(i, hi, &deleteClauses, &secs)
	from, where := false, false
	for _, s := range secs[1:n] {
		from = from || s.kw == kwFrom
		where = where || s.kw == kwWhere
	}
	if !from && !where {
		return
	}
	f := a.push(sink, hi)
	if from {
		a.scan(secs[0].lo, secs[0].hi) // DELETE o, s FROM ...: aliases of the FROM list
	} else {
		a.fromList(f, secs[0].lo, secs[0].hi)
	}
	for _, s := range secs[1:n] {
		if s.kw == kwFrom || s.kw == kwUsing {
			a.fromList(f, s.lo, s.hi)
		}
	}
	for _, s := range secs[1:n] {
		switch s.kw {
		case kwFrom, kwUsing:
		case kwWhere:
			a.where(f, s.lo, s.hi)
		default:
			a.scan(s.lo, s.hi)
		}
	}
	a.pop(f)
}

// modifiers skips LOW_PRIORITY, IGNORE, QUICK and TOP (n) [PERCENT].
func (a *sqlAnalyzer) modifiers(i, hi int) int {
	for i < hi {
		switch k := a.kw(i, hi); {
		case k == kwTop:
			i++
			if i < hi {
				i = a.skip(i)
			}
			if a.kw(i, hi) == kwPercent {
				i++
			}
		case k != kwInto && k != kwOr && k != kwReplace && kwFlags[k]&kfModifier != 0:
			i++
		default:
			return i
		}
	}
	return i
}

// ---- FROM ----

const (
	joinInner = iota
	joinLeft
	joinRight
	joinFull
)

// fromList reads table references joined by commas and JOINs into scope f.
func (a *sqlAnalyzer) fromList(f, lo, hi int) {
	if !a.enter() {
		return
	}
	for i := lo; i < hi && !a.fail; {
		i = a.fromItem(f, i, hi)
		for i < hi && !a.fail {
			if a.toks[i].kind == tkComma {
				i++
				break
			}
			kind, natural, j := a.join(i, hi)
			if j == i { // index hints, TABLESAMPLE, WITH (NOLOCK), PIVOT: not read
				k := a.skip(i)
				for k < hi && a.toks[k].kind != tkComma && !a.isJoin(k, hi) {
					k = a.skip(k)
				}
				a.scan(i, k)
				i = k
				continue
			}
			before := a.frames[f].n
			i = a.fromItem(f, j, hi)
			if a.fail {
				break
			}
			old := lowBits(before)
			joined := lowBits(a.frames[f].n) &^ old
			switch a.kw(i, hi) {
			case kwOn:
				end := i + 1
				for end < hi && a.toks[end].kind != tkComma && !a.isJoin(end, hi) {
					end = a.skip(end)
				}
				var eligible uint64 // the tables whose rows the condition filters
				switch kind {
				case joinInner:
					eligible = old | joined
				case joinLeft:
					eligible = joined
				case joinRight:
					eligible = old
				}
				m := a.cond(f, i+1, end, eligible, true)
				a.frames[f].direct |= m
				i = end
			case kwUsing:
				if a.kind(i+1, hi) == tkLParen {
					if a.listHasColumn(i+2, int(a.toks[i+1].match)) {
						a.joinEdges(f, old, joined, kind)
					}
					i = a.skip(i + 1)
				} else {
					i++
				}
			}
			if natural {
				a.joinEdges(f, old, joined, kind)
			}
		}
	}
	a.leave()
}

// join reads [NATURAL] [INNER | CROSS | LEFT | RIGHT | FULL [OUTER]] JOIN,
// STRAIGHT_JOIN, CROSS APPLY and OUTER APPLY at i, returning the index after
// it, or i when there is none.
func (a *sqlAnalyzer) join(i, hi int) (kind int, natural bool, next int) {
	j := i
	if a.kw(j, hi) == kwNatural {
		natural = true
		j++
	}
	switch a.kw(j, hi) {
	case kwStraightJoin:
		return joinInner, natural, j + 1
	case kwInner:
		j++
	case kwCross:
		if j++; a.kw(j, hi) == kwApply {
			return joinInner, natural, j + 1
		}
	case kwOuter:
		if a.kw(j+1, hi) == kwApply {
			return joinLeft, natural, j + 2
		}
		return 0, false, i
	case kwLeft, kwRight, kwFull:
		switch a.kw(j, hi) {
		case kwLeft:
			kind = joinLeft
		case kwRight:
			kind = joinRight
		default:
			kind = joinFull
		}
		if j++; a.kw(j, hi) == kwOuter {
			j++
		}
	}
	if a.kw(j, hi) == kwJoin {
		return kind, natural, j + 1
	}
	return 0, false, i
}

func (a *sqlAnalyzer) isJoin(i, hi int) bool {
	_, _, j := a.join(i, hi)
	return j != i
}

// fromItem reads one table reference: [LATERAL | ONLY] a table name, a
// derived table, a table function or a parenthesised join, then its alias.
func (a *sqlAnalyzer) fromItem(f, i, hi int) int {
	for k := a.kw(i, hi); k == kwLateral || k == kwOnly; k = a.kw(i, hi) {
		i++
	}
	if i >= hi {
		a.fail = true
		return hi
	}
	t := &a.toks[i]
	switch {
	case t.kind == tkLParen:
		end, next := int(t.match), a.skip(i)
		if !a.startsQuery(i+1, end) {
			a.fromList(f, i+1, end) // (a JOIN b ON ...)
			_, j := a.alias(next, hi)
			return j
		}
		body := a.bodyNode()
		a.query(i+1, end, body)
		alias, j := a.alias(next, hi)
		if id := a.addRef(f, -1, -1, -1, alias, 1); id >= 0 {
			a.edge(body, id)
		}
		return j
	case t.kind == tkParam: // FROM @rows (SQL Server table variable)
		alias, j := a.alias(i+1, hi)
		a.addRef(f, -1, -1, -1, alias, 0)
		return j
	case a.name(i, hi):
		schema, name := int32(-1), int32(i)
		j := i + 1
		for ; a.kind(j, hi) == tkDot && a.name(j+1, hi); j += 2 {
			schema, name = name, int32(j+1)
		}
		if a.kind(j, hi) == tkLParen { // generate_series(...), unnest(?), json_table(...)
			a.scan(j+1, int(a.toks[j].match))
			alias, k := a.alias(a.skip(j), hi)
			a.addRef(f, -1, -1, -1, alias, 0) // a function's rows are no tenant's table
			return k
		}
		cte := -1
		if schema < 0 {
			cte = a.cte(name)
		}
		cfg := int32(-1)
		if cte < 0 {
			cfg = a.s.match(a.textOr(schema), a.text(name), a.toks[name].hash, schema >= 0)
		}
		alias, k := a.alias(j, hi)
		counter := int32(1)
		if cte >= 0 && a.ctes[cte].self {
			counter = 0 // a recursive CTE's reference to itself: as scoped as its anchor
		}
		id := a.addRef(f, cfg, schema, name, alias, counter)
		if id >= 0 && cte >= 0 && !a.ctes[cte].self {
			a.edge(a.ctes[cte].node, id)
		}
		return k
	}
	a.fail = true
	return hi
}

// alias reads [AS] alias [(columns)] at i.
func (a *sqlAnalyzer) alias(i, hi int) (int32, int) {
	alias := int32(-1)
	switch {
	case a.kw(i, hi) == kwAs:
		if a.name(i+1, hi) || a.kind(i+1, hi) == tkString {
			alias, i = int32(i+1), i+2
		} else {
			i++
		}
	case a.name(i, hi):
		alias, i = int32(i), i+1
	}
	if alias >= 0 && a.kind(i, hi) == tkLParen {
		i = a.skip(i)
	}
	return alias, i
}

// joinEdges records that the tenant columns of the old and joined tables are
// equal (USING (tenant_id), NATURAL JOIN), in the directions the join filters.
func (a *sqlAnalyzer) joinEdges(f int, old, joined uint64, kind int) {
	fr := a.frames[f]
	for x := range fr.n {
		if old&(1<<x) == 0 {
			continue
		}
		for y := range fr.n {
			if joined&(1<<y) == 0 {
				continue
			}
			X, Y := a.local[fr.seg+x], a.local[fr.seg+y]
			if kind == joinInner || kind == joinLeft {
				a.edge(X, Y)
			}
			if kind == joinInner || kind == joinRight {
				a.edge(Y, X)
			}
		}
	}
}

// ---- conditions ----

// cond returns the tables of scope f (within eligible) that the condition
// lo:hi confines to a tenant. conj says the condition is not under an OR, so
// that its tenant-column equalities hold for every row.
func (a *sqlAnalyzer) cond(f, lo, hi int, eligible uint64, conj bool) uint64 {
	if !a.enter() {
		return 0
	}
	var m uint64
	if end := a.split(lo, hi, true); end >= hi {
		m = a.conjunction(f, lo, hi, eligible, conj)
	} else {
		// Every branch of an OR must carry the predicate: the rows of the
		// others are not confined by it.
		m = ^uint64(0)
		for i := lo; !a.fail; {
			m &= a.conjunction(f, i, end, eligible, false)
			if end >= hi {
				break
			}
			i, end = end+1, a.split(end+1, hi, true)
		}
	}
	a.leave()
	return m
}

func (a *sqlAnalyzer) conjunction(f, lo, hi int, eligible uint64, conj bool) uint64 {
	var m uint64
	for i := lo; !a.fail; {
		end := a.split(i, hi, false)
		m |= a.term(f, i, end, eligible, conj)
		if end >= hi {
			break
		}
		i = end + 1
	}
	return m
}

// split returns the index of the next OR/XOR (or) or AND at this level, or
// hi, not counting those inside CASE ... END or BETWEEN x AND y.
func (a *sqlAnalyzer) split(lo, hi int, or bool) int {
	cases, between := 0, false
	for i := lo; i < hi; i = a.skip(i) {
		t := &a.toks[i]
		if t.kind != tkIdent {
			continue
		}
		switch t.kw {
		case kwCase:
			cases++
		case kwEnd:
			if cases > 0 {
				cases--
			}
		case kwBetween:
			between = cases == 0
		case kwAnd:
			if cases == 0 {
				if between {
					between = false
				} else if !or {
					return i
				}
			}
		case kwOr, kwXor:
			if cases == 0 && or {
				return i
			}
		}
	}
	return hi
}

func (a *sqlAnalyzer) term(f, lo, hi int, eligible uint64, conj bool) uint64 {
	if lo >= hi {
		return 0
	}
	t := &a.toks[lo]
	switch {
	case t.kind == tkIdent && t.kw == kwNot:
		// NOT p confines nothing: NOT (tenant_id <> ?) is rare, and NOT
		// (tenant_id = ?) is every other tenant.
		a.scan(lo+1, hi)
		return 0
	case t.kind == tkLParen && int(t.match) == hi-1:
		if a.startsQuery(lo+1, hi-1) {
			a.query(lo+1, hi-1, -1)
			return 0
		}
		return a.cond(f, lo+1, hi-1, eligible, conj)
	}
	m := a.atom(f, lo, hi, eligible, conj)
	a.scan(lo, hi)
	return m
}

const (
	cmpNone = iota
	cmpEq
	cmpIn
	cmpOther
)

// comparison finds the comparison operator of a predicate: the index of its
// first token, of the right operand, and its class.
func (a *sqlAnalyzer) comparison(lo, hi int) (op, rhs, class int) {
	for i := lo; i < hi; i = a.skip(i) {
		t := &a.toks[i]
		switch t.kind {
		case tkOp:
			switch t.kw {
			case opEq:
				return i, i + 1, cmpEq
			case opCmp:
				return i, i + 1, cmpOther
			}
		case tkIdent:
			switch t.kw {
			case kwIn:
				return i, i + 1, cmpIn
			case kwIs:
				if a.kw(i+1, hi) == kwNot && a.kw(i+2, hi) == kwDistinct && a.kw(i+3, hi) == kwFrom {
					return i, i + 4, cmpEq // IS NOT DISTINCT FROM: equality that NULL satisfies too
				}
				return i, i + 1, cmpOther
			case kwNot, kwLike, kwIlike, kwBetween, kwSimilar, kwRegexp, kwRlike, kwGlob:
				return i, i + 1, cmpOther
			}
		}
	}
	return -1, -1, cmpNone
}

// sqlColumn is a reference to the tenant column: q1 is its table qualifier
// and q0 the schema before it, -1 when absent.
type sqlColumn struct {
	q0, q1 int32
	ok     bool
}

// column reports whether lo:hi is exactly a reference to the tenant column,
// [[schema.]table.]tenant_id, possibly cast (tenant_id::text).
func (a *sqlAnalyzer) column(lo, hi int) sqlColumn {
	c := sqlColumn{q0: -1, q1: -1}
	if !a.name(lo, hi) {
		return c
	}
	last, i := int32(lo), lo+1
	for ; a.kind(i, hi) == tkDot && a.name(i+1, hi); i += 2 {
		c.q0, c.q1, last = c.q1, last, int32(i+1)
	}
	if i < hi && !(a.toks[i].kind == tkOp && a.toks[i].kw == opCast) {
		return c
	}
	c.ok = a.toks[last].hash == a.s.colH && foldEqual(a.text(last), a.s.column)
	return c
}

// isValue reports whether lo:hi is something a tenant column can be pinned
// to: a placeholder, a literal, a function call, a subquery, a constant.
func (a *sqlAnalyzer) isValue(lo, hi int) bool {
	for lo < hi && a.toks[lo].kind == tkOp && (a.toks[lo].kw == '-' || a.toks[lo].kw == '+') {
		lo++
	}
	if lo >= hi {
		return false
	}
	t := &a.toks[lo]
	switch t.kind {
	case tkParam, tkString, tkNumber, tkLParen:
		return true
	case tkOp: // ${tenant}, #{tenant}, {tenant}: a template placeholder
		return t.kw == '$' || t.kw == '#' || t.kw == '{'
	case tkQuoted:
		// "acme" is a string in MySQL; "acme".x or "f"(...) is not.
		next := a.kind(lo+1, hi)
		return (t.quote == '"' && next != tkDot) || next == tkLParen
	case tkIdent:
		if t.kw == kwNull {
			return false // NULL is no tenant, and = NULL matches nothing
		}
		if kwFlags[t.kw]&kfValue != 0 {
			return true
		}
		next := a.kind(lo+1, hi)
		return next == tkLParen || next == tkString // f(...), uuid '...'
	}
	return false
}

// atom returns the tables of scope f one predicate confines to a tenant.
func (a *sqlAnalyzer) atom(f, lo, hi int, eligible uint64, conj bool) uint64 {
	op, rhs, class := a.comparison(lo, hi)
	switch class {
	case cmpEq:
		l, r := a.column(lo, op), a.column(rhs, hi)
		switch {
		case l.ok && r.ok:
			if conj {
				a.equate(f, l, r, eligible)
			}
		case l.ok && a.isValue(rhs, hi):
			return a.resolve(f, l) & eligible
		case r.ok && a.isValue(lo, op):
			return a.resolve(f, r) & eligible
		case a.toks[lo].kind == tkLParen && int(a.toks[lo].match) == op-1:
			return a.row(f, lo, op-1, rhs, hi, false) & eligible
		}
	case cmpIn:
		if l := a.column(lo, op); l.ok {
			return a.resolve(f, l) & eligible
		}
		if a.toks[lo].kind == tkLParen && int(a.toks[lo].match) == op-1 {
			return a.row(f, lo, op-1, rhs, hi, true) & eligible
		}
	}
	return 0
}

// row handles (t.tenant_id, t.id) = (?, ?) and (t.tenant_id, t.id) IN (...):
// the tenant column is pinned when the value at its position is a value.
func (a *sqlAnalyzer) row(f, lo, close, rlo, rhi int, in bool) uint64 {
	var m uint64
	rowValue := !in && a.kind(rlo, rhi) == tkLParen && int(a.toks[rlo].match) == rhi-1 && !a.startsQuery(rlo+1, rhi-1)
	ri := rlo + 1
	for i, pos := lo+1, 0; i < close; pos++ {
		end := a.elem(i, close)
		rend := 0
		if rowValue {
			rend = a.elem(ri, rhi-1)
		}
		if c := a.column(i, end); c.ok && (!rowValue || a.isValue(ri, rend)) && (in || rowValue || a.isValue(rlo, rhi)) {
			m |= a.resolve(f, c)
		}
		i, ri = end+1, rend+1
	}
	return m
}

// elem returns the end of the comma-separated element starting at i.
func (a *sqlAnalyzer) elem(i, hi int) int {
	for i < hi && a.toks[i].kind != tkComma {
		i = a.skip(i)
	}
	return min(i, hi)
}

func (a *sqlAnalyzer) listHasColumn(lo, hi int) bool {
	for i := lo; i < hi; {
		end := a.elem(i, hi)
		if a.column(i, end).ok {
			return true
		}
		i = end + 1
	}
	return false
}

// assignsColumn reports whether col = v, ... assigns the tenant column.
func (a *sqlAnalyzer) assignsColumn(lo, hi int) bool {
	for i := lo; i < hi; {
		end := a.elem(i, hi)
		if op, _, class := a.comparison(i, end); class == cmpEq && a.column(i, op).ok {
			return true
		}
		i = end + 1
	}
	return false
}

// resolve returns the tables of scope f a tenant column reference belongs to:
// all of them when it is unqualified.
func (a *sqlAnalyzer) resolve(f int, c sqlColumn) uint64 {
	fr := a.frames[f]
	if c.q1 < 0 {
		return lowBits(fr.n)
	}
	var m uint64
	for k := range fr.n {
		if a.refers(a.local[fr.seg+k], c) {
			m |= 1 << k
		}
	}
	return m
}

// refers reports whether a qualified column names table reference id: by
// alias if it has one, else by name or schema.name.
func (a *sqlAnalyzer) refers(id int32, c sqlColumn) bool {
	n := &a.nodes[id]
	if n.alias >= 0 {
		return c.q0 < 0 && a.sameWord(c.q1, n.alias)
	}
	if n.name < 0 || !a.sameWord(c.q1, n.name) {
		return false
	}
	return c.q0 < 0 || n.schema < 0 || a.sameWord(c.q0, n.schema)
}

// equate records a tenant-column equality l = r as edges: each side is
// scoped if the other is, for the sides in scope f that the condition filters
// (a correlated side in an enclosing scope is not filtered by it).
func (a *sqlAnalyzer) equate(f int, l, r sqlColumn, eligible uint64) {
	if l.q1 < 0 && r.q1 < 0 {
		return // tenant_id = tenant_id holds for every row
	}
	lf, lm := a.resolveOut(f, l)
	rf, rm := a.resolveOut(f, r)
	if lf < 0 || rf < 0 {
		return
	}
	L, R := a.frames[lf], a.frames[rf]
	for x := range L.n {
		if lm&(1<<x) == 0 {
			continue
		}
		for y := range R.n {
			if rm&(1<<y) == 0 {
				continue
			}
			X, Y := a.local[L.seg+x], a.local[R.seg+y]
			if X == Y {
				continue // t.tenant_id = t.tenant_id
			}
			if rf == f && eligible&(1<<y) != 0 {
				a.edge(X, Y)
			}
			if lf == f && eligible&(1<<x) != 0 {
				a.edge(Y, X)
			}
		}
	}
}

// resolveOut resolves a column in scope f or, failing that, in the nearest
// enclosing scope that has the table (a correlated reference).
func (a *sqlAnalyzer) resolveOut(f int, c sqlColumn) (int, uint64) {
	if c.q1 < 0 {
		return f, lowBits(a.frames[f].n)
	}
	for g := f; g >= 0; g = int(a.frames[g].parent) {
		if m := a.resolve(g, c); m != 0 {
			return g, m
		}
	}
	return -1, 0
}
