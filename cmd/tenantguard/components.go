package main

import (
	"go.opentelemetry.io/collector/otelcol"

	"github.com/tenantguard/tenantguard/internal/distribution"
)

// components lists what this distribution is built with
// (internal/distribution); builder-config.yaml at the repository root says
// the same for the OpenTelemetry Collector Builder, for users who want the
// processor in their own distribution.
func components() (otelcol.Factories, error) { return distribution.Components(version) }
