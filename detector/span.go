package detector

import "encoding/hex"

// TraceID is a W3C trace id. Fixed-size so that it keys maps without allocating.
type TraceID [16]byte

// String renders the id as lowercase hex, the form every trace UI takes.
func (t TraceID) String() string { return hex.EncodeToString(t[:]) }

// IsEmpty reports whether the id is all zeros (invalid in W3C and OTLP).
func (t TraceID) IsEmpty() bool { return t == TraceID{} }

// SpanID is a W3C span id.
type SpanID [8]byte

// String renders the id as lowercase hex.
func (s SpanID) String() string { return hex.EncodeToString(s[:]) }

// IsEmpty reports whether the id is all zeros (a root span's parent).
func (s SpanID) IsEmpty() bool { return s == SpanID{} }

// ValueKind says how a tenant value was typed on the wire.
type ValueKind uint8

const (
	KindString ValueKind = iota + 1
	KindInt
	KindDouble
)

// Value is a raw tenant attribute value before normalisation. Callers fill
// it from whatever carried the span; the detector normalises it so that the
// int 42 and the string "42" are the same tenant.
type Value struct {
	Kind   ValueKind
	Str    string
	Int    int64
	Double float64
}

// StringValue, IntValue and DoubleValue build raw values.
func StringValue(s string) Value  { return Value{Kind: KindString, Str: s} }
func IntValue(i int64) Value      { return Value{Kind: KindInt, Int: i} }
func DoubleValue(f float64) Value { return Value{Kind: KindDouble, Double: f} }

// RawTenant is one tenant value found on a span, with where it was found.
// KeyIndex indexes Detector.Keys(): the configured tenant attributes, then
// the derivations; a lower index is a more trusted key.
type RawTenant struct {
	KeyIndex uint8
	Resource bool
	Value    Value
}

// Span is the detector's view of one span. Strings may alias the caller's
// buffers: the detector copies what it keeps, so the caller may reuse them
// as soon as Batch.Add returns.
type Span struct {
	TraceID  TraceID
	SpanID   SpanID
	ParentID SpanID
	Service  string
	Name     string
	// StartUnixNano is used for the trace's first-seen time when set.
	StartUnixNano uint64
	// EndUnixNano dates the trace's last activity in evidence when set.
	EndUnixNano uint64
	// Tenants holds the values under the configured keys: span attributes
	// first, then resource attributes, each in key order. A string-array
	// attribute contributes one entry per element.
	Tenants []RawTenant

	// Outcome: an error status, or an HTTP or gRPC status that refuses
	// access, makes a crossing on this span a blocked attempt.
	StatusError bool
	HTTPStatus  int32 // 0: none
	GRPCStatus  int32 // -1: none
	// Data says the span read or wrote stored data (database, cache,
	// object storage, messaging): a foreign tenant there is a worse leak.
	Data DataKind
	// Calls says the span is a client or producer span: what it calls may
	// run in another service, whose spans can reach the detector long
	// after this one's (see buryLinkTargets).
	Calls bool
	// Links are the span's links (producer → consumer, batch jobs).
	Links []Link
	// Identifiers are the values under Config.Bindings' attributes.
	Identifiers []Identifier
	// Query is the database statement, when the unscoped-query rule is on.
	Query string
	// AllowedBy names an allow rule the caller matched on this span (OTTL
	// conditions are evaluated by the processor); the trace is exempt.
	AllowedBy string
}

// DataKind classifies data-bearing spans.
type DataKind uint8

const (
	DataNone DataKind = iota
	DataDatabase
	DataCache
	DataObjectStorage
	DataMessaging
)

// Link points at a span of another (or the same) trace.
type Link struct {
	TraceID TraceID
	SpanID  SpanID
}

// Identifier is a value under a binding's attribute, e.g. the key id that
// verified the span's token.
type Identifier struct {
	Binding uint8 // index into Config.Bindings
	Value   string
}

// blocked says whether the span's outcome refused access: HTTP 401, 403 or
// 404, gRPC PERMISSION_DENIED, UNAUTHENTICATED or NOT_FOUND, or an error
// status. Isolation working looks like this.
func (s *Span) blocked() bool {
	switch s.HTTPStatus {
	case 401, 403, 404:
		return true
	}
	switch s.GRPCStatus {
	case 5, 7, 16:
		return true
	}
	return s.StatusError
}
