// Package distribution lists the components the tenantguard collector is
// built with, so that cmd/tenantguard and the benchmarks' load collector
// (bench/load/collector, which adds the experiments) build the same
// pipeline. builder-config.yaml says the same for the OpenTelemetry
// Collector Builder.
package distribution
