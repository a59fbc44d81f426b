package store

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

// Evidence is one version of a finding as stored: the one record every
// output renders (the journal line, the ClickHouse row, the log line and
// the Slack message, `leaks` and `scan`). NewEvidence is its only
// constructor from a detector finding and Message its only sentence. Field
// names are a contract: `leaks list --json`, the journal and downstream
// tooling read them. Rule, Severity and Status hold the detector's names
// (detector.Rules, detector.Severities, detector.Statuses).
type Evidence struct {
	LeakID    string `json:"leak_id"`
	Version   uint64 `json:"version"`
	Rule      string `json:"rule"`
	Severity  string `json:"severity"`
	Status    string `json:"status"`
	AllowedBy string `json:"allowed_by,omitempty"`
	// Reason explains the severity or the status in a sentence.
	Reason string `json:"reason,omitempty"`
	// TraceID is lowercase hex.
	TraceID       string         `json:"trace_id"`
	Tenants       []string       `json:"tenants"`
	Services      []string       `json:"services"`
	CrossingEdges []CrossingEdge `json:"crossing_edges"`
	Mismatches    []Mismatch     `json:"mismatches,omitempty"`
	Keys          []KeyUse       `json:"keys,omitempty"`
	Queries       []Query        `json:"queries,omitempty"`
	Spans         []Span         `json:"spans"`
	SpanCount     int            `json:"span_count"`
	FirstSeen     time.Time      `json:"first_seen"`
	LastSeen      time.Time      `json:"last_seen"`
	DetectedAt    time.Time      `json:"detected_at"`
	// Collector names the collector instance that recorded the finding.
	Collector string `json:"collector,omitempty"`
}

// NewEvidence is the stored form of a finding, naming collector as the
// collector instance that recorded it ("" offline). The processor, `scan`
// and the red-team helper all build their records here.
func NewEvidence(f *detector.Finding, collector string) Evidence {
	ev := Evidence{
		LeakID:        f.LeakID,
		Version:       f.Version,
		Rule:          string(f.Rule),
		Severity:      string(f.Severity),
		Status:        string(f.Status),
		AllowedBy:     f.AllowedBy,
		Reason:        f.Reason,
		TraceID:       f.TraceID.String(),
		Tenants:       f.Tenants,
		Services:      f.Services,
		CrossingEdges: make([]CrossingEdge, 0, len(f.Edges)),
		Spans:         make([]Span, 0, len(f.Spans)),
		SpanCount:     f.SpanCount,
		FirstSeen:     f.FirstSeen.UTC(),
		LastSeen:      f.LastSeen.UTC(),
		DetectedAt:    f.DetectedAt.UTC(),
		Collector:     collector,
	}
	for _, e := range f.Edges {
		ev.CrossingEdges = append(ev.CrossingEdges, CrossingEdge{
			From: newEdgeEnd(e.From), To: newEdgeEnd(e.To), Hops: e.Hops, Link: e.Link, Outcome: e.Outcome,
		})
	}
	for _, m := range f.Mismatches {
		sm := Mismatch{SpanID: m.SpanID.String(), Service: m.Service, Span: m.Name}
		for _, v := range m.Values {
			sm.Values = append(sm.Values, TenantSource{Key: v.Key, Tenant: v.Tenant, Resource: v.Resource})
		}
		ev.Mismatches = append(ev.Mismatches, sm)
	}
	for _, k := range f.Keys {
		ev.Keys = append(ev.Keys, KeyUse{SpanID: k.SpanID.String(), Service: k.Service, Span: k.Name, Attribute: k.Attribute,
			Identifier: k.Identifier, KeyTenant: k.KeyTenant, SpanTenant: k.SpanTenant, Global: k.Global})
	}
	for _, q := range f.Queries {
		ev.Queries = append(ev.Queries, Query{SpanID: q.SpanID.String(), Service: q.Service, Span: q.Name, Tables: q.Tables})
	}
	for _, s := range f.Spans {
		sp := Span{SpanID: s.SpanID.String(), Service: s.Service, Name: s.Name, Tenant: s.Tenant, TenantKey: s.TenantKey,
			Outcome: s.Outcome, Data: s.Data}
		if !s.ParentID.IsEmpty() {
			sp.ParentID = s.ParentID.String()
		}
		if d := s.Detail; d != nil {
			sp.Kind, sp.Status, sp.Attributes = d.Kind, d.Status, d.Attributes
			if d.StartUnixNano > 0 && d.StartUnixNano <= math.MaxInt64 {
				sp.StartTime = time.Unix(0, int64(d.StartUnixNano)).UTC()
			}
			if d.StartUnixNano > 0 && d.EndUnixNano > d.StartUnixNano {
				sp.DurationNs = d.EndUnixNano - d.StartUnixNano
			}
		}
		ev.Spans = append(ev.Spans, sp)
	}
	return ev
}

func newEdgeEnd(e detector.EdgeEnd) EdgeEnd {
	end := EdgeEnd{SpanID: e.SpanID.String(), Service: e.Service, Span: e.Name, Tenant: e.Tenant}
	if !e.TraceID.IsEmpty() {
		end.TraceID = e.TraceID.String()
	}
	return end
}

// EdgeEnd is one side of a crossing edge. TraceID is set on the far side
// of a span link, which lives in another trace.
type EdgeEnd struct {
	TraceID string `json:"trace_id,omitempty"`
	SpanID  string `json:"span_id"`
	Service string `json:"service"`
	Span    string `json:"span"`
	Tenant  string `json:"tenant"`
}

// CrossingEdge is a parent→child step (or a producer→consumer span link)
// where the tenant changes; Hops counts spans without a tenant between the
// two ends; Outcome is succeeded or blocked.
type CrossingEdge struct {
	From    EdgeEnd `json:"from"`
	To      EdgeEnd `json:"to"`
	Hops    int     `json:"hops"`
	Link    bool    `json:"link,omitempty"`
	Outcome string  `json:"outcome,omitempty"`
}

// Span is an evidence span.
type Span struct {
	SpanID    string `json:"span_id"`
	ParentID  string `json:"parent_span_id,omitempty"`
	Service   string `json:"service"`
	Name      string `json:"name"`
	Tenant    string `json:"tenant,omitempty"`
	TenantKey string `json:"tenant_key,omitempty"`
	Outcome   string `json:"outcome,omitempty"`
	Data      bool   `json:"data,omitempty"`
	// The span's own details, when the request that raised or updated the
	// finding carried it: kind, start, duration, status, and attributes
	// with every value outside the clear list as a keyed digest.
	Kind       string            `json:"kind,omitempty"`
	StartTime  time.Time         `json:"start_time,omitzero"`
	DurationNs uint64            `json:"duration_ns,omitempty"`
	Status     string            `json:"status,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// KeyUse is a span whose token was verified with another tenant's key (or
// a global one).
type KeyUse struct {
	SpanID     string `json:"span_id"`
	Service    string `json:"service"`
	Span       string `json:"span"`
	Attribute  string `json:"attribute"`
	Identifier string `json:"identifier"`
	KeyTenant  string `json:"key_tenant,omitempty"`
	SpanTenant string `json:"span_tenant,omitempty"`
	Global     bool   `json:"global,omitempty"`
}

// Query is an unscoped statement, by shape: the tables it reached without
// a tenant predicate. The statement itself is never stored.
type Query struct {
	SpanID  string   `json:"span_id"`
	Service string   `json:"service"`
	Span    string   `json:"span"`
	Tables  []string `json:"tables"`
}

// TenantSource is one of a span's disagreeing tenant values.
type TenantSource struct {
	Key      string `json:"key"`
	Tenant   string `json:"tenant"`
	Resource bool   `json:"resource,omitempty"`
}

// Mismatch is a span whose own tenant values disagree.
type Mismatch struct {
	SpanID  string         `json:"span_id"`
	Service string         `json:"service"`
	Span    string         `json:"span"`
	Values  []TenantSource `json:"values"`
}

// Filter narrows a listing. Zero values match everything.
type Filter struct {
	Since   time.Time // last_seen at or after
	Tenant  string
	Service string
	Rule    string
	// IncludeAllowed also lists findings withdrawn by an allow rule.
	IncludeAllowed bool
}

// Match reports whether e passes the filter.
func (f Filter) Match(e *Evidence) bool {
	if !f.Since.IsZero() && e.LastSeen.Before(f.Since) {
		return false
	}
	if f.Tenant != "" && !has(e.Tenants, f.Tenant) {
		return false
	}
	if f.Service != "" && !has(e.Services, f.Service) {
		return false
	}
	if f.Rule != "" && e.Rule != f.Rule {
		return false
	}
	if !f.IncludeAllowed && e.Status == string(detector.StatusAllowed) {
		return false
	}
	return true
}

func has(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// Store is what every evidence backend implements. Implementations must be
// safe for concurrent use.
type Store interface {
	// Append records a batch of evidence durably: when it returns nil, every
	// record survives a crash. On error the caller keeps the batch and
	// retries; appending the same versions twice must be harmless for readers.
	Append(ctx context.Context, batch []Evidence) error
	// List returns the latest version of each finding that matches the
	// filter, most recently seen first.
	List(ctx context.Context, f Filter) ([]Evidence, error)
	// Close flushes and releases the store.
	Close() error
}

// ErrClosed is returned by a store used after Close.
var ErrClosed = errors.New("store is closed")

// Latest keeps, for each leak id, the record with the highest version, and
// orders the result by last_seen descending then leak id, so listings are
// stable across backends.
func Latest(records []Evidence) []Evidence {
	idx := make(map[string]int, len(records))
	var out []Evidence
	for _, r := range records {
		if i, ok := idx[r.LeakID]; ok {
			if r.Version > out[i].Version {
				out[i] = r
			}
			continue
		}
		idx[r.LeakID] = len(out)
		out = append(out, r)
	}
	sortEvidence(out)
	return out
}

func sortEvidence(out []Evidence) {
	slices.SortFunc(out, func(a, b Evidence) int {
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		return strings.Compare(a.LeakID, b.LeakID)
	})
}
