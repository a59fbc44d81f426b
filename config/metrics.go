package config

import (
	"errors"
	"fmt"
	"time"
)

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Endpoint serves /metrics. Every tenantguard processor in the process
	// shares one registry and one server per endpoint. Empty turns it off.
	// Default: 127.0.0.1:9464 (loopback: metrics name services and tenants'
	// traffic shapes). An endpoint that cannot be bound fails the start.
	Endpoint string `mapstructure:"endpoint"`
	// MaxServices caps the services with their own per-service series
	// (tenantguard_service_spans_total, ..._spans_without_tenant_total);
	// spans of other services are counted under service="_other".
	// Default: 500.
	MaxServices int `mapstructure:"max_services"`
	// ServiceIdle forgets a service, and drops its series, once it has sent
	// no span for this long, so its place goes to the next new service.
	// Default: 1h.
	ServiceIdle time.Duration `mapstructure:"service_idle"`
}

// DefaultMetricsEndpoint is where /metrics is served unless configured.
const DefaultMetricsEndpoint = "127.0.0.1:9464"

// Validate names the bad field.
func (m *Metrics) Validate() error {
	var errs []error
	if m.MaxServices <= 0 {
		errs = append(errs, fmt.Errorf("metrics.max_services: must be positive, got %d", m.MaxServices))
	}
	if m.ServiceIdle <= 0 {
		errs = append(errs, fmt.Errorf("metrics.service_idle: must be positive, got %s", m.ServiceIdle))
	}
	return errors.Join(errs...)
}
