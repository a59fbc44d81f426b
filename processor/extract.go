package processor

import (
	"sync"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/detector"
)

// Extractor reads pdata spans into the detector: ids, service, name and the
// values under the tenant keys, without copying strings or allocating per
// span (scratch buffers are pooled). Offline scans use it too, so the
// collector and `tenantguard scan` read spans the same way.
type Extractor struct {
	keys []string
	pool sync.Pool
}

type scratch struct {
	span     []detector.RawTenant
	resource []detector.RawTenant
}

// NewExtractor reads tenants under keys, most trusted first.
func NewExtractor(keys []string) *Extractor {
	e := &Extractor{keys: append([]string(nil), keys...)}
	e.pool.New = func() any { return &scratch{} }
	return e
}

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
		if v, ok := res.Get("service.name"); ok && v.Type() == pcommon.ValueTypeStr {
			service = v.Str()
		}
		sc.resource = e.appendTenants(sc.resource[:0], res, true)
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				sp := spans.At(k)
				tid := sp.TraceID()
				if tid.IsEmpty() {
					invalid++
					continue
				}
				sc.span = e.appendTenants(sc.span[:0], sp.Attributes(), false)
				sc.span = append(sc.span, sc.resource...)
				s = detector.Span{
					TraceID:       detector.TraceID(tid),
					SpanID:        detector.SpanID(sp.SpanID()),
					ParentID:      detector.SpanID(sp.ParentSpanID()),
					Service:       service,
					Name:          sp.Name(),
					StartUnixNano: uint64(sp.StartTimestamp()),
					EndUnixNano:   uint64(sp.EndTimestamp()),
					Tenants:       sc.span,
				}
				b.Add(&s)
			}
		}
	}
	return invalid
}

// appendTenants appends the values under the configured keys, in key order.
// Types that cannot name a tenant (bool, map, bytes) are passed on with no
// kind so the detector counts them as rejected rather than ignoring them
// silently.
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
