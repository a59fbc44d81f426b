package alerts

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/store"
)

// Notifier delivers findings to people. Notify is called from the
// processor's alert worker, never from the span path, once per version of a
// finding as it is raised (versions raised while the worker is busy
// coalesce), whatever the state of the evidence store; it may block (a slow
// disk) without slowing telemetry. Implementations must be safe for
// concurrent use.
type Notifier interface {
	// Name identifies the notifier in logs and metrics ("log", "slack").
	Name() string
	// Notify delivers one version of a finding.
	Notify(ctx context.Context, ev *store.Evidence) error
}

// LogNotifier writes findings to the collector's log: the first version of
// an open finding at warn level, later versions at info.
type LogNotifier struct {
	logger *zap.Logger
	seen   map[string]bool
}

// NewLogNotifier returns a notifier that writes to logger.
func NewLogNotifier(logger *zap.Logger) *LogNotifier {
	return &LogNotifier{logger: logger, seen: map[string]bool{}}
}

// Name implements Notifier.
func (*LogNotifier) Name() string { return "log" }

// Notify implements Notifier. The alert worker calls it from one
// goroutine, so the seen set needs no lock.
func (n *LogNotifier) Notify(_ context.Context, ev *store.Evidence) error {
	fields := []zap.Field{
		zap.String("leak_id", ev.LeakID),
		zap.String("rule", ev.Rule),
		zap.String("severity", ev.Severity),
		zap.String("status", ev.Status),
		zap.String("trace_id", ev.TraceID),
		zap.Strings("tenants", ev.Tenants),
		zap.Int("crossing_edges", len(ev.CrossingEdges)),
		zap.Int("span_count", ev.SpanCount),
	}
	first := !n.seen[ev.LeakID]
	n.seen[ev.LeakID] = true
	if ev.Status != "open" {
		delete(n.seen, ev.LeakID)
	}
	switch {
	case ev.Status == "allowed":
		n.logger.Info("finding withdrawn by allow rule: "+Summary(ev), append(fields, zap.String("allowed_by", ev.AllowedBy))...)
	case first && ev.Status == "open":
		n.logger.Warn("tenant isolation finding: "+Summary(ev), fields...)
	default:
		n.logger.Info("tenant isolation finding updated: "+Summary(ev), fields...)
	}
	return nil
}

// Summary is the one-line story of a finding, in on-call's words:
// "trace 4bf92f35… went from tenant acme (gateway `GET /inventory`) into
// tenant globex (inventory-svc `SELECT stock`)".
func Summary(ev *store.Evidence) string {
	tid := ev.TraceID
	if len(tid) > 8 {
		tid = tid[:8] + "…"
	}
	switch {
	case ev.Rule == "tenant_mismatch" && len(ev.Mismatches) > 0:
		m := ev.Mismatches[0]
		var vals []string
		for _, v := range m.Values {
			vals = append(vals, fmt.Sprintf("%s=%s", v.Key, v.Tenant))
		}
		return fmt.Sprintf("trace %s: span %s `%s` carries disagreeing tenants (%s)", tid, m.Service, m.Span, strings.Join(vals, ", "))
	case len(ev.CrossingEdges) > 0:
		e := ev.CrossingEdges[0]
		s := fmt.Sprintf("trace %s went from tenant %s (%s `%s`) into tenant %s (%s `%s`)",
			tid, e.From.Tenant, e.From.Service, e.From.Span, e.To.Tenant, e.To.Service, e.To.Span)
		if more := len(ev.CrossingEdges) - 1; more > 0 {
			s += fmt.Sprintf(" and %d more crossing edge(s)", more)
		}
		return s
	default:
		return fmt.Sprintf("trace %s touched tenants %s", tid, strings.Join(ev.Tenants, ", "))
	}
}
