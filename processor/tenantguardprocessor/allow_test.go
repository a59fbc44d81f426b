package tenantguardprocessor

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/contexts/ottlspan"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/ottlfuncs"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

func TestSplitAnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`a == 1`, nil},
		{`a == 1 and b == 2`, []string{`a == 1 `, ` b == 2`}},
		{`not a and (b or c) and IsMatch(d, "x and y or z")`, []string{`not a `, ` (b or c) `, ` IsMatch(d, "x and y or z")`}},
		{`a and b or c`, nil}, // (a and b) or c: the terms are not conjuncts
		{`a["and"] == "or" and b`, []string{`a["and"] == "or" `, ` b`}},
		{`a == "q\"and" and b`, []string{`a == "q\"and" `, ` b`}},
		{`android == 1 and x_and == 2 and Xand`, []string{`android == 1 `, ` x_and == 2 `, ` Xand`}},
		{`a == "unclosed and b`, nil},
		{`Any(s, (x) => x and y) and z`, []string{`Any(s, (x) => x and y) `, ` z`}},
	} {
		if got := splitAnd(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("splitAnd(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Each term goes where it is cheapest to evaluate; a term on the span's own
// attributes written without a context name is a span term, never taken for
// the resource's attributes.
func TestAllowConditionTerms(t *testing.T) {
	for _, tc := range []struct {
		cond                  string
		resource, scope, span int
	}{
		{`resource.attributes["service.name"] == "admin-console"`, 1, 0, 0},
		{`resource.attributes["service.name"] == "admin-console" and IsMatch(span.name, "^GET /support/")`, 1, 0, 1},
		{`instrumentation_scope.name == "otelhttp" and resource.attributes["a"] == "b"`, 1, 1, 0},
		{`attributes["service.name"] == "admin-console"`, 0, 0, 1},
		{`resource.attributes["a"] == "b" or span.name == "x"`, 0, 0, 1},
		{`(resource.attributes["a"] == "b" or resource.attributes["a"] == "c") and kind == SPAN_KIND_SERVER`, 1, 0, 1},
	} {
		a, err := parseAllowConditions([]string{tc.cond}, nopTelemetry())
		if err != nil {
			t.Fatalf("%s: %v", tc.cond, err)
		}
		c := a.conds[0]
		if len(c.resource) != tc.resource || len(c.scope) != tc.scope || len(c.span) != tc.span {
			t.Errorf("%s: %d resource, %d scope, %d span terms; want %d, %d, %d",
				tc.cond, len(c.resource), len(c.scope), len(c.span), tc.resource, tc.scope, tc.span)
		}
	}
}

// allowTraffic is a request with resources, scopes and spans that the
// conditions of TestAllowMatchesAsTheWholeCondition tell apart.
func allowTraffic() ptrace.Traces {
	td := ptrace.NewTraces()
	for _, svc := range []string{"admin-console", "orders-svc", ""} {
		rs := td.ResourceSpans().AppendEmpty()
		if svc != "" {
			rs.Resource().Attributes().PutStr("service.name", svc)
		}
		rs.Resource().Attributes().PutStr("team", "support")
		for _, scope := range []string{"otelhttp", "db"} {
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName(scope)
			for _, name := range []string{"GET /support/tickets", "GET /orders", "SELECT"} {
				for _, group := range []string{"support", "staff", ""} {
					sp := ss.Spans().AppendEmpty()
					sp.SetName(name)
					sp.SetKind(ptrace.SpanKindServer)
					if group != "" {
						sp.Attributes().PutStr("user.group", group)
					}
					sp.Attributes().PutStr("service.name", "span-level-"+svc)
				}
			}
		}
	}
	return td
}

// Split evaluation decides exactly as evaluating each whole condition on
// each span in the span context did: the same first matching condition for
// every span, whatever mix of resource, scope and span terms, `or`, `not`,
// and terms that error (a string added to a number).
func TestAllowMatchesAsTheWholeCondition(t *testing.T) {
	conditions := []string{
		`resource.attributes["service.name"] == "admin-console" and IsMatch(span.name, "^GET /support/") and span.attributes["user.group"] == "support"`,
		`resource.attributes["service.name"] == "orders-svc" and instrumentation_scope.name == "db"`,
		`not (resource.attributes["service.name"] == "orders-svc") and attributes["user.group"] == "staff" and name == "GET /orders"`,
		`resource.attributes["team"] == "support" and resource.attributes["service.name"] == nil`,
		`resource.attributes["team"] + 1 > 2 and span.name == "SELECT"`,
		`span.name == "SELECT" and instrumentation_scope.name == "otelhttp" or resource.attributes["service.name"] == "orders-svc" and span.attributes["user.group"] == nil`,
		`attributes["service.name"] == "span-level-orders-svc" and instrumentation_scope.name == "otelhttp"`,
	}
	// Each condition alone, then all together (the first match wins).
	sets := [][]string{conditions}
	for _, c := range conditions {
		sets = append(sets, []string{c})
	}
	td := allowTraffic()
	for _, set := range sets {
		a, err := parseAllowConditions(set, nopTelemetry())
		if err != nil {
			t.Fatal(err)
		}
		whole := wholeConditions(t, set)
		var st allowState
		matched := 0
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, sp := range ss.Spans().All() {
					got, want := a.match(&st, rs, ss, sp), whole(rs, ss, sp)
					if got != want {
						t.Errorf("%q: span %q of %v/%q: matched %q, want %q", set, sp.Name(),
							rs.Resource().Attributes().AsRaw(), ss.Scope().Name(), got, want)
					}
					if got != "" {
						matched++
					}
				}
			}
		}
		if len(set) == len(conditions) && matched == 0 {
			t.Errorf("the traffic matches no condition: the comparison proves nothing")
		}
	}
}

// wholeConditions evaluates each condition whole, on the span, as the
// processor did before conditions were split.
func wholeConditions(t *testing.T, conditions []string) func(ptrace.ResourceSpans, ptrace.ScopeSpans, ptrace.Span) string {
	set := nopTelemetry()
	parser, err := ottlspan.NewParser(ottlfuncs.StandardConverters[*ottlspan.TransformContext](), set)
	if err != nil {
		t.Fatal(err)
	}
	var conds []func(*ottlspan.TransformContext) bool
	for _, text := range conditions {
		c, err := parser.ParseCondition(text)
		if err != nil {
			t.Fatal(err)
		}
		conds = append(conds, func(tc *ottlspan.TransformContext) bool {
			ok, err := c.Eval(context.Background(), tc)
			return err == nil && ok
		})
	}
	return func(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, sp ptrace.Span) string {
		tc := ottlspan.NewTransformContext(rs, ss, sp)
		defer tc.Close()
		for i, c := range conds {
			if c(tc) {
				return fmt.Sprintf("allow.conditions[%d]", i)
			}
		}
		return ""
	}
}

// A condition on the resource is evaluated once per ResourceSpans: a
// request of 2,000 spans under one resource costs a handful of allocations,
// not one (or more) per span, whether the resource matches or not.
func TestAllowResourceTermsOncePerResource(t *testing.T) {
	for _, cond := range []string{
		`resource.attributes["service.name"] == "admin-console"`,
		`resource.attributes["service.name"] == "orders-svc" and IsMatch(span.name, "^GET /support/")`,
	} {
		a, err := parseAllowConditions([]string{cond}, nopTelemetry())
		if err != nil {
			t.Fatal(err)
		}
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", "admin-console")
		ss := rs.ScopeSpans().AppendEmpty()
		for range 2000 {
			ss.Spans().AppendEmpty().SetName("GET /orders")
		}
		var st allowState
		allowed := 0
		allocs := testing.AllocsPerRun(5, func() {
			st.reset()
			allowed = 0
			for _, sp := range ss.Spans().All() {
				if a.match(&st, rs, ss, sp) != "" {
					allowed++
				}
			}
		})
		if want := map[bool]int{true: 2000, false: 0}[cond == `resource.attributes["service.name"] == "admin-console"`]; allowed != want {
			t.Errorf("%s: %d spans allowed, want %d", cond, allowed, want)
		}
		if allocs > 20 {
			t.Errorf("%s: %.0f allocations for 2,000 spans under one resource: evaluated per span", cond, allocs)
		}
	}
}

// Any number of conditions: the 70th still decides its resource's spans.
func TestAllowManyConditions(t *testing.T) {
	var conds []string
	for i := range 70 {
		conds = append(conds, fmt.Sprintf(`resource.attributes["shard"] == "%d" and span.name == "GET /%d"`, i, i))
	}
	a, err := parseAllowConditions(conds, nopTelemetry())
	if err != nil {
		t.Fatal(err)
	}
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("shard", "69")
	ss := rs.ScopeSpans().AppendEmpty()
	hit, miss := ss.Spans().AppendEmpty(), ss.Spans().AppendEmpty()
	hit.SetName("GET /69")
	miss.SetName("GET /68")
	var st allowState
	if got := a.match(&st, rs, ss, hit); got != "allow.conditions[69]" {
		t.Errorf("GET /69 under shard 69: matched %q", got)
	}
	if got := a.match(&st, rs, ss, miss); got != "" {
		t.Errorf("GET /68 under shard 69: matched %q", got)
	}
}
