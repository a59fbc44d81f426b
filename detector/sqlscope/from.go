package sqlscope

// FROM lists and joins: the table references of a scope and what their
// ON and USING clauses say.

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
