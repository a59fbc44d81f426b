package tenantguardprocessor

import (
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/confmap"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/detector"
)

// Config is the tenantguard processor's configuration.
type Config struct {
	// TenantAttributes are the attribute keys that carry a tenant, most
	// trusted first; span attributes are searched before resource
	// attributes. Default: [tenant.id, tenant_id].
	TenantAttributes []string `mapstructure:"tenant_attributes"`
	// TenantDerivations find tenants inside other attributes with a regular
	// expression whose named group `tenant` captures it, e.g. url.path
	// `^/t/(?P<tenant>[^/]+)/`. They rank after tenant_attributes. Default: none.
	TenantDerivations []DerivationConfig `mapstructure:"tenant_derivations"`
	// Bindings map identifiers to tenants, e.g. the key id that verified a
	// token (auth.jwt.kid): a span whose key belongs to another tenant, or
	// is global, is a foreign_signing_key finding. Default: none.
	Bindings []BindingConfig `mapstructure:"bindings"`
	// UnscopedQuery finds the missing WHERE: database statements on
	// tenant-scoped tables without a predicate on the tenant column.
	// Default: off (no tables).
	UnscopedQuery UnscopedQueryConfig `mapstructure:"unscoped_query"`
	// Coverage reports tenant-aware services whose spans carry no tenant.
	// Default: off (no services).
	Coverage CoverageConfig `mapstructure:"coverage"`
	// LateWindow keeps a closed trace's tenants (and its findings) this
	// long, so a late span from another tenant is still caught and joined
	// to the right finding. Default: 10m.
	LateWindow time.Duration `mapstructure:"late_window"`
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
	// EvidenceAttributes says what of each evidence span's own attributes
	// is stored: clear-listed values as they are, others as keyed digests.
	// Default: on, the default clear list, no key (values outside the clear
	// list stored as [redacted]), at most 32 a span.
	EvidenceAttributes config.EvidenceAttributes `mapstructure:"evidence_attributes"`
	// QueueSize caps the findings waiting for the store and notifiers.
	// Versions of the same finding coalesce, so this counts findings, not
	// versions. Default: 10000 (defaultQueueSize).
	QueueSize int `mapstructure:"queue_size"`
	// Instance names this collector in stored evidence. Default: the host name.
	Instance string `mapstructure:"instance"`
	// Store says where evidence goes. Default: journal at ./data/leaks.jsonl.
	Store config.Store `mapstructure:"store"`
	// Alerts says who is told. Default: the collector log.
	Alerts config.Alerts `mapstructure:"alerts"`
	// Metrics says where Prometheus scrapes the detector's health.
	// Default: 127.0.0.1:9464, 500 services with their own series, each
	// forgotten after 1h idle.
	Metrics config.Metrics `mapstructure:"metrics"`

	// unitless holds Unmarshal's complaints about durations without a unit.
	unitless error
}

// defaultQueueSize is queue_size unless configured.
const defaultQueueSize = 10_000

// AllowConfig lists the legitimate multi-tenant paths.
type AllowConfig struct {
	// Services whose traces may touch several tenants (by service.name).
	// Default: none.
	Services []string `mapstructure:"services"`
	// SharedTenants are values that never count as a tenant, such as
	// "system". Default: none.
	SharedTenants []string `mapstructure:"shared_tenants"`
	// Conditions are OTTL conditions in the span context; a span that
	// matches one exempts its trace, e.g.
	// `resource.attributes["service.name"] == "admin-console" and IsMatch(span.name, "^GET /support/")`.
	// Default: none.
	Conditions []string `mapstructure:"conditions"`
}

// DerivationConfig extracts a tenant from an attribute.
type DerivationConfig struct {
	// Attribute is read, span first, then resource. Required, no default.
	Attribute string `mapstructure:"attribute"`
	// Regex has a named group `tenant`. Required, no default.
	Regex string `mapstructure:"regex"`
}

// BindingConfig maps the values of one attribute to tenants.
type BindingConfig struct {
	// Attribute carries the identifier. Required, no default.
	Attribute string `mapstructure:"attribute"`
	// Tenants maps each identifier to its tenant. Default: none.
	Tenants map[string]string `mapstructure:"tenants"`
	// Global lists identifiers that belong to no tenant (a shared key).
	// Default: none.
	Global []string `mapstructure:"global"`
}

// UnscopedQueryConfig configures the unscoped_query rule.
type UnscopedQueryConfig struct {
	// Tables are the tenant-scoped tables (schema-qualified or not).
	// Default: none (the rule is off).
	Tables []string `mapstructure:"tables"`
	// TenantColumn is their tenant column. Default: tenant_id.
	TenantColumn string `mapstructure:"tenant_column"`
	// Window reports one finding per service, span name and tables per
	// window. Default: 10m.
	Window time.Duration `mapstructure:"window"`
}

// CoverageConfig configures the missing_tenant rule.
type CoverageConfig struct {
	// TenantAwareServices must put a tenant on every span. Default: none
	// (the rule is off).
	TenantAwareServices []string `mapstructure:"tenant_aware_services"`
	// Window reports one finding per service and span name per window.
	// Default: 10m.
	Window time.Duration `mapstructure:"window"`
	// MaxTenants caps the tenants whose hourly coverage (traces checked,
	// spans without a tenant, crossings, unscoped queries) is counted by
	// name; the rest are counted as `_other`. The records go to the file
	// <store.journal.path>.coverage.jsonl. 0 turns coverage counting off.
	// Default: 1000.
	MaxTenants int `mapstructure:"max_tenants"`
}

// Unmarshal decodes the processor's section and notes every duration
// written without a unit (`idle_window: 60` would decode as 60ns), which
// Validate then refuses: as a validation error the collector prints it
// once, with the processor's name, not inside three layers of decoder
// messages.
func (c *Config) Unmarshal(conf *confmap.Conf) error {
	c.unitless = config.RequireDurationUnits(conf.ToStringMap(), c)
	return conf.Unmarshal(c)
}

// Validate names the bad fields of the processor's own settings. The
// sections with their own Validate (evidence_attributes, store, alerts.slack,
// metrics) are checked by confmap.Validate, which the collector runs on
// every component config: calling them here as well printed each of their
// errors twice. Callers outside the collector use confmap.Validate too.
func (c *Config) Validate() error {
	dc := c.detectorConfig(nil)
	err := errors.Join(c.unitless, dc.Validate())
	if _, perr := parseAllowConditions(c.Allow.Conditions, nopTelemetry()); perr != nil {
		err = errors.Join(err, perr)
	}
	if c.QueueSize <= 0 {
		err = errors.Join(err, fmt.Errorf("queue_size: must be positive, got %d", c.QueueSize))
	}
	return err
}

func (c *Config) detectorConfig(now func() time.Time) detector.Config {
	dc := detector.Config{
		TenantKeys:       c.TenantAttributes,
		AllowServices:    c.Allow.Services,
		SharedTenants:    c.Allow.SharedTenants,
		IdleWindow:       c.IdleWindow,
		MaxTraces:        c.MaxTraces,
		MaxSpansPerTrace: c.MaxSpansPerTrace,
		MaxEvidenceSpans: c.MaxEvidenceSpans,
		Now:              now,

		ScopedTables:        c.UnscopedQuery.Tables,
		TenantColumn:        c.UnscopedQuery.TenantColumn,
		UnscopedWindow:      c.UnscopedQuery.Window,
		TenantAwareServices: c.Coverage.TenantAwareServices,
		CoverageWindow:      c.Coverage.Window,
		CoverageMaxTenants:  c.Coverage.MaxTenants,
		LateWindow:          c.LateWindow,
		MaxServices:         c.Metrics.MaxServices,
		ServiceIdle:         c.Metrics.ServiceIdle,
	}
	for _, d := range c.TenantDerivations {
		dc.Derivations = append(dc.Derivations, detector.Derivation{Attribute: d.Attribute, Pattern: d.Regex})
	}
	for _, b := range c.Bindings {
		dc.Bindings = append(dc.Bindings, detector.Binding{Attribute: b.Attribute, Tenants: b.Tenants, Global: b.Global})
	}
	return dc
}

// DetectorConfig is the rule configuration this processor config implies;
// offline tools use it so that CI and production judge alike.
func (c *Config) DetectorConfig() detector.Config { return c.detectorConfig(nil) }
