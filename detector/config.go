package detector

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"time"

	"github.com/tenantguard/tenantguard/detector/sqlscope"
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
	// Derivations find tenants inside other attributes (a URL path, a
	// cache key, a database namespace) with a regular expression whose
	// named group `tenant` captures the tenant. They rank after TenantKeys.
	Derivations []Derivation
	// Bindings map identifier values to tenants, such as the id of the key
	// that signed a verified token: a span whose key belongs to another
	// tenant, or is marked global, is a foreign_signing_key finding.
	Bindings []Binding
	// ScopedTables are the tenant-scoped tables for the unscoped_query
	// rule; TenantColumn is their tenant column (default tenant_id). The
	// rule is off while ScopedTables is empty.
	ScopedTables []string
	TenantColumn string
	// UnscopedWindow reports one unscoped_query finding per service and
	// statement shape per window. Default: 10m.
	UnscopedWindow time.Duration
	// TenantAwareServices must put a tenant on every span; spans without
	// one are missing_tenant findings, one per service and span name per
	// CoverageWindow (default 10m).
	TenantAwareServices []string
	CoverageWindow      time.Duration
	// LateWindow keeps a closed trace's tenants this long, so a late span
	// from another tenant is still caught and joined to the same finding.
	// Default: 10m.
	LateWindow time.Duration
	// CoverageMaxTenants caps the tenants whose coverage (TakeCoverage) is
	// counted by name per hour; the rest count as OtherTenants. 0: coverage
	// is not counted.
	CoverageMaxTenants int
	// MaxServices caps the services with their own coverage counters;
	// spans of others count under OtherServices. 0: DefaultMaxServices.
	MaxServices int
	// ServiceIdle forgets a service's coverage counters after it sent no
	// span for this long, freeing its place. 0: DefaultServiceIdle.
	ServiceIdle time.Duration
	// Shards splits state so that concurrent batches rarely contend; 0 picks
	// one per CPU.
	Shards int
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

// Defaults. DefaultConfig gathers them; the processor's createDefaultConfig
// reads that, and offline scans start from the processor's defaults.
const (
	DefaultIdleWindow       = 60 * time.Second
	DefaultMaxTraces        = 100_000
	DefaultMaxSpansPerTrace = 1_000
	DefaultMaxEvidenceSpans = 64
	// DefaultCoverageMaxTenants is the processor's coverage.max_tenants.
	DefaultCoverageMaxTenants = 1000
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

// Derivation extracts a tenant from an attribute with a regular expression.
type Derivation struct {
	// Attribute is looked up on span attributes, then resource attributes.
	Attribute string
	// Pattern is an RE2 expression with one named group `tenant`, e.g.
	// `^/t/(?P<tenant>[^/]+)/`.
	Pattern string
}

// Binding maps the values of one attribute to tenants.
type Binding struct {
	// Attribute holds the identifier, e.g. auth.jwt.kid.
	Attribute string
	// Tenants maps identifier values to the tenant that owns them.
	Tenants map[string]string
	// Global lists identifiers that belong to no tenant (a shared signing
	// key): any span using one is a finding.
	Global []string
}

// Limits on derivations: RE2 matches in linear time, so cost is bounded by
// the program size and the input length; both are capped.
const (
	maxPatternLength   = 1024
	maxPatternProgram  = 2000
	maxDerivationInput = 4096
)

// compileDerivation checks a derivation and compiles its pattern once.
func compileDerivation(i int, d Derivation) (*derivePattern, error) {
	field := fmt.Sprintf("tenant_derivations[%d]", i)
	if strings.TrimSpace(d.Attribute) == "" {
		return nil, fmt.Errorf("%s.attribute: empty attribute key", field)
	}
	if len(d.Pattern) > maxPatternLength {
		return nil, fmt.Errorf("%s.regex: longer than %d characters", field, maxPatternLength)
	}
	re, err := regexp.Compile(d.Pattern)
	if err != nil {
		return nil, fmt.Errorf("%s.regex: %w", field, err)
	}
	group := -1
	for gi, name := range re.SubexpNames() {
		if name == "tenant" {
			if group >= 0 {
				return nil, fmt.Errorf("%s.regex: more than one group named tenant", field)
			}
			group = gi
		}
	}
	if group < 0 {
		return nil, fmt.Errorf("%s.regex: no named group `tenant`, e.g. (?P<tenant>[^/]+)", field)
	}
	parsed, err := syntax.Parse(d.Pattern, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("%s.regex: %w", field, err)
	}
	simple := parsed.Simplify()
	prog, err := syntax.Compile(simple)
	if err != nil {
		return nil, fmt.Errorf("%s.regex: %w", field, err)
	}
	if len(prog.Inst) > maxPatternProgram {
		return nil, fmt.Errorf("%s.regex: too costly to run on every span (%d instructions, at most %d): simplify it or anchor it with ^",
			field, len(prog.Inst), maxPatternProgram)
	}
	if re.MatchString("") {
		return nil, fmt.Errorf("%s.regex: matches the empty string, so it would find a tenant everywhere", field)
	}
	return newDerivePattern(re, group, simple), nil
}

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
	if len(c.TenantKeys)+len(c.Derivations) > maxTenantKeys {
		errs = append(errs, fmt.Errorf("tenant_derivations: at most %d tenant keys and derivations together", maxTenantKeys))
	}
	for i, d := range c.Derivations {
		if _, err := compileDerivation(i, d); err != nil {
			errs = append(errs, err)
		}
	}
	if len(c.Bindings) > 255 {
		errs = append(errs, errors.New("bindings: at most 255"))
	}
	for i, b := range c.Bindings {
		if strings.TrimSpace(b.Attribute) == "" {
			errs = append(errs, fmt.Errorf("bindings[%d].attribute: empty attribute key", i))
		}
		if len(b.Tenants) == 0 && len(b.Global) == 0 {
			errs = append(errs, fmt.Errorf("bindings[%d]: neither tenants nor global lists an identifier", i))
		}
		for id, t := range b.Tenants {
			if strings.TrimSpace(t) == "" {
				errs = append(errs, fmt.Errorf("bindings[%d].tenants[%q]: empty tenant", i, id))
			}
		}
	}
	if len(c.ScopedTables) > 0 {
		if _, err := sqlscope.New(c.ScopedTables, c.tenantColumn()); err != nil {
			errs = append(errs, fmt.Errorf("unscoped_query: %w", err))
		}
	}
	for name, w := range map[string]time.Duration{"unscoped_query.window": c.UnscopedWindow,
		"coverage.window": c.CoverageWindow, "late_window": c.LateWindow} {
		if w < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative, got %s", name, w))
		}
	}
	if c.CoverageMaxTenants < 0 {
		errs = append(errs, fmt.Errorf("coverage.max_tenants: must not be negative, got %d", c.CoverageMaxTenants))
	}
	if c.MaxServices < 0 {
		errs = append(errs, fmt.Errorf("max_services: must not be negative, got %d", c.MaxServices))
	}
	if c.ServiceIdle < 0 {
		errs = append(errs, fmt.Errorf("service_idle: must not be negative, got %s", c.ServiceIdle))
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
		TenantColumn:     DefaultTenantColumn,
		UnscopedWindow:   DefaultRuleWindow,
		CoverageWindow:   DefaultRuleWindow,
		LateWindow:       DefaultRuleWindow,

		CoverageMaxTenants: DefaultCoverageMaxTenants,
	}
}

// DefaultTenantColumn is the tenant column of scoped tables unless configured.
const DefaultTenantColumn = "tenant_id"

// DefaultRuleWindow rate-limits per-service findings and keeps closed
// traces' tenants for late spans.
const DefaultRuleWindow = 10 * time.Minute

func (c *Config) tenantColumn() string {
	if c.TenantColumn == "" {
		return DefaultTenantColumn
	}
	return c.TenantColumn
}
