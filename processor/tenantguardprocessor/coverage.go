package tenantguardprocessor

import (
	"time"

	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

// maxPendingCoverage bounds the coverage records kept in memory while the
// coverage file cannot be written (a full disk): a day of a thousand
// tenants. Beyond it the oldest are dropped, and the log says so.
const maxPendingCoverage = 24 * 1000

// coverageLog writes the detector's hourly coverage records to the
// coverage file next to the journal. Only the sweep loop uses it.
type coverageLog struct {
	path      string
	collector string
	logger    *zap.Logger
	pending   []store.Coverage
}

func newCoverageLog(cfg *Config, logger *zap.Logger) *coverageLog {
	if cfg.Coverage.MaxTenants <= 0 {
		return nil
	}
	return &coverageLog{path: store.CoveragePath(cfg.Store.Journal.Path), collector: cfg.Instance, logger: logger}
}

// write takes the hours that ended before now from the detector (every
// hour when final, at shutdown after the detector was flushed) and appends
// them to the coverage file. Records that cannot be written are kept and
// tried again at the next sweep. It reports whether it wrote any.
func (c *coverageLog) write(det *detector.Detector, now time.Time, final bool) bool {
	if c == nil {
		return false
	}
	before := now.Truncate(time.Hour)
	if final {
		before = time.Time{}
	}
	for _, r := range det.TakeCoverage(before) {
		c.pending = append(c.pending, toCoverage(&r, c.collector))
	}
	if len(c.pending) == 0 {
		return false
	}
	if over := len(c.pending) - maxPendingCoverage; over > 0 {
		c.logger.Error("coverage file unwritable for too long: oldest coverage records dropped",
			zap.Int("dropped", over), zap.String("path", c.path))
		c.pending = append(c.pending[:0], c.pending[over:]...)
	}
	if err := store.AppendCoverage(c.path, c.pending); err != nil {
		c.logger.Warn("coverage records not written; kept in memory and retried", zap.Error(err), zap.Int("pending", len(c.pending)))
		return false
	}
	c.pending = c.pending[:0]
	return true
}

// toCoverage is the stored form of one tenant-hour.
func toCoverage(r *detector.TenantHour, collector string) store.Coverage {
	c := store.Coverage{
		Collector:          collector,
		Hour:               r.Hour.UTC(),
		Tenant:             r.Tenant,
		Traces:             r.Counts.Traces,
		Spans:              r.Counts.Spans,
		SpansMissingTenant: r.Counts.SpansMissingTenant,
		CrossingsSucceeded: r.Counts.CrossingsSucceeded,
		CrossingsRefused:   r.Counts.CrossingsRefused,
		UnscopedQueries:    r.Counts.UnscopedQueries,
	}
	if len(r.Services) > 0 {
		c.Services = make(map[string]store.ServiceCoverage, len(r.Services))
		for name, s := range r.Services {
			c.Services[name] = store.ServiceCoverage{Traces: s.Traces, TracesWithoutTenant: s.TracesWithoutTenant}
		}
	}
	return c
}
