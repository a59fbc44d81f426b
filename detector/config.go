package detector

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config is the detector's rule and state configuration. The processor maps
// its collector config onto it; scan and tests build it directly.
type Config struct {
	// TenantKeys are the attribute keys that carry a tenant, most trusted
	// first (a verified token claim before a client-supplied header). A
	// span's own tenant is the value under the first key it has.
	TenantKeys []string
	// AllowServices exempts every trace that passes through one of these
	// services (by service.name): admin consoles, billing batches.
	AllowServices []string
	// SharedTenants never count as a tenant (e.g. "system").
	SharedTenants []string
	// IdleWindow is how long a trace's state lives after its last span.
	IdleWindow time.Duration
	// MaxTraces caps the traces held in memory; the oldest are evicted first.
	MaxTraces int
	// MaxSpansPerTrace caps the span records kept per trace; spans beyond it
	// still count towards tenants and span count but leave no edge evidence.
	MaxSpansPerTrace int
	// MaxEvidenceSpans caps the evidence spans carried by one finding.
	MaxEvidenceSpans int
	// Shards splits state so that concurrent batches rarely contend; 0 picks
	// one per CPU.
	Shards int
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

// Defaults, shared by the processor's createDefaultConfig and offline scans.
const (
	DefaultIdleWindow       = 60 * time.Second
	DefaultMaxTraces        = 100_000
	DefaultMaxSpansPerTrace = 1_000
	DefaultMaxEvidenceSpans = 64
	// MaxTenantLength bounds a tenant value; longer values are not tenants
	// but payload (or an attack), and are rejected and counted.
	MaxTenantLength = 256
	// maxTenantKeys keeps a key index in one byte.
	maxTenantKeys = 32
	// maxTenantsPerTrace keeps a tenant index in one byte.
	maxTenantsPerTrace = 255
	// maxServicesPerTrace bounds the service list a finding carries.
	maxServicesPerTrace = 64
)

// DefaultTenantKeys are the keys looked up when none are configured.
func DefaultTenantKeys() []string { return []string{"tenant.id", "tenant_id"} }

// Validate reports the first problem, naming the setting.
func (c *Config) Validate() error {
	var errs []error
	if len(c.TenantKeys) == 0 {
		errs = append(errs, errors.New("tenant_attributes: at least one attribute key is required"))
	}
	if len(c.TenantKeys) > maxTenantKeys {
		errs = append(errs, fmt.Errorf("tenant_attributes: at most %d keys, got %d", maxTenantKeys, len(c.TenantKeys)))
	}
	seen := map[string]bool{}
	for i, k := range c.TenantKeys {
		if strings.TrimSpace(k) == "" {
			errs = append(errs, fmt.Errorf("tenant_attributes[%d]: empty attribute key", i))
		}
		if seen[k] {
			errs = append(errs, fmt.Errorf("tenant_attributes[%d]: %q is listed twice", i, k))
		}
		seen[k] = true
	}
	for i, s := range c.AllowServices {
		if strings.TrimSpace(s) == "" {
			errs = append(errs, fmt.Errorf("allow.services[%d]: empty service name", i))
		}
	}
	for i, s := range c.SharedTenants {
		if strings.TrimSpace(s) == "" {
			errs = append(errs, fmt.Errorf("allow.shared_tenants[%d]: empty tenant", i))
		}
	}
	if c.IdleWindow <= 0 {
		errs = append(errs, fmt.Errorf("idle_window: must be positive, got %s", c.IdleWindow))
	}
	if c.MaxTraces <= 0 {
		errs = append(errs, fmt.Errorf("max_traces: must be positive, got %d", c.MaxTraces))
	}
	if c.MaxSpansPerTrace <= 0 {
		errs = append(errs, fmt.Errorf("max_spans_per_trace: must be positive, got %d", c.MaxSpansPerTrace))
	}
	if c.MaxEvidenceSpans <= 0 {
		errs = append(errs, fmt.Errorf("max_evidence_spans: must be positive, got %d", c.MaxEvidenceSpans))
	}
	if c.Shards < 0 {
		errs = append(errs, fmt.Errorf("shards: must not be negative, got %d", c.Shards))
	}
	return errors.Join(errs...)
}

// DefaultConfig returns the configuration the processor starts from.
func DefaultConfig() Config {
	return Config{
		TenantKeys:       DefaultTenantKeys(),
		IdleWindow:       DefaultIdleWindow,
		MaxTraces:        DefaultMaxTraces,
		MaxSpansPerTrace: DefaultMaxSpansPerTrace,
		MaxEvidenceSpans: DefaultMaxEvidenceSpans,
	}
}
