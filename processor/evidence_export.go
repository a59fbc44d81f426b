package processor

import (
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/detector"
)

// EvidenceAnnotator returns, for a request, what the processor sets as the
// request's Batch.Annotate: it gives the evidence spans of the findings the
// request raises their details (kind, timing, status, and attributes stored
// as evidence_attributes says). Offline tools (`tenantguard scan`) use it so
// that their records, and so their messages, are the collector's. Nil when
// evidence_attributes is off.
func EvidenceAnnotator(cfg *Config) func(td ptrace.Traces) func(*detector.Finding) {
	r := newEvidenceRedactor(cfg.EvidenceAttributes, cfg.TenantAttributes)
	if r == nil {
		return nil
	}
	return func(td ptrace.Traces) func(*detector.Finding) {
		q := &requestEvidence{r: r, td: td}
		return q.annotate
	}
}
