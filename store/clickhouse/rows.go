package clickhouse

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/tenantguard/tenantguard/store"
)

// columnDef is one column of a table. The same list renders the DDL, names
// the columns of every INSERT and SELECT, and drives the codec tests, so the
// schema and the Go encoding cannot drift apart.
type columnDef struct {
	Name string
	Type string
	// Comment is stored with the column (system.columns, SHOW CREATE).
	Comment string
	// Defaulted columns are not written yet: store.Span does not carry them,
	// so ClickHouse fills the type's default (empty string, 0, 1970-01-01,
	// empty map).
	Defaulted bool
	// Default is the DEFAULT expression of a column added to a table with
	// rows: what those rows read.
	Default string
}

const dateTime64 = "DateTime64(9, 'UTC')"

// leakColumns are the columns of tenant_leaks, one row per finding version.
var leakColumns = []columnDef{
	{Name: "leak_id", Type: "String", Comment: "stable id of the finding: derived from trace id and rule"},
	{Name: "version", Type: "UInt64", Comment: "strictly increasing per leak_id; the highest is the current state"},
	{Name: "trace_id", Type: "FixedString(32)", Comment: "lowercase hex"},
	{Name: "rule", Type: "LowCardinality(String)"},
	{Name: "severity", Type: "LowCardinality(String)"},
	{Name: "status", Type: "LowCardinality(String)", Comment: "open, closed or allowed"},
	{Name: "allowed_by", Type: "LowCardinality(String)", Comment: "the allow rule that withdrew the finding"},
	{Name: "tenants", Type: "Array(LowCardinality(String))", Comment: "sorted"},
	{Name: "services", Type: "Array(LowCardinality(String))", Comment: "every service seen in the trace, sorted"},
	{Name: "crossing_edges", Type: "Array(Tuple(" +
		"from_span_id String, from_service LowCardinality(String), from_span String, from_tenant LowCardinality(String), " +
		"to_span_id String, to_service LowCardinality(String), to_span String, to_tenant LowCardinality(String), " +
		"hops UInt16))", Comment: "parent to child steps where the tenant changes"},
	{Name: "mismatches", Type: "Array(Tuple(" +
		"span_id String, service LowCardinality(String), span String, " +
		"sources Array(Tuple(tenant_key String, tenant String, resource Bool))))",
		Comment: "spans whose own tenant values disagree"},
	{Name: "span_count", Type: "UInt32"},
	{Name: "first_seen", Type: dateTime64, Comment: "first span of the trace"},
	{Name: "last_seen", Type: dateTime64, Comment: "latest span of the trace"},
	{Name: "detected_at", Type: dateTime64, Comment: "when the first version was emitted"},
	{Name: "collector", Type: "LowCardinality(String)", Comment: "collector instance that recorded the finding"},
	// Added by migration 5; rows written before read as empty.
	{Name: "reason", Type: "String", Comment: "the severity or the status explained in a sentence"},
	{Name: "keys", Type: "Array(Tuple(" +
		"span_id String, service LowCardinality(String), span String, attribute LowCardinality(String), " +
		"identifier String, key_tenant LowCardinality(String), span_tenant LowCardinality(String), global Bool))",
		Comment: "spans whose token was verified with the key of another tenant or a global one"},
	{Name: "queries", Type: "Array(Tuple(span_id String, service LowCardinality(String), span String, tables Array(String)))",
		Comment: "unscoped statements: the tables each reached without a tenant predicate"},
	{Name: "crossing_edge_details", Type: "Array(Tuple(" +
		"from_trace_id String, to_trace_id String, link Bool, outcome LowCardinality(String)))",
		Comment: "per crossing edge, in the same order: the trace ids of the ends of a span link, whether it is a link, succeeded or blocked"},
}

// spanColumns are the columns of tenant_leak_spans, one row per evidence
// span of a finding version.
var spanColumns = []columnDef{
	{Name: "leak_id", Type: "String"},
	{Name: "version", Type: "UInt64"},
	{Name: "trace_id", Type: "FixedString(32)"},
	{Name: "evidence_index", Type: "UInt16", Comment: "position in the evidence list of this version"},
	{Name: "span_id", Type: "String"},
	{Name: "parent_span_id", Type: "String"},
	{Name: "service", Type: "LowCardinality(String)"},
	{Name: "span_name", Type: "String"},
	// The comments of kind, start_time, duration_ns, status_code and
	// attributes are those migration 2 created them with (released DDL
	// never changes); migration 4 gives them their current ones.
	{Name: "kind", Type: "LowCardinality(String)", Comment: "not recorded by the detector yet: empty"},
	{Name: "tenant", Type: "LowCardinality(String)"},
	{Name: "tenant_key", Type: "LowCardinality(String)", Comment: "attribute the tenant was read from"},
	{Name: "start_time", Type: dateTime64, Comment: "not recorded by the detector yet: 1970-01-01"},
	{Name: "duration_ns", Type: "UInt64", Comment: "not recorded by the detector yet: 0"},
	{Name: "status_code", Type: "LowCardinality(String)", Comment: "not recorded by the detector yet: empty"},
	{Name: "attributes", Type: "Map(LowCardinality(String), String)", Comment: "redacted span attributes; not recorded by the detector yet: empty"},
	{Name: "first_seen", Type: dateTime64, Comment: "first_seen of the finding, for partitioning"},
	{Name: "last_seen", Type: dateTime64, Comment: "last_seen of the finding"},
	// Added by migration 5; rows written before read as empty.
	{Name: "outcome", Type: "LowCardinality(String)", Comment: "succeeded or blocked, when the result of the span is known"},
	{Name: "data", Type: "Bool", Comment: "the span touched the data of the foreign tenant"},
	{Name: "detected_at", Type: dateTime64, Comment: "detected_at of the finding: partition and retention (collector time)", Default: "last_seen"},
}

// spanReadColumns are the columns the readers select from tenant_leak_spans.
var spanReadColumns = []string{
	"leak_id", "version", "evidence_index", "span_id", "parent_span_id",
	"service", "span_name", "kind", "tenant", "tenant_key",
	"start_time", "duration_ns", "status_code", "attributes", "outcome", "data",
}

// written returns the columns an INSERT names: all but the defaulted ones.
func written(cols []columnDef) []columnDef {
	var out []columnDef
	for _, c := range cols {
		if !c.Defaulted {
			out = append(out, c)
		}
	}
	return out
}

func names(cols []columnDef) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.Name
	}
	return out
}

// insertSQL is the INSERT the batch API prepares; the driver appends the
// data block. Tables are named without the database: the connection's
// default database is the configured one.
func insertSQL(table string, cols []columnDef) string {
	return "INSERT INTO " + table + " (" + strings.Join(names(written(cols)), ", ") + ")"
}

// edgeRow is one element of crossing_edges; the ch tags name the tuple
// elements.
type edgeRow struct {
	FromSpanID  string `ch:"from_span_id"`
	FromService string `ch:"from_service"`
	FromSpan    string `ch:"from_span"`
	FromTenant  string `ch:"from_tenant"`
	ToSpanID    string `ch:"to_span_id"`
	ToService   string `ch:"to_service"`
	ToSpan      string `ch:"to_span"`
	ToTenant    string `ch:"to_tenant"`
	Hops        uint16 `ch:"hops"`
}

// edgeDetailRow is one element of crossing_edge_details, at the index of
// its edge in crossing_edges.
type edgeDetailRow struct {
	FromTraceID string `ch:"from_trace_id"`
	ToTraceID   string `ch:"to_trace_id"`
	Link        bool   `ch:"link"`
	Outcome     string `ch:"outcome"`
}

type keyRow struct {
	SpanID     string `ch:"span_id"`
	Service    string `ch:"service"`
	Span       string `ch:"span"`
	Attribute  string `ch:"attribute"`
	Identifier string `ch:"identifier"`
	KeyTenant  string `ch:"key_tenant"`
	SpanTenant string `ch:"span_tenant"`
	Global     bool   `ch:"global"`
}

type queryRow struct {
	SpanID  string   `ch:"span_id"`
	Service string   `ch:"service"`
	Span    string   `ch:"span"`
	Tables  []string `ch:"tables"`
}

type sourceRow struct {
	TenantKey string `ch:"tenant_key"`
	Tenant    string `ch:"tenant"`
	Resource  bool   `ch:"resource"`
}

type mismatchRow struct {
	SpanID  string      `ch:"span_id"`
	Service string      `ch:"service"`
	Span    string      `ch:"span"`
	Sources []sourceRow `ch:"sources"`
}

// RecordError says why one record cannot be written: it is a poison record,
// and retrying it unchanged would fail the same way.
type RecordError struct {
	LeakID string
	Field  string
	Reason string
}

func (e *RecordError) Error() string {
	id := e.LeakID
	if id == "" {
		id = "(no leak_id)"
	}
	return fmt.Sprintf("finding %s: %s: %s", id, e.Field, e.Reason)
}

// DateTime64(9) holds 1900-01-01 to 2262-04-11 (int64 nanoseconds).
var (
	minTime = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Unix(0, math.MaxInt64).UTC()
	// epoch stands for the zero time.Time, which DateTime64(9) cannot hold;
	// no finding is ever dated 1970-01-01T00:00:00Z, so it reads back as zero.
	epoch = time.Unix(0, 0).UTC()
)

func encodeTime(ev *store.Evidence, field string, t time.Time) (time.Time, error) {
	if t.IsZero() {
		return epoch, nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		return time.Time{}, &RecordError{LeakID: ev.LeakID, Field: field,
			Reason: fmt.Sprintf("%s is outside the DateTime64(9) range (1900 to 2262)", t.Format(time.RFC3339Nano))}
	}
	return t.UTC(), nil
}

// spanStart is an evidence span's start as stored: a start that the
// column cannot hold (a hostile or broken clock) is stored as unknown
// rather than failing the finding.
func spanStart(t time.Time) time.Time {
	if t.IsZero() || t.Before(minTime) || t.After(maxTime) {
		return epoch
	}
	return t.UTC()
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func decodeTime(t time.Time) time.Time {
	if t.Equal(epoch) {
		return time.Time{}
	}
	return t.UTC()
}

func isTraceID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// leakRow converts one evidence record into the values of a tenant_leaks
// row, in leakColumns order. It rejects what ClickHouse could not store
// faithfully, with the reason.
func leakRow(ev *store.Evidence) ([]any, error) {
	if ev.LeakID == "" {
		return nil, &RecordError{Field: "leak_id", Reason: "empty"}
	}
	if !isTraceID(ev.TraceID) {
		return nil, &RecordError{LeakID: ev.LeakID, Field: "trace_id", Reason: fmt.Sprintf("%q is not 32 lowercase hex digits", ev.TraceID)}
	}
	if ev.SpanCount < 0 || int64(ev.SpanCount) > math.MaxUint32 {
		return nil, &RecordError{LeakID: ev.LeakID, Field: "span_count", Reason: fmt.Sprintf("%d does not fit UInt32", ev.SpanCount)}
	}
	if len(ev.Spans) > math.MaxUint16+1 {
		return nil, &RecordError{LeakID: ev.LeakID, Field: "spans", Reason: fmt.Sprintf("%d evidence spans, at most %d fit", len(ev.Spans), math.MaxUint16+1)}
	}
	first, err := encodeTime(ev, "first_seen", ev.FirstSeen)
	if err != nil {
		return nil, err
	}
	last, err := encodeTime(ev, "last_seen", ev.LastSeen)
	if err != nil {
		return nil, err
	}
	detected, err := encodeTime(ev, "detected_at", ev.DetectedAt)
	if err != nil {
		return nil, err
	}
	edges := make([]edgeRow, 0, len(ev.CrossingEdges))
	details := make([]edgeDetailRow, 0, len(ev.CrossingEdges))
	for _, e := range ev.CrossingEdges {
		details = append(details, edgeDetailRow{FromTraceID: e.From.TraceID, ToTraceID: e.To.TraceID, Link: e.Link, Outcome: e.Outcome})
		if e.Hops < 0 || e.Hops > math.MaxUint16 {
			return nil, &RecordError{LeakID: ev.LeakID, Field: "crossing_edges.hops", Reason: fmt.Sprintf("%d does not fit UInt16", e.Hops)}
		}
		edges = append(edges, edgeRow{
			FromSpanID: e.From.SpanID, FromService: e.From.Service, FromSpan: e.From.Span, FromTenant: e.From.Tenant,
			ToSpanID: e.To.SpanID, ToService: e.To.Service, ToSpan: e.To.Span, ToTenant: e.To.Tenant,
			Hops: uint16(e.Hops),
		})
	}
	mismatches := make([]mismatchRow, 0, len(ev.Mismatches))
	for _, m := range ev.Mismatches {
		src := make([]sourceRow, 0, len(m.Values))
		for _, v := range m.Values {
			src = append(src, sourceRow{TenantKey: v.Key, Tenant: v.Tenant, Resource: v.Resource})
		}
		mismatches = append(mismatches, mismatchRow{SpanID: m.SpanID, Service: m.Service, Span: m.Span, Sources: src})
	}
	keys := make([]keyRow, 0, len(ev.Keys))
	for _, k := range ev.Keys {
		keys = append(keys, keyRow{SpanID: k.SpanID, Service: k.Service, Span: k.Span, Attribute: k.Attribute,
			Identifier: k.Identifier, KeyTenant: k.KeyTenant, SpanTenant: k.SpanTenant, Global: k.Global})
	}
	queries := make([]queryRow, 0, len(ev.Queries))
	for _, q := range ev.Queries {
		tables := q.Tables
		if tables == nil {
			tables = []string{}
		}
		queries = append(queries, queryRow{SpanID: q.SpanID, Service: q.Service, Span: q.Span, Tables: tables})
	}
	tenants := slices.Sorted(slices.Values(ev.Tenants))
	if tenants == nil {
		tenants = []string{}
	}
	services := slices.Clone(ev.Services)
	if services == nil {
		services = []string{}
	}
	return []any{
		ev.LeakID, ev.Version, ev.TraceID, ev.Rule, ev.Severity, ev.Status, ev.AllowedBy,
		tenants, services, edges, mismatches, uint32(ev.SpanCount),
		first, last, detected, ev.Collector,
		ev.Reason, keys, queries, details,
	}, nil
}

// spanRows converts the evidence spans of one record into tenant_leak_spans
// rows, in written(spanColumns) order. Call it after leakRow accepted ev.
func spanRows(ev *store.Evidence) [][]any {
	first, _ := encodeTime(ev, "first_seen", ev.FirstSeen)
	last, _ := encodeTime(ev, "last_seen", ev.LastSeen)
	detected, _ := encodeTime(ev, "detected_at", ev.DetectedAt)
	rows := make([][]any, 0, len(ev.Spans))
	for i, s := range ev.Spans {
		attrs := s.Attributes
		if attrs == nil {
			attrs = map[string]string{}
		}
		rows = append(rows, []any{
			ev.LeakID, ev.Version, ev.TraceID, uint16(i), s.SpanID, s.ParentID,
			s.Service, s.Name, s.Kind, s.Tenant, s.TenantKey,
			spanStart(s.StartTime), s.DurationNs, s.Status, attrs, first, last,
			s.Outcome, s.Data, detected,
		})
	}
	return rows
}

// encodeBatch converts a batch into rows for both tables. The first record
// that cannot be stored fails the whole batch with a *RecordError: the
// shipper then bisects to set it aside.
func encodeBatch(batch []store.Evidence) (leaks, spans [][]any, err error) {
	leaks = make([][]any, 0, len(batch))
	for i := range batch {
		row, err := leakRow(&batch[i])
		if err != nil {
			return nil, nil, err
		}
		leaks = append(leaks, row)
		spans = append(spans, spanRows(&batch[i])...)
	}
	return leaks, spans, nil
}

// leakScan holds the scan destinations of one tenant_leaks row, in
// leakColumns order.
type leakScan struct {
	leakID, traceID, rule, severity, status, allowedBy, collector, reason string
	keys                                                                  []keyRow
	queries                                                               []queryRow
	details                                                               []edgeDetailRow
	version                                                               uint64
	tenants, services                                                     []string
	edges                                                                 []edgeRow
	mismatches                                                            []mismatchRow
	spanCount                                                             uint32
	first, last, detected                                                 time.Time
}

func (s *leakScan) dest() []any {
	return []any{
		&s.leakID, &s.version, &s.traceID, &s.rule, &s.severity, &s.status, &s.allowedBy,
		&s.tenants, &s.services, &s.edges, &s.mismatches, &s.spanCount,
		&s.first, &s.last, &s.detected, &s.collector,
		&s.reason, &s.keys, &s.queries, &s.details,
	}
}

// evidence rebuilds the record as the journal holds it: ClickHouse has no
// null list, so an empty list reads back as the journal writes an empty
// one: tenants and services as null (the detector leaves them nil, as for
// a missing tenant), crossing edges and spans as [], and the omitted lists
// (mismatches, keys, queries) absent.
func (s *leakScan) evidence() store.Evidence {
	ev := store.Evidence{
		LeakID: s.leakID, Version: s.version, Rule: s.rule, Severity: s.severity, Status: s.status,
		AllowedBy: s.allowedBy, Reason: s.reason, TraceID: strings.TrimRight(s.traceID, "\x00"),
		Tenants: nilIfNone(s.tenants), Services: nilIfNone(s.services),
		CrossingEdges: make([]store.CrossingEdge, 0, len(s.edges)),
		Spans:         []store.Span{},
		SpanCount:     int(s.spanCount),
		FirstSeen:     decodeTime(s.first), LastSeen: decodeTime(s.last), DetectedAt: decodeTime(s.detected),
		Collector: s.collector,
	}
	for i, e := range s.edges {
		var d edgeDetailRow // rows written before migration 5 have none
		if i < len(s.details) {
			d = s.details[i]
		}
		ev.CrossingEdges = append(ev.CrossingEdges, store.CrossingEdge{
			From: store.EdgeEnd{TraceID: d.FromTraceID, SpanID: e.FromSpanID, Service: e.FromService, Span: e.FromSpan, Tenant: e.FromTenant},
			To:   store.EdgeEnd{TraceID: d.ToTraceID, SpanID: e.ToSpanID, Service: e.ToService, Span: e.ToSpan, Tenant: e.ToTenant},
			Hops: int(e.Hops), Link: d.Link, Outcome: d.Outcome,
		})
	}
	for _, k := range s.keys {
		ev.Keys = append(ev.Keys, store.KeyUse{SpanID: k.SpanID, Service: k.Service, Span: k.Span, Attribute: k.Attribute,
			Identifier: k.Identifier, KeyTenant: k.KeyTenant, SpanTenant: k.SpanTenant, Global: k.Global})
	}
	for _, q := range s.queries {
		ev.Queries = append(ev.Queries, store.Query{SpanID: q.SpanID, Service: q.Service, Span: q.Span, Tables: nonNil(q.Tables)})
	}
	for _, m := range s.mismatches {
		sm := store.Mismatch{SpanID: m.SpanID, Service: m.Service, Span: m.Span}
		for _, v := range m.Sources {
			sm.Values = append(sm.Values, store.TenantSource{Key: v.TenantKey, Tenant: v.Tenant, Resource: v.Resource})
		}
		ev.Mismatches = append(ev.Mismatches, sm)
	}
	return ev
}

func nilIfNone(xs []string) []string {
	if len(xs) == 0 {
		return nil
	}
	return xs
}

func nonNil(xs []string) []string {
	if xs == nil {
		return []string{}
	}
	return xs
}

// spanScan holds the scan destinations of one row of the spans query, in
// spanReadColumns order.
type spanScan struct {
	leakID                                                   string
	version                                                  uint64
	index                                                    uint16
	spanID, parentID, service, name, kind, tenant, tenantKey string
	start                                                    time.Time
	duration                                                 uint64
	status, outcome                                          string
	data                                                     bool
	attributes                                               map[string]string
}

func (s *spanScan) dest() []any {
	return []any{&s.leakID, &s.version, &s.index, &s.spanID, &s.parentID, &s.service, &s.name, &s.kind,
		&s.tenant, &s.tenantKey, &s.start, &s.duration, &s.status, &s.attributes, &s.outcome, &s.data}
}

// versionedSpan is an evidence span with the finding version that last
// recorded it.
type versionedSpan struct {
	Version uint64
	Index   int
	Span    store.Span
}

func (s *spanScan) versioned() versionedSpan {
	return versionedSpan{Version: s.version, Index: int(s.index), Span: store.Span{
		SpanID: s.spanID, ParentID: s.parentID, Service: s.service, Name: s.name, Tenant: s.tenant, TenantKey: s.tenantKey,
		Outcome: s.outcome, Data: s.data,
		Kind: s.kind, StartTime: decodeTime(s.start), DurationNs: s.duration, Status: s.status, Attributes: nilIfEmpty(s.attributes),
	}}
}
