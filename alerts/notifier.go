package alerts

import (
	"context"

	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/detector"
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
	open := ev.Status == string(detector.StatusOpen)
	if !open {
		delete(n.seen, ev.LeakID)
	}
	msg := ev.Message(store.Plain)
	switch {
	case ev.Status == string(detector.StatusAllowed):
		n.logger.Info("tenant isolation finding withdrawn: "+msg, append(fields, zap.String("allowed_by", ev.AllowedBy))...)
	case first && open:
		n.logger.Warn("tenant isolation finding: "+msg, fields...)
	default:
		n.logger.Info("tenant isolation finding updated: "+msg, fields...)
	}
	return nil
}
