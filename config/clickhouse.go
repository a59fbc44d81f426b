package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/config/configtls"
)

// ClickHouse configures the ClickHouse evidence store. It is off unless
// endpoints are set; when on, the journal stays the write-ahead log in front
// of it and a shipper copies journal records to ClickHouse.
type ClickHouse struct {
	// Endpoints are host:port addresses of the protocol below: native 9000
	// (9440 with TLS), http 8123 (8443 with TLS, as ClickHouse Cloud
	// serves). Several endpoints fail over in order. Default: none (off).
	Endpoints []string `mapstructure:"endpoints"`
	// Protocol is native (ClickHouse's TCP protocol) or http (its HTTP
	// interface; HTTPS when TLS is on). Default: native.
	Protocol string `mapstructure:"protocol"`
	// Database holds the tenant_leaks tables. Default: tenantguard.
	Database string `mapstructure:"database"`
	// Username. Default: default.
	Username string `mapstructure:"username"`
	// Password; use ${env:CLICKHOUSE_PASSWORD}. Never logged.
	Password configopaque.String `mapstructure:"password"`
	// TLS for the connection. Default: TLS with certificate verification
	// against the system roots (evidence is sensitive); `insecure: true`
	// means plain TCP, for a server on the same host or a test.
	TLS configtls.ClientConfig `mapstructure:"tls"`
	// DialTimeout bounds connecting. Default: 5s.
	DialTimeout time.Duration `mapstructure:"dial_timeout"`
	// ReadTimeout bounds waiting for a server reply. Default: 30s.
	ReadTimeout time.Duration `mapstructure:"read_timeout"`
	// Compression of the data blocks, either protocol: lz4, zstd or none.
	// Default: lz4.
	Compression string `mapstructure:"compression"`
	// CreateSchema runs the versioned migrations at start. Default: true.
	CreateSchema bool `mapstructure:"create_schema"`
	// Retention is the TTL of leak rows. Default: 9600h (400 days).
	Retention time.Duration `mapstructure:"retention"`
	// Cluster, when set, creates Replicated tables ON CLUSTER with a
	// Distributed table in front. Default: none (single server).
	Cluster string `mapstructure:"cluster"`
	// BatchSize ships at most this many findings per insert. Default: 1000.
	BatchSize int `mapstructure:"batch_size"`
	// BatchAge ships a partial batch after this long. Default: 5s.
	BatchAge time.Duration `mapstructure:"batch_age"`
	// RetryInitial and RetryMax bound the shipper's exponential backoff.
	// Defaults: 1s and 1m.
	RetryInitial time.Duration `mapstructure:"retry_initial_interval"`
	RetryMax     time.Duration `mapstructure:"retry_max_interval"`
	// MaxAttempts splits a batch that fails this many times for a reason
	// the shipper does not know (an unlisted server error code), so that
	// the records around the failing one ship; the failing record is
	// retried with backoff, never dead-lettered: only a record ClickHouse
	// refuses goes to the dead-letter file. Default: 5.
	MaxAttempts int `mapstructure:"max_attempts"`
}

// DefaultClickHouse returns the ClickHouse defaults (store off).
func DefaultClickHouse() ClickHouse {
	return ClickHouse{
		Database:     "tenantguard",
		Protocol:     "native",
		Username:     "default",
		TLS:          configtls.ClientConfig{},
		DialTimeout:  5 * time.Second,
		ReadTimeout:  30 * time.Second,
		Compression:  "lz4",
		CreateSchema: true,
		Retention:    400 * 24 * time.Hour,
		BatchSize:    1000,
		BatchAge:     5 * time.Second,
		RetryInitial: time.Second,
		RetryMax:     time.Minute,
		MaxAttempts:  5,
	}
}

// Enabled reports whether the ClickHouse store is configured.
func (c *ClickHouse) Enabled() bool { return len(c.Endpoints) > 0 }

// Validate names the bad field.
func (c *ClickHouse) Validate() error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	for i, e := range c.Endpoints {
		if !strings.Contains(e, ":") || strings.TrimSpace(e) != e || e == "" {
			errs = append(errs, fmt.Errorf("store.clickhouse.endpoints[%d]: %q is not host:port", i, e))
		}
	}
	if c.Database == "" || strings.ContainsAny(c.Database, "`'\" ;.") {
		errs = append(errs, fmt.Errorf("store.clickhouse.database: %q is not a plain database name", c.Database))
	}
	if c.Cluster != "" && strings.ContainsAny(c.Cluster, "`'\" ;") {
		errs = append(errs, fmt.Errorf("store.clickhouse.cluster: %q is not a plain cluster name", c.Cluster))
	}
	switch c.Protocol {
	case "native", "http":
	default:
		errs = append(errs, fmt.Errorf("store.clickhouse.protocol: %q is not one of native, http", c.Protocol))
	}
	switch c.Compression {
	case "lz4", "zstd", "none":
	default:
		errs = append(errs, fmt.Errorf("store.clickhouse.compression: %q is not one of lz4, zstd, none", c.Compression))
	}
	if c.DialTimeout <= 0 || c.ReadTimeout <= 0 {
		errs = append(errs, errors.New("store.clickhouse.dial_timeout and read_timeout: must be positive"))
	}
	if c.Retention < 24*time.Hour {
		errs = append(errs, fmt.Errorf("store.clickhouse.retention: at least 24h, got %s", c.Retention))
	}
	if c.BatchSize <= 0 || c.BatchAge <= 0 {
		errs = append(errs, errors.New("store.clickhouse.batch_size and batch_age: must be positive"))
	}
	if c.RetryInitial <= 0 || c.RetryMax < c.RetryInitial {
		errs = append(errs, errors.New("store.clickhouse.retry_initial_interval must be positive and at most retry_max_interval"))
	}
	if c.MaxAttempts <= 0 {
		errs = append(errs, fmt.Errorf("store.clickhouse.max_attempts: must be positive, got %d", c.MaxAttempts))
	}
	return errors.Join(errs...)
}
