package detector

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Rule names a detection rule. The names are part of the stored evidence and
// of the alert text, so they never change once released.
type Rule string

const (
	// RuleCrossTenantTrace fires when the spans of one trace carry two or
	// more distinct tenants.
	RuleCrossTenantTrace Rule = "cross_tenant_trace"
	// RuleTenantMismatch fires when one span carries different tenants under
	// different keys, such as a token tenant and a forged header tenant.
	RuleTenantMismatch Rule = "tenant_mismatch"
)

// Rules lists every rule, in the order the rules reference documents them.
var Rules = []Rule{RuleCrossTenantTrace, RuleTenantMismatch}

// Severity orders findings for paging decisions.
type Severity string

const (
	SeverityCritical Severity = "critical"
	SeverityHigh     Severity = "high"
	SeverityMedium   Severity = "medium"
	SeverityLow      Severity = "low"
)

// Status says where a finding is in its life.
type Status string

const (
	// StatusOpen: the trace is still in memory and the finding may grow.
	StatusOpen Status = "open"
	// StatusClosed: the trace went idle; this is the finding's last version.
	StatusClosed Status = "closed"
	// StatusAllowed: a span that arrived after detection put the trace under
	// an allow rule; the finding is withdrawn and must not page anyone.
	StatusAllowed Status = "allowed"
)

// Finding is one detected crossing. Every version of the same finding has
// the same LeakID and a larger Version.
type Finding struct {
	LeakID   string
	Version  uint64 // strictly increasing per LeakID, in unix nanoseconds of emission
	Rule     Rule
	Severity Severity
	Status   Status
	// AllowedBy names the allow rule that withdrew the finding (StatusAllowed only).
	AllowedBy string

	TraceID  TraceID
	Tenants  []string // sorted
	Services []string // sorted, every service seen in the trace
	Edges    []CrossingEdge
	// Mismatches lists the spans whose own tenant values disagree (RuleTenantMismatch).
	Mismatches []Mismatch
	// Spans is the evidence: the spans on crossing edges and mismatching spans, capped.
	Spans []EvidenceSpan

	// New marks the first version this detector emitted for the finding.
	New bool
	// ArrivedAt is when this detector received the trace's first span;
	// DetectedAt minus ArrivedAt is the detection latency.
	ArrivedAt time.Time

	SpanCount  int
	FirstSeen  time.Time // first span of the trace observed
	LastSeen   time.Time // latest span of the trace observed
	DetectedAt time.Time // when the first version was emitted
}

// EdgeEnd is one side of a crossing edge.
type EdgeEnd struct {
	SpanID  SpanID
	Service string
	Name    string
	Tenant  string
}

// CrossingEdge is a parent→child step where the tenant changes. Hops counts
// the spans without a tenant between the two ends (0: direct parent).
type CrossingEdge struct {
	From EdgeEnd
	To   EdgeEnd
	Hops int
}

// EvidenceSpan is what the detector keeps of a span: enough to show where
// the crossing happened, never attribute values beyond the tenant.
type EvidenceSpan struct {
	SpanID    SpanID
	ParentID  SpanID
	Service   string
	Name      string
	Tenant    string
	TenantKey string
}

// TenantSource is one tenant value of a span and the key it came from.
type TenantSource struct {
	Key      string
	Tenant   string
	Resource bool // found on the resource rather than the span
}

// Mismatch is a span whose tenant values disagree.
type Mismatch struct {
	SpanID  SpanID
	Service string
	Name    string
	Values  []TenantSource
}

// LeakID is deterministic in the trace and the rule, so that a restarted
// collector, a second collector behind a load balancer and an offline scan
// all name the same crossing the same way, and stores can deduplicate.
func LeakID(trace TraceID, rule Rule) string {
	h := sha256.New()
	h.Write([]byte("tenantguard/leak/v1\x00"))
	h.Write([]byte(rule))
	h.Write([]byte{0})
	h.Write(trace[:])
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}
