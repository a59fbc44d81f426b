package detector

import (
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// derivePattern is a derivation's compiled pattern with the cheap checks in
// front of it, so that a derivation costs a span little more than reading
// its attribute.
//
// Patterns of the usual shape (an optional ^, a literal, the tenant group as
// one run of a character class, then optionally a literal and $), such as
// ^/t/(?P<tenant>[^/]+)/ or ^(?P<tenant>[a-z0-9-]+)\.example\.com$, are matched by a scan that gives regexp's leftmost-first answer without
// the regexp engine, whose submatch API allocates the index slice on every
// match. The scan applies when the run's end is forced: the class excludes
// the first character of the literal after the group (and, unanchored, of
// the literal before it), so the greedy run is the only one that can match.
// Every other pattern runs the regexp, after a check that the literal all of
// its matches begin with is in the value.
type derivePattern struct {
	re       *regexp.Regexp
	group    int    // the tenant group's index
	anchored bool   // the pattern begins with ^: a match starts at 0
	prefix   string // every match begins with it
	run      *classRun
}

// classRun is the tenant group of a pattern the scan matches:
// prefix (?P<tenant>class+ or class*) follow, then $ if end.
type classRun struct {
	min    int       // runes the group needs: 1 for +, 0 for *
	ascii  [2]uint64 // the class's members below utf8.RuneSelf
	ranges []rune    // the class as lo, hi pairs (syntax.Regexp.Rune)
	follow string    // the literal after the group, "" for none
	end    bool      // $ after the group and follow
}

func newDerivePattern(re *regexp.Regexp, group int, parsed *syntax.Regexp) *derivePattern {
	p := &derivePattern{re: re, group: group}
	subs := []*syntax.Regexp{parsed}
	if parsed.Op == syntax.OpConcat {
		subs = parsed.Sub
	}
	if len(subs) > 0 && subs[0].Op == syntax.OpBeginText {
		p.anchored = true
		subs = subs[1:]
	}
	p.prefix, _ = re.LiteralPrefix()
	p.run = scanShape(p.anchored, subs, group)
	if p.run != nil {
		p.prefix = plainLiteral(subs[0])
	}
	return p
}

// scanShape returns the run of a pattern of the scanned shape (subs are
// the pattern's parts after ^), or nil.
func scanShape(anchored bool, subs []*syntax.Regexp, group int) *classRun {
	prefix := ""
	if len(subs) > 0 && subs[0].Op == syntax.OpLiteral {
		if prefix = plainLiteral(subs[0]); prefix == "" {
			return nil
		}
		subs = subs[1:]
	}
	if len(subs) == 0 || subs[0].Op != syntax.OpCapture || subs[0].Cap != group {
		return nil
	}
	rep := subs[0].Sub[0]
	if (rep.Op != syntax.OpPlus && rep.Op != syntax.OpStar) || rep.Flags&syntax.NonGreedy != 0 {
		return nil
	}
	r := &classRun{}
	if rep.Op == syntax.OpPlus {
		r.min = 1
	}
	switch class := rep.Sub[0]; class.Op {
	case syntax.OpCharClass:
		r.ranges = class.Rune
	case syntax.OpAnyCharNotNL:
		r.ranges = []rune{0, '\n' - 1, '\n' + 1, utf8.MaxRune}
	case syntax.OpAnyChar:
		r.ranges = []rune{0, utf8.MaxRune}
	default:
		return nil
	}
	for c := rune(0); c < utf8.RuneSelf; c++ {
		if r.has(c) {
			r.ascii[c>>6] |= 1 << (c & 63)
		}
	}
	subs = subs[1:]
	if len(subs) > 0 && subs[0].Op == syntax.OpLiteral {
		if r.follow = plainLiteral(subs[0]); r.follow == "" || r.has(rune(r.follow[0])) {
			return nil
		}
		subs = subs[1:]
	}
	if len(subs) > 0 && subs[0].Op == syntax.OpEndText {
		r.end = true
		subs = subs[1:]
	}
	if len(subs) > 0 {
		return nil
	}
	// Unanchored, a match may start at any occurrence of the prefix; the
	// class must stop the run at the next one.
	if !anchored && (prefix == "" || r.has(rune(prefix[0]))) {
		return nil
	}
	return r
}

// plainLiteral is the text of a case-sensitive ASCII literal, or "".
func plainLiteral(re *syntax.Regexp) string {
	if re.Op != syntax.OpLiteral || re.Flags&syntax.FoldCase != 0 {
		return ""
	}
	var b strings.Builder
	for _, c := range re.Rune {
		if c >= utf8.RuneSelf {
			return ""
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}

func (r *classRun) has(c rune) bool {
	for i := 0; i+1 < len(r.ranges); i += 2 {
		if c < r.ranges[i] {
			return false
		}
		if c <= r.ranges[i+1] {
			return true
		}
	}
	return false
}

// span returns where the class's run starting at i ends. It reads runes as
// the regexp engine does: an invalid byte is utf8.RuneError, one byte wide.
func (r *classRun) span(v string, i int) int {
	for i < len(v) {
		if c := v[i]; c < utf8.RuneSelf {
			if r.ascii[c>>6]&(1<<(c&63)) == 0 {
				return i
			}
			i++
			continue
		}
		c, w := utf8.DecodeRuneInString(v[i:])
		if !r.has(c) {
			return i
		}
		i += w
	}
	return i
}

// find returns the tenant group [lo, hi) of the leftmost match in v and
// where that match ends.
func (p *derivePattern) find(v string) (lo, hi, end int, ok bool) {
	if p.anchored && !strings.HasPrefix(v, p.prefix) || !p.anchored && !strings.Contains(v, p.prefix) {
		return 0, 0, 0, false
	}
	if r := p.run; r != nil {
		// Runs from occurrences of the prefix that overlap each other may be
		// read more than once; past a budget linear in v, the regexp (which
		// is linear) takes over.
		budget := 2*len(v) + 64
		for from := 0; budget >= 0; {
			at := 0
			if !p.anchored {
				i := strings.Index(v[from:], p.prefix)
				if i < 0 {
					return 0, 0, 0, false
				}
				at = from + i
			}
			lo = at + len(p.prefix)
			hi = r.span(v, lo)
			end = hi + len(r.follow)
			if (hi > lo || r.min == 0) && strings.HasPrefix(v[hi:], r.follow) && (!r.end || end == len(v)) {
				return lo, hi, end, true
			}
			if p.anchored {
				return 0, 0, 0, false
			}
			budget -= hi - lo + 1
			from = at + 1
		}
	}
	m := p.re.FindStringSubmatchIndex(v)
	if m == nil || m[2*p.group] < 0 {
		return 0, 0, 0, false
	}
	return m[2*p.group], m[2*p.group+1], m[1], true
}
