package detector

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Rule names a detection rule. The names are part of the stored evidence and
// of the alert text, so they never change once released.
type Rule string

const (
	// RuleCrossTenantTrace fires when a trace crosses from one tenant into
	// another and the crossing succeeded (or cannot be told yet).
	RuleCrossTenantTrace Rule = "cross_tenant_trace"
	// RuleBlockedAttempt fires when a trace reached for another tenant and
	// was refused (401/403/404, gRPC PERMISSION_DENIED, an error status):
	// isolation working. Recorded and counted, never paged.
	RuleBlockedAttempt Rule = "blocked_attempt"
	// RuleTenantMismatch fires when one span carries different tenants under
	// different keys, such as a token tenant and a forged header tenant.
	RuleTenantMismatch Rule = "tenant_mismatch"
	// RuleForeignSigningKey fires when a span's token was verified with a
	// key bound to another tenant, or with a key marked global.
	RuleForeignSigningKey Rule = "foreign_signing_key"
	// RuleUnscopedQuery fires when a database span queries a tenant-scoped
	// table without a predicate on the tenant column: the missing WHERE.
	RuleUnscopedQuery Rule = "unscoped_query"
	// RuleMissingTenant fires when a service listed as tenant-aware sends
	// spans without a tenant: an unattributed path is where leaks hide.
	RuleMissingTenant Rule = "missing_tenant"
)

// Rules lists every rule, in the order the rules reference documents them.
var Rules = []Rule{RuleCrossTenantTrace, RuleBlockedAttempt, RuleTenantMismatch,
	RuleForeignSigningKey, RuleUnscopedQuery, RuleMissingTenant}

// Describe says in a sentence what the rule catches, for help texts and
// SARIF rule descriptions; "" for a rule this build does not know.
func (r Rule) Describe() string { return ruleDescriptions[r] }

var ruleDescriptions = map[Rule]string{
	RuleCrossTenantTrace:  "A trace crossed from one tenant into another and the crossing succeeded (or cannot be told yet).",
	RuleBlockedAttempt:    "A trace reached for another tenant and was refused: isolation held.",
	RuleTenantMismatch:    "One span carries different tenants under different keys.",
	RuleForeignSigningKey: "A span's token was verified with another tenant's key, or with a global key.",
	RuleUnscopedQuery:     "A database span queried a tenant-scoped table with no predicate on the tenant column.",
	RuleMissingTenant:     "A service listed as tenant-aware sent a span without a tenant.",
}

// Severity orders findings for paging decisions.
type Severity string

const (
	SeverityCritical Severity = "critical"
	SeverityHigh     Severity = "high"
	SeverityMedium   Severity = "medium"
	SeverityLow      Severity = "low"
)

// Severities lists every severity, lowest first.
var Severities = []Severity{SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical}

// Rank orders severities for every threshold (Slack's min_severity, scan's
// --fail-on, a later version's judgement): low 1, medium 2, high 3,
// critical 4. A severity this build does not know, read from a record a
// newer build wrote, ranks above critical, so that every threshold fails
// closed on it: it pages and fails a build rather than passing silently.
func (s Severity) Rank() int {
	for i, v := range Severities {
		if v == s {
			return i + 1
		}
	}
	return len(Severities) + 1
}

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
	// StatusReclassified: later spans showed the crossing was refused; the
	// blocked_attempt finding of the same trace tells the rest.
	StatusReclassified Status = "reclassified"
)

// Statuses lists every status, in the order of a finding's life.
var Statuses = []Status{StatusOpen, StatusReclassified, StatusAllowed, StatusClosed}

// Withdrawn reports whether the finding no longer stands on its own: an
// allow rule withdrew it, or its crossing turned out refused and the
// trace's blocked_attempt finding tells the rest. Listings hide withdrawn
// findings unless asked for all.
func (s Status) Withdrawn() bool { return s == StatusAllowed || s == StatusReclassified }

// ParseRule returns the rule named s, or an error that lists every rule.
func ParseRule(s string) (Rule, error) { return parseName("rule", s, Rules) }

// ParseSeverity returns the severity named s, or an error that lists every
// severity.
func ParseSeverity(s string) (Severity, error) { return parseName("severity", s, Severities) }

// ParseStatus returns the status named s, or an error that lists every
// status.
func ParseStatus(s string) (Status, error) { return parseName("status", s, Statuses) }

// Names joins names for a message: "low, medium, high, critical".
func Names[T ~string](names []T) string {
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = string(n)
	}
	return strings.Join(s, ", ")
}

func parseName[T ~string](kind, s string, names []T) (T, error) {
	for _, n := range names {
		if string(n) == s {
			return n, nil
		}
	}
	return "", fmt.Errorf("unknown %s %q: want one of %s", kind, s, Names(names))
}

// Outcome of a crossing.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeBlocked   = "blocked"
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
	// Reason explains the severity or status in a sentence.
	Reason string

	TraceID  TraceID
	Tenants  []string // sorted
	Services []string // sorted, every service seen in the trace
	Edges    []CrossingEdge
	// Mismatches lists the spans whose own tenant values disagree (RuleTenantMismatch).
	Mismatches []Mismatch
	// Keys lists the spans that used a foreign or global key (RuleForeignSigningKey).
	Keys []KeyUse
	// Queries lists unscoped statements (RuleUnscopedQuery), by shape only:
	// the statement text is never kept.
	Queries []UnscopedQuery
	// Spans is the evidence: the spans on crossing edges and offending spans, capped.
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

// EdgeEnd is one side of a crossing edge. TraceID is set on the far side of
// a span link, which lives in another trace.
type EdgeEnd struct {
	TraceID TraceID
	SpanID  SpanID
	Service string
	Name    string
	Tenant  string
}

// CrossingEdge is a parent→child step (or a producer→consumer span link)
// where the tenant changes. Hops counts the spans without a tenant between
// the two ends (0: direct parent). Outcome is succeeded or blocked, judged
// on the child.
type CrossingEdge struct {
	From    EdgeEnd
	To      EdgeEnd
	Hops    int
	Link    bool
	Outcome string
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
	Outcome   string // succeeded or blocked
	Data      bool   // the span read or wrote stored data
	// Detail is what the caller read from the span itself while it still
	// held it (Batch.Annotate); nil when the span came in an earlier request.
	Detail *SpanDetail
}

// SpanDetail is the rest of an evidence span as its request carried it:
// kind, timing, status and attributes, already redacted by the caller. The
// detector never reads it; it only carries it into the finding's later
// versions, which are built after the request is gone.
type SpanDetail struct {
	Kind          string
	StartUnixNano uint64
	EndUnixNano   uint64
	Status        string
	Attributes    map[string]string
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

// KeyUse is a span whose identifier (a signing key id) belongs to another
// tenant, or to none.
type KeyUse struct {
	SpanID     SpanID
	Service    string
	Name       string
	Attribute  string
	Identifier string
	KeyTenant  string // "" for a global key
	SpanTenant string
	Global     bool
}

// UnscopedQuery is a database span whose statement reads or writes scoped
// tables without a tenant predicate.
type UnscopedQuery struct {
	SpanID  SpanID
	Service string
	Name    string
	Tables  []string
}

// LeakID is deterministic in the trace and the rule, so that a restarted
// collector, a second collector behind a load balancer and an offline scan
// all name the same crossing the same way, and stores can deduplicate.
func LeakID(trace TraceID, rule Rule) string {
	return leakID(string(rule), trace[:])
}

// windowLeakID names a per-service finding (unscoped_query,
// missing_tenant): one per service, span name and window.
func windowLeakID(rule Rule, service, name string, window time.Time) string {
	return leakID(string(rule), []byte(service), []byte(name), []byte(window.UTC().Format(time.RFC3339)))
}

func leakID(rule string, parts ...[]byte) string {
	h := sha256.New()
	h.Write([]byte("tenantguard/leak/v1\x00"))
	h.Write([]byte(rule))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write(p)
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}
