package alerts

import (
	"context"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

// Notifier delivers findings to people. Notify is called from the
// processor's alert worker, never from the span path, once per version of a
// finding as it is raised (versions raised while the worker is busy
// coalesce), whatever the state of the evidence store; it may block (a slow
// disk) without slowing telemetry. The worker is one goroutine, so Notify
// is never called concurrently with itself and what only Notify touches
// needs no lock; state that other goroutines also read (the Slack
// notifier's Pending, at scrape time) is the implementation's to guard.
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

// Notify implements Notifier. Only Notify touches the seen set, and it is
// never called concurrently (see Notifier), so the set needs no lock.
func (n *LogNotifier) Notify(_ context.Context, ev *store.Evidence) error {
	first := !n.seen[ev.LeakID]
	n.seen[ev.LeakID] = true
	open := ev.Status == string(detector.StatusOpen)
	if !open {
		delete(n.seen, ev.LeakID)
	}
	var lvl zapcore.Level
	var prefix string
	switch {
	case ev.Status == string(detector.StatusAllowed):
		lvl, prefix = zapcore.InfoLevel, "tenant isolation finding withdrawn: "
	case first && open:
		lvl, prefix = zapcore.WarnLevel, "tenant isolation finding: "
	default:
		lvl, prefix = zapcore.InfoLevel, "tenant isolation finding updated: "
	}
	// The sentence and fields are built only for a level the log keeps: a
	// collector logging at warn skips every update, and a leak storm makes
	// many. (Check would ask a sampling core too, which keys on the
	// message, so it is the level alone that is asked here.)
	if !n.logger.Core().Enabled(lvl) {
		return nil
	}
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
	if ev.Status == string(detector.StatusAllowed) {
		fields = append(fields, zap.String("allowed_by", ev.AllowedBy))
	}
	n.logger.Log(lvl, prefix+ev.Message(store.Plain), fields...)
	return nil
}
