package tenantguardprocessor

import (
	"context"
	"fmt"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/contexts/ottlresource"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/contexts/ottlscope"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/contexts/ottlspan"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/ottlfuncs"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/ptrace"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	nooptrace "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"
)

// allowConditions are allow rules written in OTTL, the collector's own
// condition language, in the span context: an exception can be as narrow as
// `resource.attributes["service.name"] == "admin-console" and
// IsMatch(span.name, "^GET /support/") and span.attributes["user.group"] == "support"`.
// A span that matches any of them exempts its trace.
//
// A condition costs in proportion to what it reads: its top-level `and`
// terms that read only the resource are evaluated once per ResourceSpans
// (in the resource context), those that read only the scope and resource
// once per ScopeSpans, and only the rest once per span, and only while the
// resource and scope terms hold. A condition on the resource alone is never
// evaluated per span.
type allowConditions struct {
	conds  []allowCondition
	logger *zap.Logger
}

// allowCondition is one condition split into its `and` terms by what they
// read. A term that errors is false, and so is its condition (as the whole
// condition would have been with the error ignored).
type allowCondition struct {
	name     string // allow.conditions[i]
	resource []*ottl.Condition[*ottlresource.TransformContext]
	scope    []*ottl.Condition[*ottlscope.TransformContext]
	span     []*ottl.Condition[*ottlspan.TransformContext]
}

// parseAllowConditions compiles the conditions once, at start (and in
// Validate, so a typo stops the collector with the condition's index).
func parseAllowConditions(conditions []string, set component.TelemetrySettings) (*allowConditions, error) {
	if len(conditions) == 0 {
		return nil, nil
	}
	spanParser, err := ottlspan.NewParser(ottlfuncs.StandardConverters[*ottlspan.TransformContext](), set)
	if err != nil {
		return nil, err
	}
	// Terms are parsed again on their own; what the parser warns about was
	// said when the whole condition was parsed.
	termParser, err := ottlspan.NewParser(ottlfuncs.StandardConverters[*ottlspan.TransformContext](), quiet(set))
	if err != nil {
		return nil, err
	}
	// The resource and scope parsers require context names on paths
	// (`resource.attributes`), so a span term written without one
	// (`attributes["x"]`, the span's own) is never taken for a resource term.
	resParser, err := ottlresource.NewParser(ottlfuncs.StandardConverters[*ottlresource.TransformContext](), quiet(set), ottlresource.EnablePathContextNames())
	if err != nil {
		return nil, err
	}
	scopeParser, err := ottlscope.NewParser(ottlfuncs.StandardConverters[*ottlscope.TransformContext](), quiet(set),
		// EnablePathContextNames leaves out the legacy instrumentation_scope.
		ottl.WithPathContextNames[*ottlscope.TransformContext]([]string{"scope", "instrumentation_scope", "resource", "otelcol"}))
	if err != nil {
		return nil, err
	}
	a := &allowConditions{logger: set.Logger}
	for i, text := range conditions {
		// The whole condition is parsed first: its error is the one a user
		// should see, and a split that the parser would not accept term by
		// term falls back to the whole condition, evaluated per span.
		whole, err := spanParser.ParseCondition(text)
		if err != nil {
			return nil, fmt.Errorf("allow.conditions[%d]: %w", i, err)
		}
		c := allowCondition{name: fmt.Sprintf("allow.conditions[%d]", i)}
		terms := splitAnd(text)
		spanTerms := make([]*ottl.Condition[*ottlspan.TransformContext], len(terms))
		for ti, term := range terms {
			if spanTerms[ti], err = termParser.ParseCondition(term); err != nil {
				terms, spanTerms = nil, nil
				break
			}
		}
		if len(terms) == 0 {
			terms, spanTerms = []string{text}, []*ottl.Condition[*ottlspan.TransformContext]{whole}
		}
		for ti, term := range terms {
			if rc, err := resParser.ParseCondition(term); err == nil {
				c.resource = append(c.resource, rc)
			} else if sc, err := scopeParser.ParseCondition(term); err == nil {
				c.scope = append(c.scope, sc)
			} else {
				c.span = append(c.span, spanTerms[ti])
			}
		}
		a.conds = append(a.conds, c)
	}
	return a, nil
}

// quiet drops the parse-time warnings of the parsers that read the terms: a
// term the resource or scope parser rejects is a span term, not a mistake,
// and parsing the whole condition has already reported what there is to
// report about it.
func quiet(set component.TelemetrySettings) component.TelemetrySettings {
	set.Logger = zap.NewNop()
	return set
}

// splitAnd splits an OTTL condition at its top-level `and`s: outside
// strings, parentheses, brackets and braces. It returns nil when there is
// nothing to split or when the condition has a top-level `or` (which binds
// looser than `and`, so the terms would not be conjuncts) or a string the
// lexer would not close. `and` and `or` are words as OTTL's lexer reads
// them: a run of ASCII letters, digits and _ that is exactly "and" or "or".
func splitAnd(text string) []string {
	var terms []string
	depth, start := 0, 0
	for i := 0; i < len(text); {
		c := text[i]
		switch {
		case c == '"':
			j := i + 1
			for j < len(text) && text[j] != '"' {
				if text[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(text) {
				return nil
			}
			i = j + 1
		case c == '(' || c == '[' || c == '{':
			depth++
			i++
		case c == ')' || c == ']' || c == '}':
			depth--
			i++
		case isWordByte(c):
			j := i
			for j < len(text) && isWordByte(text[j]) {
				j++
			}
			if depth == 0 {
				switch text[i:j] {
				case "or":
					return nil
				case "and":
					terms = append(terms, text[start:i])
					start = j
				}
			}
			i = j
		default:
			i++
		}
	}
	if len(terms) == 0 {
		return nil
	}
	return append(terms, text[start:])
}

func isWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// allowState is what one request's walk knows about the allow conditions:
// which are still open for the current ResourceSpans and ScopeSpans. The
// extractor keeps one per request (in its pooled scratch) and resets it
// before each, so it never compares a request's pdata with an earlier one's.
type allowState struct {
	rs       ptrace.ResourceSpans
	ss       ptrace.ScopeSpans
	resOpen  []bool // by condition: its resource terms hold for rs
	open     []bool // ... and its scope terms hold for ss
	anyOpen  bool
	resValid bool
	ssValid  bool
}

func (st *allowState) reset() {
	st.rs, st.ss, st.resValid, st.ssValid = ptrace.ResourceSpans{}, ptrace.ScopeSpans{}, false, false
}

// match names the first condition the span satisfies, or "".
func (a *allowConditions) match(st *allowState, rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, sp ptrace.Span) string {
	if len(st.open) != len(a.conds) {
		st.resOpen, st.open = make([]bool, len(a.conds)), make([]bool, len(a.conds))
		st.resValid = false
	}
	if !st.resValid || st.rs != rs {
		st.rs, st.resValid, st.ssValid = rs, true, false
		a.evalResource(st.resOpen, rs)
	}
	if !st.ssValid || st.ss != ss {
		st.ss, st.ssValid = ss, true
		st.anyOpen = a.evalScope(st.open, st.resOpen, rs, ss)
	}
	if !st.anyOpen {
		return ""
	}
	var tc *ottlspan.TransformContext
	name := ""
	for i := range a.conds {
		if !st.open[i] {
			continue
		}
		c := &a.conds[i]
		if len(c.span) > 0 && tc == nil {
			tc = ottlspan.NewTransformContext(rs, ss, sp)
		}
		if evalAll(a, c, c.span, tc) {
			name = c.name
			break
		}
	}
	if tc != nil {
		tc.Close()
	}
	return name
}

// evalResource sets open[i] when condition i's resource terms hold for rs.
func (a *allowConditions) evalResource(open []bool, rs ptrace.ResourceSpans) {
	var tc *ottlresource.TransformContext
	for i := range a.conds {
		c := &a.conds[i]
		if len(c.resource) > 0 && tc == nil {
			tc = ottlresource.NewTransformContext(rs.Resource(), rs)
		}
		open[i] = evalAll(a, c, c.resource, tc)
	}
	if tc != nil {
		tc.Close()
	}
}

// evalScope sets open[i] when resOpen[i] holds and condition i's scope
// terms hold for ss, and reports whether any condition is open.
func (a *allowConditions) evalScope(open, resOpen []bool, rs ptrace.ResourceSpans, ss ptrace.ScopeSpans) bool {
	var tc *ottlscope.TransformContext
	anyOpen := false
	for i := range a.conds {
		c := &a.conds[i]
		open[i] = resOpen[i]
		if open[i] && len(c.scope) > 0 {
			if tc == nil {
				tc = ottlscope.NewTransformContext(ss.Scope(), rs.Resource(), ss, rs)
			}
			open[i] = evalAll(a, c, c.scope, tc)
		}
		anyOpen = anyOpen || open[i]
	}
	if tc != nil {
		tc.Close()
	}
	return anyOpen
}

// evalAll reports whether every term holds; a term that errors is logged
// (as the collector's condition sequences do in ignore mode) and is false.
func evalAll[K any](a *allowConditions, c *allowCondition, terms []*ottl.Condition[K], tc K) bool {
	for _, t := range terms {
		ok, err := t.Eval(context.Background(), tc)
		if err != nil {
			a.logger.Warn("failed to eval condition", zap.Error(err), zap.String("condition", c.name))
			return false
		}
		if !ok {
			return false
		}
	}
	return true
}

// nopTelemetry is enough to parse conditions during Validate.
func nopTelemetry() component.TelemetrySettings {
	return component.TelemetrySettings{
		Logger:         zap.NewNop(),
		TracerProvider: nooptrace.NewTracerProvider(),
		MeterProvider:  noopmetric.NewMeterProvider(),
	}
}
