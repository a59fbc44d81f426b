package sqlscope

// The lexer: a statement's text as tokens (words, quoted names, strings,
// numbers, placeholders, operators and parentheses), comments and string
// contents skipped, so that nothing inside them is read as SQL.

import (
	"slices"
	"strings"
)

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
		switch c := q[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case i+1 < n && ((c == '-' && q[i+1] == '-') || (c == '/' && q[i+1] == '*')):
			var ok bool
			if i, ok = skipComment(q, i, cut); !ok {
				return false
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
		var ok bool
		if i, ok = lexToken(q, i, t, toks[:len(toks)-1], cut); !ok {
			return false
		}
	}
	a.toks = toks
	return true
}

// skipComment returns the index after the -- or /* comment at q[i]. An
// unterminated block comment is not understood, unless the text was cut.
func skipComment(q string, i int, cut bool) (int, bool) {
	if q[i] == '-' {
		j := strings.IndexByte(q[i:], '\n')
		if j < 0 {
			return len(q), true
		}
		return i + j + 1, true
	}
	j := strings.Index(q[i+2:], "*/")
	if j < 0 {
		return len(q), cut
	}
	return i + j + 4, true
}

// lexToken reads the token that starts at q[i] into t (prev are the tokens
// before it) and returns where the next one starts. It fails on an
// unterminated string or quoted name, unless the text was cut.
func lexToken(q string, i int, t *sqlTok, prev []sqlTok, cut bool) (int, bool) {
	n := len(q)
	switch c := q[i]; {
	case c == '\'':
		return lexString(q, i, t, cut)
	case c == '"' || c == '`' || (c == '[' && bracketQuotes(prev)):
		return lexQuotedName(q, i, t, cut)
	case sqlWordByte[c] && c != '$' && (c < '0' || c > '9'):
		return lexWord(q, i, t, cut)
	case '0' <= c && c <= '9':
		return lexNumber(q, i, t), true
	case c == '$':
		return lexDollar(q, i, t, cut)
	case c == '?':
		j := i + 1
		for j < n && '0' <= q[j] && q[j] <= '9' {
			j++
		}
		t.kind, t.end = tkParam, int32(j)
		return j, true
	case c == ':' && i+1 < n && q[i+1] == ':':
		t.kind, t.kw, t.end = tkOp, opCast, int32(i+2)
		return i + 2, true
	case (c == ':' || c == '@') && i+1 < n && (sqlWordByte[q[i+1]] || (c == '@' && q[i+1] == '@')):
		j := i + 1
		if q[j] == '@' {
			j++
		}
		for j < n && sqlWordByte[q[j]] {
			j++
		}
		t.kind, t.end = tkParam, int32(j)
		return j, true
	case c == '%' && i+1 < n && printfVerb(q, i+1):
		j := i + 1 // the verb, after %(name) if there is one
		if q[j] == '(' {
			j += strings.IndexByte(q[j:], ')') + 1
		}
		t.kind, t.end = tkParam, int32(j+1)
		return j + 1, true
	case c == '=' || c == '<' || c == '>' || c == '!':
		return lexComparison(q, i, t), true
	case c == '(':
		t.kind = tkLParen
	case c == ')':
		t.kind = tkRParen
	case c == ',':
		t.kind = tkComma
	case c == ';':
		t.kind = tkSemi
	case c == '.':
		t.kind = tkDot
	case c > ' ' && c < 0x7f:
		t.kind, t.kw = tkOp, c
	default:
		t.kind = tkOther
	}
	t.end = int32(i + 1)
	return i + 1, true
}

// lexString reads a string literal whose opening quote is at q[quote].
func lexString(q string, quote int, t *sqlTok, cut bool) (int, bool) {
	j, ok := skipQuoted(q, quote+1, '\'', true)
	if !ok && !cut {
		return 0, false
	}
	t.kind, t.start, t.end = tkString, int32(quote+1), int32(max(j-1, quote+1))
	return j, true
}

// lexQuotedName reads "name", `name` or [name].
func lexQuotedName(q string, i int, t *sqlTok, cut bool) (int, bool) {
	c := q[i]
	closing := c
	if c == '[' {
		closing = ']'
	}
	j, ok := skipQuoted(q, i+1, closing, false)
	if !ok && !cut {
		return 0, false
	}
	t.kind, t.start, t.end, t.quote = tkQuoted, int32(i+1), int32(max(j-1, i+1)), c
	if !ok {
		t.end = int32(len(q))
	}
	t.hash = foldHash(q[t.start:t.end])
	return j, true
}

// lexWord reads a bare word, a keyword or not, or a string with a one-letter
// prefix (E'...', N'...', X'...', B'...').
func lexWord(q string, i int, t *sqlTok, cut bool) (int, bool) {
	n := len(q)
	j := i + 1
	for j < n && sqlWordByte[q[j]] {
		j++
	}
	if j < n && q[j] == '\'' && j-i == 1 && strings.IndexByte("eEnNxXbB", q[i]) >= 0 {
		return lexString(q, j, t, cut)
	}
	t.kind, t.end, t.hash = tkIdent, int32(j), foldHash(q[i:j])
	if j-i <= maxKeywordLen {
		t.kw = keywordOf(t.hash, q[i:j])
	}
	return j, true
}

// lexNumber reads a decimal, hexadecimal or exponent number; digits running
// into letters are one word (1orders is a name in MySQL).
func lexNumber(q string, i int, t *sqlTok) int {
	n := len(q)
	j := i
	for j < n && '0' <= q[j] && q[j] <= '9' {
		j++
	}
	if j < n && j == i+1 && q[i] == '0' && (q[j] == 'x' || q[j] == 'X') {
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
		for j < n && sqlWordByte[q[j]] {
			j++
		}
		t.kind = tkIdent
		t.hash = foldHash(q[i:j])
	}
	t.end = int32(j)
	return j
}

// lexDollar reads a dollar-quoted string ($$...$$, $tag$...$tag$), a
// positional parameter ($1) or a lone $.
func lexDollar(q string, i int, t *sqlTok, cut bool) (int, bool) {
	n := len(q)
	j := i + 1
	for j < n && sqlWordByte[q[j]] && q[j] != '$' {
		j++
	}
	switch {
	case j < n && q[j] == '$' && (j == i+1 || q[i+1] < '0' || q[i+1] > '9'):
		tag := q[i : j+1]
		k := strings.Index(q[j+1:], tag)
		if k < 0 {
			if !cut {
				return 0, false
			}
			t.kind, t.start, t.end = tkString, int32(j+1), int32(n)
			return n, true
		}
		t.kind, t.start, t.end = tkString, int32(j+1), int32(j+1+k)
		return j + 1 + k + len(tag), true
	case j > i+1:
		t.kind, t.end = tkParam, int32(j)
		return j, true
	}
	t.kind, t.kw, t.end = tkOp, '$', int32(i+1)
	return i + 1, true
}

// lexComparison reads =, ==, <=>, <>, !=, <, >, <=, >= or a lone !.
func lexComparison(q string, i int, t *sqlTok) int {
	c := q[i]
	two := ""
	if i+1 < len(q) {
		two = q[i : i+2]
	}
	t.kind = tkOp
	switch {
	case i+2 < len(q) && q[i:i+3] == "<=>":
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
	return i
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
