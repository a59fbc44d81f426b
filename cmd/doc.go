// Package cmd wires tenantguard together: cmd/tenantguard is the collector
// distribution (OTLP in, the tenantguard processor, debug/OTLP out) and the
// analysts' `tenantguard leaks` command that reads the evidence store the
// same collector config names; cmd/demoshop runs the demo shop against a
// collector (README, "Proving isolation").
package cmd
