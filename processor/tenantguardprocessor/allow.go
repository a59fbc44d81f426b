package tenantguardprocessor

import (
	"context"
	"fmt"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl"
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
type allowConditions struct {
	conds []*ottl.Condition[*ottlspan.TransformContext]
	names []string
	seq   []ottl.ConditionSequence[*ottlspan.TransformContext]
}

// parseAllowConditions compiles the conditions once, at start (and in
// Validate, so a typo stops the collector with the condition's index).
func parseAllowConditions(conditions []string, set component.TelemetrySettings) (*allowConditions, error) {
	if len(conditions) == 0 {
		return nil, nil
	}
	parser, err := ottlspan.NewParser(ottlfuncs.StandardConverters[*ottlspan.TransformContext](), set)
	if err != nil {
		return nil, err
	}
	a := &allowConditions{}
	for i, text := range conditions {
		c, err := parser.ParseCondition(text)
		if err != nil {
			return nil, fmt.Errorf("allow.conditions[%d]: %w", i, err)
		}
		a.conds = append(a.conds, c)
		a.names = append(a.names, fmt.Sprintf("allow.conditions[%d]", i))
		a.seq = append(a.seq, ottl.NewConditionSequence([]*ottl.Condition[*ottlspan.TransformContext]{c}, set,
			ottl.WithConditionSequenceErrorMode[*ottlspan.TransformContext](ottl.IgnoreError)))
	}
	return a, nil
}

// match names the first condition the span satisfies, or "".
func (a *allowConditions) match(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, sp ptrace.Span) string {
	tc := ottlspan.NewTransformContext(rs, ss, sp)
	defer tc.Close()
	for i := range a.seq {
		if ok, err := a.seq[i].Eval(context.Background(), tc); err == nil && ok {
			return a.names[i]
		}
	}
	return ""
}

// nopTelemetry is enough to parse conditions during Validate.
func nopTelemetry() component.TelemetrySettings {
	return component.TelemetrySettings{
		Logger:         zap.NewNop(),
		TracerProvider: nooptrace.NewTracerProvider(),
		MeterProvider:  noopmetric.NewMeterProvider(),
	}
}
