package processor

import (
	"strings"
	"sync"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/detector"
)

// Extractor reads pdata spans into the detector: ids, service, name, the
// values under the tenant keys and derivations, the outcome (status, HTTP
// and gRPC codes), whether the span touched stored data, links, binding
// identifiers and, when the unscoped-query rule is on, the statement. It
// copies no strings and allocates nothing per span (scratch buffers are
// pooled). Offline scans use it too, so the collector and `tenantguard scan`
// read spans the same way.
type Extractor struct {
	keys     []string // direct tenant attributes, KeyIndex = position
	derive   []detector.Derivator
	bindings []string
	queries  bool
	allow    func(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, sp ptrace.Span) string
	pool     sync.Pool
}

type scratch struct {
	span     []detector.RawTenant
	resource []detector.RawTenant
	links    []detector.Link
	ids      []detector.Identifier
}

// NewExtractor reads what det's rules need.
func NewExtractor(det *detector.Detector) *Extractor {
	e := &Extractor{
		keys:     append([]string(nil), det.TenantAttributes()...),
		derive:   det.Derivations(),
		bindings: det.BindingAttributes(),
		queries:  det.WantsQueries(),
	}
	e.pool.New = func() any { return &scratch{} }
	return e
}

// Semantic-convention keys the extractor reads, current names first.
const (
	attrServiceName   = "service.name"
	attrHTTPStatus    = "http.response.status_code"
	attrHTTPStatusOld = "http.status_code"
	attrGRPCStatus    = "rpc.grpc.status_code"
	attrDBSystem      = "db.system.name"
	attrDBSystemOld   = "db.system"
	attrMessaging     = "messaging.system"
	attrS3Bucket      = "aws.s3.bucket"
	attrQuery         = "db.query.text"
	attrQueryOld      = "db.statement"
)

// Feed adds every span of td to the batch. Spans with an all-zero trace id
// cannot be grouped and are skipped; Feed returns how many it skipped.
func (e *Extractor) Feed(b *detector.Batch, td ptrace.Traces) (invalid int) {
	sc := e.pool.Get().(*scratch)
	defer e.pool.Put(sc)
	var s detector.Span
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		res := rs.Resource().Attributes()
		service := ""
		if v, ok := res.Get(attrServiceName); ok && v.Type() == pcommon.ValueTypeStr {
			service = v.Str()
		}
		sc.resource = e.appendTenants(sc.resource[:0], res, true)
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j)
			spans := ss.Spans()
			for k := 0; k < spans.Len(); k++ {
				sp := spans.At(k)
				tid := sp.TraceID()
				if tid.IsEmpty() {
					invalid++
					continue
				}
				s = detector.Span{
					TraceID:       detector.TraceID(tid),
					SpanID:        detector.SpanID(sp.SpanID()),
					ParentID:      detector.SpanID(sp.ParentSpanID()),
					Service:       service,
					Name:          sp.Name(),
					StartUnixNano: uint64(sp.StartTimestamp()),
					EndUnixNano:   uint64(sp.EndTimestamp()),
					StatusError:   sp.Status().Code() == ptrace.StatusCodeError,
					GRPCStatus:    -1,
				}
				attrs := sp.Attributes()
				sc.span = e.appendTenants(sc.span[:0], attrs, false)
				sc.span = append(sc.span, sc.resource...)
				s.Tenants = sc.span
				e.readOutcome(&s, attrs)
				sc.ids = e.appendIdentifiers(sc.ids[:0], attrs, res)
				s.Identifiers = sc.ids
				if links := sp.Links(); links.Len() > 0 {
					sc.links = sc.links[:0]
					for l := 0; l < links.Len(); l++ {
						ln := links.At(l)
						sc.links = append(sc.links, detector.Link{TraceID: detector.TraceID(ln.TraceID()), SpanID: detector.SpanID(ln.SpanID())})
					}
					s.Links = sc.links
				}
				if e.allow != nil {
					s.AllowedBy = e.allow(rs, ss, sp)
				}
				b.Add(&s)
			}
		}
	}
	return invalid
}

// readOutcome fills the HTTP and gRPC codes, the data kind and, when asked
// for, the statement.
func (e *Extractor) readOutcome(s *detector.Span, attrs pcommon.Map) {
	if attrs.Len() == 0 {
		return
	}
	attrs.Range(func(k string, v pcommon.Value) bool {
		switch k {
		case attrHTTPStatus, attrHTTPStatusOld:
			if v.Type() == pcommon.ValueTypeInt {
				s.HTTPStatus = int32(v.Int())
			}
		case attrGRPCStatus:
			if v.Type() == pcommon.ValueTypeInt {
				s.GRPCStatus = int32(v.Int())
			}
		case attrDBSystem, attrDBSystemOld:
			if v.Type() == pcommon.ValueTypeStr {
				s.Data = dataKindOfDB(v.Str())
			}
		case attrMessaging:
			s.Data = detector.DataMessaging
		case attrS3Bucket:
			s.Data = detector.DataObjectStorage
		case attrQuery, attrQueryOld:
			if e.queries && v.Type() == pcommon.ValueTypeStr && (s.Query == "" || k == attrQuery) {
				s.Query = v.Str()
			}
		}
		return true
	})
}

// dataKindOfDB tells caches from databases by db.system.
func dataKindOfDB(system string) detector.DataKind {
	switch strings.ToLower(system) {
	case "redis", "memcached", "valkey", "hazelcast", "geode", "coherence":
		return detector.DataCache
	}
	return detector.DataDatabase
}

// appendTenants appends the values under the configured keys, in key
// order, then the values the derivations capture. Types that cannot name a
// tenant (bool, map, bytes) are passed on with no kind so the detector
// counts them as rejected rather than ignoring them silently.
func (e *Extractor) appendTenants(dst []detector.RawTenant, attrs pcommon.Map, resource bool) []detector.RawTenant {
	if attrs.Len() == 0 {
		return dst
	}
	for ki, key := range e.keys {
		v, ok := attrs.Get(key)
		if !ok {
			continue
		}
		idx := uint8(ki)
		if v.Type() == pcommon.ValueTypeSlice {
			sl := v.Slice()
			for n := 0; n < sl.Len(); n++ {
				dst = append(dst, detector.RawTenant{KeyIndex: idx, Resource: resource, Value: rawValue(sl.At(n))})
			}
			continue
		}
		dst = append(dst, detector.RawTenant{KeyIndex: idx, Resource: resource, Value: rawValue(v)})
	}
	for i := range e.derive {
		dv := &e.derive[i]
		v, ok := attrs.Get(dv.Attribute)
		if !ok || v.Type() != pcommon.ValueTypeStr {
			continue
		}
		if t, ok := dv.Derive(v.Str()); ok {
			dst = append(dst, detector.RawTenant{KeyIndex: dv.KeyIndex, Resource: resource, Value: detector.StringValue(t)})
		}
	}
	return dst
}

// appendIdentifiers reads the binding attributes, span first, then resource.
func (e *Extractor) appendIdentifiers(dst []detector.Identifier, attrs, res pcommon.Map) []detector.Identifier {
	for bi, key := range e.bindings {
		v, ok := attrs.Get(key)
		if !ok {
			v, ok = res.Get(key)
		}
		if ok && v.Type() == pcommon.ValueTypeStr && v.Str() != "" {
			dst = append(dst, detector.Identifier{Binding: uint8(bi), Value: v.Str()})
		}
	}
	return dst
}

func rawValue(v pcommon.Value) detector.Value {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return detector.StringValue(v.Str())
	case pcommon.ValueTypeInt:
		return detector.IntValue(v.Int())
	case pcommon.ValueTypeDouble:
		return detector.DoubleValue(v.Double())
	default:
		return detector.Value{}
	}
}
