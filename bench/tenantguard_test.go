package bench

import (
	"maps"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/bench/benchkit"
	tenantguard "github.com/tenantguard/tenantguard/processor/tenantguardprocessor"
)

// Optional tenantguard rules, each with the config that turns it on. A
// processor/tenantguardprocessor/config.go without these keys skips the sub-benchmarks that use
// them (benchkit.New), with a message saying so.
var optionalRules = []struct {
	name string
	cfg  map[string]any
}{
	{"derivation", map[string]any{
		"tenant_derivations": []any{map[string]any{"attribute": "url.path", "regex": `^/t/(?P<tenant>[^/]+)/`}},
	}},
	{"unscoped_query", map[string]any{
		"unscoped_query": map[string]any{"tables": []any{"orders", "stock", "invoices"}, "tenant_column": "tenant_id"},
	}},
	{"allow_ottl", map[string]any{
		"allow": map[string]any{"conditions": []any{
			`resource.attributes["service.name"] == "admin-console" and IsMatch(span.name, "^GET /support/")`,
		}},
	}},
}

// allOptional turns every optional rule on at once.
func allOptional() map[string]any {
	out := map[string]any{}
	for _, r := range optionalRules {
		maps.Copy(out, r.cfg)
	}
	return out
}

type tgOpts struct {
	idle      time.Duration
	maxTraces int
	rules     map[string]any
	metrics   string // metrics endpoint; "" turns the server off
	name      string
	logger    *zap.Logger
	journal   string // the journal's directory; "": benchkit.DiskDir
}

// newTenantguard builds the processor through its factory with the
// reference settings: default rules, the journal in a temporary directory
// on a disk (benchkit.DiskDir),
// the log notifier on (as by default), no metrics server unless asked.
func newTenantguard(tb testing.TB, o tgOpts) *benchkit.Harness {
	if o.idle == 0 {
		o.idle = benchkit.TenantguardIdle
	}
	if o.maxTraces == 0 {
		o.maxTraces = 100_000
	}
	if o.journal == "" {
		o.journal = benchkit.DiskDir(tb)
	}
	cfg := map[string]any{
		"store":       map[string]any{"journal": map[string]any{"path": filepath.Join(o.journal, "leaks.jsonl")}},
		"metrics":     map[string]any{"endpoint": o.metrics},
		"alerts":      map[string]any{"log": map[string]any{"enabled": true}},
		"max_traces":  o.maxTraces,
		"idle_window": o.idle.String(),
		"instance":    "bench",
	}
	for k, v := range o.rules {
		if m, ok := v.(map[string]any); ok {
			if cur, ok := cfg[k].(map[string]any); ok {
				merged := maps.Clone(cur)
				maps.Copy(merged, m)
				v = merged
			}
		}
		cfg[k] = v
	}
	return benchkit.New(tb, benchkit.Tenantguard, benchkit.Options{
		Factory: tenantguard.NewFactory(), Config: cfg, Name: o.name, Logger: o.logger, Wait: o.idle,
	})
}
