package sqlscope

// The statement model: statements, CTEs, set operations and SELECT scopes
// read from the tokens into a graph of table references, and the
// propagation that decides which references are scoped.

import (
	"strings"
)

// The analysis builds a small graph. Each table reference is a node, scoped
// when a predicate confines it to a tenant; a tenant-column equality t.c =
// u.c is an edge u → t ("t is scoped if u is"); a CTE or derived table has an
// extra node that is scoped when all the tables its body reads are, with an
// edge to each reference to it. A node's counter is how many of its
// incoming edges must be scoped before it is (1 for a table, the number of
// body tables for a CTE, 0 for one scoped from the start), so propagation is
// a single breadth-first pass, linear in nodes and edges.
type sqlNode struct {
	cfg     int32 // index into Scope.tables, -1 for any other table or a CTE body
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
// Scope so that a call allocates nothing but its result.
type sqlAnalyzer struct {
	s         *Scope
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
