package processor

import (
	"errors"
	"fmt"
	"time"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/detector"
)

// Config is the tenantguard processor's configuration.
type Config struct {
	// TenantAttributes are the attribute keys that carry a tenant, most
	// trusted first; span attributes are searched before resource
	// attributes. Default: [tenant.id, tenant_id].
	TenantAttributes []string `mapstructure:"tenant_attributes"`
	// Allow lists the exceptions. Default: none.
	Allow AllowConfig `mapstructure:"allow"`
	// IdleWindow is how long a trace is remembered after its last span.
	// Default: 60s.
	IdleWindow time.Duration `mapstructure:"idle_window"`
	// MaxTraces caps the traces held in memory; beyond it the least recently
	// updated trace is evicted and counted. Default: 100000.
	MaxTraces int `mapstructure:"max_traces"`
	// MaxSpansPerTrace caps the span records kept per trace. Default: 1000.
	MaxSpansPerTrace int `mapstructure:"max_spans_per_trace"`
	// MaxEvidenceSpans caps the evidence spans stored with one finding.
	// Default: 64.
	MaxEvidenceSpans int `mapstructure:"max_evidence_spans"`
	// QueueSize caps the findings waiting for the store and notifiers.
	// Versions of the same finding coalesce, so this counts findings, not
	// versions. Default: 10000.
	QueueSize int `mapstructure:"queue_size"`
	// Instance names this collector in stored evidence. Default: the host name.
	Instance string `mapstructure:"instance"`
	// Store says where evidence goes. Default: journal at ./data/leaks.jsonl.
	Store config.Store `mapstructure:"store"`
	// Alerts says who is told. Default: the collector log.
	Alerts config.Alerts `mapstructure:"alerts"`
	// Metrics says where Prometheus scrapes the detector's health.
	// Default: 127.0.0.1:9464.
	Metrics config.Metrics `mapstructure:"metrics"`
}

// AllowConfig lists the legitimate multi-tenant paths.
type AllowConfig struct {
	// Services whose traces may touch several tenants (by service.name).
	Services []string `mapstructure:"services"`
	// SharedTenants are values that never count as a tenant, such as "system".
	SharedTenants []string `mapstructure:"shared_tenants"`
}

// Validate names the first bad field.
func (c *Config) Validate() error {
	dc := c.detectorConfig(nil)
	err := dc.Validate()
	if c.QueueSize <= 0 {
		err = errors.Join(err, fmt.Errorf("queue_size: must be positive, got %d", c.QueueSize))
	}
	return errors.Join(err, c.Store.Validate(), c.Alerts.Slack.Validate())
}

func (c *Config) detectorConfig(now func() time.Time) detector.Config {
	return detector.Config{
		TenantKeys:       c.TenantAttributes,
		AllowServices:    c.Allow.Services,
		SharedTenants:    c.Allow.SharedTenants,
		IdleWindow:       c.IdleWindow,
		MaxTraces:        c.MaxTraces,
		MaxSpansPerTrace: c.MaxSpansPerTrace,
		MaxEvidenceSpans: c.MaxEvidenceSpans,
		Now:              now,
	}
}

// DetectorConfig is the rule configuration this processor config implies;
// offline tools use it so that CI and production judge alike.
func (c *Config) DetectorConfig() detector.Config { return c.detectorConfig(nil) }
