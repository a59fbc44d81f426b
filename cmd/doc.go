// Package cmd wires tenantguard together: cmd/tenantguard is the collector
// distribution (OTLP in, the tenantguard processor, debug/OTLP out) and the
// analysts' `tenantguard leaks` command that reads the evidence store the
// same collector config names.
package cmd
