package sqlscope

// The scope checks: which tables a WHERE or ON condition confines to one
// tenant (equalities on the tenant column, conjunctions, ORs whose every
// branch carries the predicate, row values and IN lists).

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
