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
// KeyIndex indexes Config.TenantKeys; a lower index is a more trusted key.
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
}
