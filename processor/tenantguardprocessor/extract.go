package tenantguardprocessor

import (
	"math"
	"strings"
	"sync"
	"sync/atomic"

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
	allow    func(st *allowState, rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, sp ptrace.Span) string
	pool     sync.Pool
	// feeding counts the requests being fed, requests those ever started,
	// and overlapAt numbers the last that started while another was being
	// fed: grouping by shard pays only when requests come concurrently.
	feeding   atomic.Int32
	requests  atomic.Int64
	overlapAt atomic.Int64
	// alwaysGroup groups by shard even a request fed alone (tests).
	alwaysGroup bool
	// slots are every configured attribute the rules read, tenant keys
	// first (in trust order), then derivations, then bindings: a span's
	// attributes are read in one pass that fills the slots, instead of one
	// linear Map.Get per configured key.
	slots []slot
	// uses finds, per attribute key, the slots and the fact it fills.
	uses keyTable
}

type slotKind uint8

const (
	slotTenant slotKind = iota
	slotDerive
	slotBinding
)

type slot struct {
	key  string
	kind slotKind
	idx  int // into keys, derive or bindings
}

type scratch struct {
	span     []detector.RawTenant
	resource []detector.RawTenant
	links    []detector.Link
	ids      []detector.Identifier
	vals     []pcommon.Value // per slot: the span's value, if has
	has      []bool
	resIDs   []pcommon.Value // per binding: the resource's value, if resHas
	resHas   []bool
	allow    allowState // the allow conditions the current resource and scope leave open

	resAt   int    // the ResourceSpans whose service, resource and resIDs these are (-1: none)
	service string // its service.name
	cur     detector.Span
	byShard [][]int32 // a request's spans grouped by shard: indices into read (Feed)
	read    readAhead
	order   []int // the shards of byShard's groups, by their first span
}

// NewExtractor reads what det's rules need.
func NewExtractor(det *detector.Detector) *Extractor {
	e := &Extractor{
		keys:     append([]string(nil), det.TenantAttributes()...),
		derive:   det.Derivations(),
		bindings: det.BindingAttributes(),
		queries:  det.WantsQueries(),
	}
	e.overlapAt.Store(math.MinInt64 / 2) // no overlap yet
	for i, k := range e.keys {
		e.slots = append(e.slots, slot{k, slotTenant, i})
	}
	for i := range e.derive {
		e.slots = append(e.slots, slot{e.derive[i].Attribute, slotDerive, i})
	}
	for i, k := range e.bindings {
		e.slots = append(e.slots, slot{k, slotBinding, i})
	}
	e.uses = newKeyTable(e.slots)
	n, nb := len(e.slots), len(e.bindings)
	e.pool.New = func() any {
		return &scratch{vals: make([]pcommon.Value, n), has: make([]bool, n),
			resIDs: make([]pcommon.Value, nb), resHas: make([]bool, nb)}
	}
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
//
// While other requests are being fed into a detector of several shards,
// Feed first reads every span of the request and groups them by shard, then
// adds each group under one hold of its shard, taking first the shards no
// other request holds. Concurrent requests then work on different shards
// side by side, each shard's state staying with one core for a whole group,
// instead of taking turns on every shard span by span (which made two cores
// slower than one); and reading, half of a span's work, holds no shard, so
// the others need not wait for it (two cores did 16% more on clean traffic
// than when groups were read under the hold). Spans of a trace keep their
// order; only traces of different shards are reordered, and their states
// are independent. A request fed alone is read in order, in one pass, each
// span added as it is read: copying every span aside gains a sender alone
// nothing, and cost it 4% with leaks (BENCHMARKS.md, section 8).
func (e *Extractor) Feed(b *detector.Batch, td ptrace.Traces) (invalid int) {
	sc := e.pool.Get().(*scratch)
	defer e.pool.Put(sc)
	sc.allow.reset()
	sc.resAt = -1
	rss := td.ResourceSpans()
	n := b.Shards()
	group := e.concurrent() && n > 1
	defer e.feeding.Add(-1) // counted in concurrent
	if !group {
		for i := 0; i < rss.Len(); i++ {
			rs := rss.At(i)
			sss := rs.ScopeSpans()
			for j := 0; j < sss.Len(); j++ {
				ss := sss.At(j)
				spans := ss.Spans()
				for k := 0; k < spans.Len(); k++ {
					if !e.read(sc, i, rs, ss, spans.At(k)) {
						invalid++
						continue
					}
					b.Add(&sc.cur)
				}
			}
		}
		return invalid
	}
	if len(sc.byShard) != n {
		sc.byShard = make([][]int32, n)
	}
	for sh := range sc.byShard { // a request that panicked may have left some
		sc.byShard[sh] = sc.byShard[sh][:0]
	}
	sc.order = sc.order[:0]
	sc.read.reset()
	// Every span is read before any shard is held: reading is half a
	// span's work, and done under the lock it kept the other requests
	// waiting for the shard.
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j)
			spans := ss.Spans()
			for k := 0; k < spans.Len(); k++ {
				sp := spans.At(k)
				if !e.read(sc, i, rs, ss, sp) {
					invalid++
					continue
				}
				sh := b.ShardOf(sc.cur.TraceID)
				if len(sc.byShard[sh]) == 0 {
					sc.order = append(sc.order, sh)
				}
				sc.byShard[sh] = append(sc.byShard[sh], sc.read.keep(&sc.cur))
			}
		}
	}
	// Groups go in the order of their first span, as a request read in
	// order would reach them, except that a group whose shard another
	// request holds waits until the free ones are done.
	for left := len(sc.order); left > 0; {
		took := false
		for _, sh := range sc.order {
			if len(sc.byShard[sh]) > 0 && b.TryHold(sh) {
				e.feedGroup(b, sc, sh)
				left--
				took = true
			}
		}
		if took {
			continue
		}
		for _, sh := range sc.order {
			if len(sc.byShard[sh]) > 0 {
				b.Hold(sh)
				e.feedGroup(b, sc, sh)
				left--
				break
			}
		}
	}
	sc.read.reset()
	return invalid
}

// readAhead holds a request's spans, read before any shard is held; their
// slices share its buffers (a buffer that grows leaves the spans already
// kept on the old array, which stays theirs).
type readAhead struct {
	spans   []detector.Span
	tenants []detector.RawTenant
	ids     []detector.Identifier
	links   []detector.Link
}

// maxReadAhead is the longest buffer a scratch keeps for the next request:
// a huge request's (or a span's huge tenant array's) is let go rather than
// pinned in the pool.
const maxReadAhead = 16_384

// reset empties the buffers, dropping what they alias of the request.
func (r *readAhead) reset() {
	if max(cap(r.spans), cap(r.tenants), cap(r.ids), cap(r.links)) > maxReadAhead {
		*r = readAhead{}
		return
	}
	clear(r.spans)
	clear(r.tenants)
	clear(r.ids)
	r.spans, r.tenants, r.ids, r.links = r.spans[:0], r.tenants[:0], r.ids[:0], r.links[:0]
}

// keep copies s, whose slices the next span's read reuses, and returns its index.
func (r *readAhead) keep(s *detector.Span) int32 {
	c := *s
	n := len(r.tenants)
	r.tenants = append(r.tenants, s.Tenants...)
	c.Tenants = r.tenants[n:len(r.tenants):len(r.tenants)]
	n = len(r.ids)
	r.ids = append(r.ids, s.Identifiers...)
	c.Identifiers = r.ids[n:len(r.ids):len(r.ids)]
	if len(s.Links) > 0 {
		n = len(r.links)
		r.links = append(r.links, s.Links...)
		c.Links = r.links[n:len(r.links):len(r.links)]
	}
	r.spans = append(r.spans, c)
	return int32(len(r.spans) - 1)
}

// concurrent counts the request Feed starts and reports whether requests
// have overlapped within the last groupingMemory requests: one sender's
// requests never overlap, several senders' overlap often but not every time
// (one may be waiting for its fsync), and a request read in order while
// another is grouped contends as if neither were.
func (e *Extractor) concurrent() bool {
	seq := e.requests.Add(1)
	if e.feeding.Add(1) > 1 {
		e.overlapAt.Store(seq)
	}
	return e.alwaysGroup || seq-e.overlapAt.Load() < groupingMemory
}

const groupingMemory = 1024

// feedGroup adds the spans read for shard sh (held), then empties the group.
func (e *Extractor) feedGroup(b *detector.Batch, sc *scratch, sh int) {
	for _, at := range sc.byShard[sh] {
		b.Add(&sc.read.spans[at])
	}
	b.Settle()
	sc.byShard[sh] = sc.byShard[sh][:0]
}

// setResource reads what every span of ResourceSpans i shares: the service,
// the resource's tenants and binding identifiers. Spans come grouped by
// resource, so this runs once per ResourceSpans (per shard's group).
func (e *Extractor) setResource(sc *scratch, i int, rs ptrace.ResourceSpans) {
	sc.resAt = i
	res := rs.Resource().Attributes()
	sc.service = ""
	if v, ok := res.Get(attrServiceName); ok && v.Type() == pcommon.ValueTypeStr {
		sc.service = v.Str()
	}
	sc.resource = e.appendTenants(sc.resource[:0], res, true)
	for bi, key := range e.bindings {
		sc.resIDs[bi], sc.resHas[bi] = res.Get(key)
	}
}

// read reads span sp of ResourceSpans i into sc.cur, whose slices the next
// read reuses. It reports false for a span with an all-zero trace id.
func (e *Extractor) read(sc *scratch, i int, rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, sp ptrace.Span) bool {
	tid := sp.TraceID()
	if tid.IsEmpty() {
		return false
	}
	if sc.resAt != i {
		e.setResource(sc, i, rs)
	}
	s := &sc.cur
	*s = detector.Span{
		TraceID:       detector.TraceID(tid),
		SpanID:        detector.SpanID(sp.SpanID()),
		ParentID:      detector.SpanID(sp.ParentSpanID()),
		Service:       sc.service,
		Name:          sp.Name(),
		StartUnixNano: uint64(sp.StartTimestamp()),
		EndUnixNano:   uint64(sp.EndTimestamp()),
		StatusError:   sp.Status().Code() == ptrace.StatusCodeError,
		GRPCStatus:    -1,
		Calls:         sp.Kind() == ptrace.SpanKindClient || sp.Kind() == ptrace.SpanKindProducer,
	}
	e.readSpan(s, sc, sp.Attributes())
	if links := sp.Links(); links.Len() > 0 {
		sc.links = sc.links[:0]
		for l := 0; l < links.Len(); l++ {
			ln := links.At(l)
			sc.links = append(sc.links, detector.Link{TraceID: detector.TraceID(ln.TraceID()), SpanID: detector.SpanID(ln.SpanID())})
		}
		s.Links = sc.links
	}
	if e.allow != nil {
		s.AllowedBy = e.allow(&sc.allow, rs, ss, sp)
	}
	return true
}

// readSpan reads the span's attributes in one pass: the configured slots
// (tenants, derivations, bindings), the HTTP and gRPC codes, the data kind
// and, when asked for, the statement. Then it appends the tenants in trust
// order (span keys, span derivations, then the resource's) and the
// identifiers (span first, then resource).
func (e *Extractor) readSpan(s *detector.Span, sc *scratch, attrs pcommon.Map) {
	clear(sc.has)
	if attrs.Len() > 0 {
		attrs.Range(func(k string, v pcommon.Value) bool {
			u := e.uses.find(k)
			if u == nil {
				return true
			}
			for _, i := range u.slots {
				// A repeated key keeps its first value, as Map.Get would.
				if !sc.has[i] {
					sc.vals[i], sc.has[i] = v, true
				}
			}
			switch u.fact {
			case factHTTPStatus:
				if v.Type() == pcommon.ValueTypeInt {
					s.HTTPStatus = int32(v.Int())
				}
			case factGRPCStatus:
				if v.Type() == pcommon.ValueTypeInt {
					s.GRPCStatus = int32(v.Int())
				}
			case factDBSystem:
				if v.Type() == pcommon.ValueTypeStr {
					s.Data = dataKindOfDB(v.Str())
				}
			case factMessaging:
				s.Data = detector.DataMessaging
			case factS3Bucket:
				s.Data = detector.DataObjectStorage
			case factQuery, factQueryOld:
				if e.queries && v.Type() == pcommon.ValueTypeStr && (s.Query == "" || u.fact == factQuery) {
					s.Query = v.Str()
				}
			}
			return true
		})
	}
	tenants, ids := sc.span[:0], sc.ids[:0]
	for i := range e.slots {
		if !sc.has[i] {
			continue
		}
		sl, v := &e.slots[i], sc.vals[i]
		switch sl.kind {
		case slotTenant:
			tenants = appendTenant(tenants, uint8(sl.idx), v, false)
		case slotDerive:
			tenants = e.appendDerived(tenants, sl.idx, v, false)
		case slotBinding:
			ids = appendIdentifier(ids, sl.idx, v)
		}
	}
	tenants = append(tenants, sc.resource...)
	for bi := range e.bindings {
		if sc.resHas[bi] && !sc.has[len(e.slots)-len(e.bindings)+bi] {
			ids = appendIdentifier(ids, bi, sc.resIDs[bi])
		}
	}
	sc.span, sc.ids = tenants, ids
	s.Tenants, s.Identifiers = tenants, ids
}

func appendIdentifier(dst []detector.Identifier, binding int, v pcommon.Value) []detector.Identifier {
	if v.Type() == pcommon.ValueTypeStr && v.Str() != "" {
		dst = append(dst, detector.Identifier{Binding: uint8(binding), Value: v.Str()})
	}
	return dst
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
// order, then the values the derivations capture (for resource attributes,
// read once per ResourceSpans).
func (e *Extractor) appendTenants(dst []detector.RawTenant, attrs pcommon.Map, resource bool) []detector.RawTenant {
	if attrs.Len() == 0 {
		return dst
	}
	for ki, key := range e.keys {
		if v, ok := attrs.Get(key); ok {
			dst = appendTenant(dst, uint8(ki), v, resource)
		}
	}
	for i := range e.derive {
		if v, ok := attrs.Get(e.derive[i].Attribute); ok {
			dst = e.appendDerived(dst, i, v, resource)
		}
	}
	return dst
}

// appendTenant appends the value (each element of an array) under key
// index idx. Types that cannot name a tenant (bool, map, bytes) are passed
// on with no kind so the detector counts them as rejected rather than
// ignoring them silently.
func appendTenant(dst []detector.RawTenant, idx uint8, v pcommon.Value, resource bool) []detector.RawTenant {
	if v.Type() == pcommon.ValueTypeSlice {
		sl := v.Slice()
		for n := 0; n < sl.Len(); n++ {
			dst = append(dst, detector.RawTenant{KeyIndex: idx, Resource: resource, Value: rawValue(sl.At(n))})
		}
		return dst
	}
	return append(dst, detector.RawTenant{KeyIndex: idx, Resource: resource, Value: rawValue(v)})
}

func (e *Extractor) appendDerived(dst []detector.RawTenant, i int, v pcommon.Value, resource bool) []detector.RawTenant {
	if v.Type() != pcommon.ValueTypeStr {
		return dst
	}
	dv := &e.derive[i]
	if t, ok := dv.Derive(v.Str()); ok {
		dst = append(dst, detector.RawTenant{KeyIndex: dv.KeyIndex, Resource: resource, Value: detector.StringValue(t)})
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
