package detector

import (
	"hash/maphash"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Sink receives every new version of a finding. It is called with a shard
// locked, so it must not block and must not call back into the Detector; the
// processor's evidence queue is such a sink.
type Sink func(Finding)

// Detector holds the per-trace state and runs the rules. It is safe for
// concurrent use: state is split into shards by trace id, each with its own
// lock, so concurrent requests rarely wait on each other.
type Detector struct {
	cfg       Config
	sink      Sink
	now       func() time.Time
	keys      []string
	allowSvc  map[string]struct{}
	shared    map[string]struct{}
	shards    []*shard
	seed      maphash.Seed
	batchPool sync.Pool
	stats     counters
}

// New builds a detector. The config is validated; defaults are not filled
// in here (callers such as the processor own their defaults).
func New(cfg Config, sink Sink) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sink == nil {
		sink = func(Finding) {}
	}
	d := &Detector{
		cfg:      cfg,
		sink:     sink,
		now:      cfg.Now,
		keys:     append([]string(nil), cfg.TenantKeys...),
		allowSvc: toSet(cfg.AllowServices),
		shared:   toSet(cfg.SharedTenants),
		seed:     maphash.MakeSeed(),
	}
	if d.now == nil {
		d.now = time.Now
	}
	n := cfg.Shards
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	perShard := (cfg.MaxTraces + n - 1) / n
	for range n {
		d.shards = append(d.shards, newShard(d, perShard))
	}
	d.batchPool.New = func() any { return &Batch{d: d} }
	return d, nil
}

func toSet(xs []string) map[string]struct{} {
	m := make(map[string]struct{}, len(xs))
	for _, x := range xs {
		m[strings.TrimSpace(x)] = struct{}{}
	}
	return m
}

func (d *Detector) shardOf(id TraceID) *shard {
	// Trace ids are random already; the hash only guards against clients
	// that generate sequential ids.
	h := maphash.Bytes(d.seed, id[:])
	return d.shards[h%uint64(len(d.shards))]
}

// Batch groups the spans of one request. Rules run when the batch is closed,
// so that spans which arrive together (a root span with an allow-listed
// service and its children, say) are judged together.
type Batch struct {
	d       *Detector
	now     time.Time
	touched []TraceID
}

// NewBatch returns a batch from a pool; Close returns it. The batch reads
// the clock once: its spans all arrived at the same moment.
func (d *Detector) NewBatch() *Batch {
	b := d.batchPool.Get().(*Batch)
	b.now = d.now()
	return b
}

// Add ingests one span. It never blocks on I/O.
func (b *Batch) Add(s *Span) {
	d := b.d
	d.stats.spans.Add(1)
	sh := d.shardOf(s.TraceID)
	sh.mu.Lock()
	sh.ingest(s, b.now)
	sh.mu.Unlock()
	if n := len(b.touched); n == 0 || b.touched[n-1] != s.TraceID {
		b.touched = append(b.touched, s.TraceID)
	}
}

// Close runs the rules on every trace the batch touched, emits findings and
// returns the batch to the pool.
func (b *Batch) Close() {
	d := b.d
	now := b.now
	for _, id := range b.touched {
		sh := d.shardOf(id)
		sh.mu.Lock()
		if ts, ok := sh.traces[id]; ok && ts.dirty {
			sh.evaluate(ts, now)
		}
		sh.mu.Unlock()
	}
	b.touched = b.touched[:0]
	d.batchPool.Put(b)
}

// Sweep expires traces idle for longer than the idle window, emitting the
// closing version of their findings. The processor calls it on a ticker.
func (d *Detector) Sweep() {
	now := d.now()
	for _, sh := range d.shards {
		sh.mu.Lock()
		sh.expire(now, false)
		sh.mu.Unlock()
	}
}

// Flush closes every trace in memory, as on shutdown, so that no open
// finding's last version is lost.
func (d *Detector) Flush() {
	now := d.now()
	for _, sh := range d.shards {
		sh.mu.Lock()
		sh.expire(now, true)
		sh.mu.Unlock()
	}
}

// Stats is a snapshot of the detector's counters.
type Stats struct {
	Spans              uint64 // spans observed
	SpansWithoutTenant uint64 // spans with no tenant under any configured key
	SpansOverCap       uint64 // spans not recorded because their trace hit MaxSpansPerTrace
	TenantsRejected    uint64 // tenant values rejected (too long, unusable type)
	SpansLate          uint64 // spans that started a trace but ended more than an idle window ago
	TracesActive       int64  // traces in memory now
	TracesExpired      uint64 // traces closed after the idle window
	TracesEvicted      uint64 // traces pushed out by MaxTraces before going idle
	Findings           uint64 // finding versions emitted
	FindingsByRule     map[Rule]uint64
}

type counters struct {
	spans, noTenant, overCap, rejected atomic.Uint64
	late                               atomic.Uint64
	active                             atomic.Int64
	expired, evicted, findings         atomic.Uint64
	cross, mismatch                    atomic.Uint64
}

// Stats returns the current counters.
func (d *Detector) Stats() Stats {
	c := &d.stats
	return Stats{
		Spans:              c.spans.Load(),
		SpansWithoutTenant: c.noTenant.Load(),
		SpansOverCap:       c.overCap.Load(),
		TenantsRejected:    c.rejected.Load(),
		SpansLate:          c.late.Load(),
		TracesActive:       c.active.Load(),
		TracesExpired:      c.expired.Load(),
		TracesEvicted:      c.evicted.Load(),
		Findings:           c.findings.Load(),
		FindingsByRule: map[Rule]uint64{
			RuleCrossTenantTrace: c.cross.Load(),
			RuleTenantMismatch:   c.mismatch.Load(),
		},
	}
}

// ServiceCoverage is how many spans a service sent, and how many of them
// carried no tenant.
type ServiceCoverage struct {
	Spans         uint64
	WithoutTenant uint64
}

// Coverage returns per-service span counts since start. It locks each shard
// briefly: call it at scrape time, not per span.
func (d *Detector) Coverage() map[string]ServiceCoverage {
	out := map[string]ServiceCoverage{}
	for _, sh := range d.shards {
		sh.mu.Lock()
		for name, c := range sh.svcs {
			cur := out[name]
			cur.Spans += c.spans
			cur.WithoutTenant += c.withoutTenant
			out[name] = cur
		}
		sh.mu.Unlock()
	}
	return out
}

// spanRec is all that is kept of a span: 32 bytes on 64-bit platforms.
type spanRec struct {
	id     SpanID
	parent SpanID
	ep     *endpoint
	tenant uint8 // 1-based index into traceState.tenants; 0: none or shared
	key    uint8 // index of the key the tenant came from
	flags  uint8
}

const (
	flagResourceTenant uint8 = 1 << iota
	flagEvidence
)

// finding is the detector's memory of what it last said about a rule on a trace.
type finding struct {
	rule        Rule
	leakID      string
	detectedAt  time.Time
	lastVersion uint64
	emitted     bool
	// the shape last emitted; a new version goes out only when it changes.
	tenants, edges, services, mismatches int
	spanCount                            int
	status                               Status
}

type traceState struct {
	id         TraceID
	tenants    []string // distinct tenants in arrival order (shared tenants excluded)
	services   []string
	spans      []spanRec
	mismatches []Mismatch
	spanCount  int
	arrived    time.Time // first span's arrival here
	firstSeen  time.Time // earliest span start, or first arrival
	lastSeen   time.Time // latest arrival: drives the idle window
	lastEnd    time.Time // latest span end: what evidence calls last seen
	allowedBy  string
	dirty      bool
	cross      *finding
	mismatch   *finding
	// idle list, oldest first
	prev, next *traceState
}

type shard struct {
	d        *Detector
	mu       sync.Mutex
	traces   map[TraceID]*traceState
	head     *traceState // least recently updated
	tail     *traceState
	limit    int
	strs     *interner
	eps      *endpointTable
	free     []*traceState
	scratch  []byte
	norm     []string
	index    map[SpanID]int32
	lastVers uint64
	svcs     map[string]*serviceCounts
}

// maxServicesTracked caps per-service coverage counters per shard; services
// beyond it are counted under OtherServices, so a client that invents
// service names cannot grow memory or metric cardinality.
const maxServicesTracked = 500

// OtherServices is the service name coverage is counted under once
// maxServicesTracked services have been seen.
const OtherServices = "_other"

func (sh *shard) newEndpoint(service, name string) *endpoint {
	e := &endpoint{service: sh.strs.intern(service), name: sh.strs.intern(name)}
	c, ok := sh.svcs[e.service]
	if !ok {
		if len(sh.svcs) >= maxServicesTracked {
			c = sh.svcs[OtherServices]
			if c == nil {
				c = &serviceCounts{}
				sh.svcs[OtherServices] = c
			}
		} else {
			c = &serviceCounts{}
			sh.svcs[e.service] = c
		}
	}
	e.svc = c
	return e
}

func newShard(d *Detector, limit int) *shard {
	return &shard{
		d:      d,
		traces: make(map[TraceID]*traceState),
		limit:  max(limit, 1),
		strs:   newInterner(16_384),
		eps:    newEndpointTable(16_384),
		index:  make(map[SpanID]int32),
		svcs:   make(map[string]*serviceCounts),
	}
}

func (sh *shard) unlink(ts *traceState) {
	if ts.prev != nil {
		ts.prev.next = ts.next
	} else {
		sh.head = ts.next
	}
	if ts.next != nil {
		ts.next.prev = ts.prev
	} else {
		sh.tail = ts.prev
	}
	ts.prev, ts.next = nil, nil
}

func (sh *shard) pushBack(ts *traceState) {
	ts.prev = sh.tail
	ts.next = nil
	if sh.tail != nil {
		sh.tail.next = ts
	} else {
		sh.head = ts
	}
	sh.tail = ts
}

func (sh *shard) ingest(s *Span, now time.Time) {
	d := sh.d
	ts, ok := sh.traces[s.TraceID]
	if !ok {
		if len(sh.traces) >= sh.limit {
			sh.evictOldest(now)
		}
		ts = sh.alloc()
		ts.id = s.TraceID
		ts.firstSeen = now
		ts.arrived = now
		// A new trace whose span ended more than an idle window ago most
		// likely belongs to a trace this detector already closed.
		if s.EndUnixNano > 0 && s.EndUnixNano <= math.MaxInt64 &&
			time.Unix(0, int64(s.EndUnixNano)).Before(now.Add(-d.cfg.IdleWindow)) {
			d.stats.late.Add(1)
		}
		sh.traces[s.TraceID] = ts
		d.stats.active.Add(1)
	} else {
		sh.unlink(ts)
	}
	// Children usually arrive before their parents (they end first), so the
	// trace starts at the earliest start seen, not the first span's.
	if s.StartUnixNano > 0 && s.StartUnixNano <= math.MaxInt64 {
		if st := time.Unix(0, int64(s.StartUnixNano)); st.Before(now) && st.Before(ts.firstSeen) {
			ts.firstSeen = st
		}
	}
	if s.EndUnixNano > 0 && s.EndUnixNano <= math.MaxInt64 {
		end := time.Unix(0, int64(s.EndUnixNano))
		if end.After(now) {
			end = now // a skewed clock must not date evidence in the future
		}
		if end.After(ts.lastEnd) {
			ts.lastEnd = end
		}
	}
	sh.pushBack(ts)
	ts.lastSeen = now
	ts.dirty = true
	ts.spanCount++

	ep := sh.eps.get(s.Service, s.Name, sh.newEndpoint)
	ep.svc.spans++
	if len(ts.services) < maxServicesPerTrace && !contains(ts.services, ep.service) {
		ts.services = append(ts.services, ep.service)
	}
	if _, ok := d.allowSvc[ep.service]; ok && ts.allowedBy == "" && len(d.allowSvc) > 0 {
		ts.allowedBy = "allow.services: " + ep.service
	}

	rec := spanRec{id: s.SpanID, parent: s.ParentID, ep: ep}
	var primary string
	mismatch := false
	// norm[i] is s.Tenants[i] normalised, "" when it is no tenant; values are
	// normalised (and rejections counted) once, here.
	norm := sh.norm[:0]
	for i := range s.Tenants {
		rt := &s.Tenants[i]
		t, ok := "", false
		if int(rt.KeyIndex) < len(d.keys) {
			t, ok = sh.normalize(rt.Value)
		} else {
			d.stats.rejected.Add(1)
		}
		if ok {
			if _, isShared := d.shared[t]; isShared {
				ok = false
			}
		}
		if !ok {
			norm = append(norm, "")
			continue
		}
		norm = append(norm, t)
		if primary == "" {
			primary = t
			rec.key = rt.KeyIndex
			if rt.Resource {
				rec.flags |= flagResourceTenant
			}
		} else if t != primary {
			mismatch = true
		}
	}
	if primary == "" {
		d.stats.noTenant.Add(1)
		ep.svc.withoutTenant++
	} else {
		idx := indexOf(ts.tenants, primary)
		if idx < 0 && len(ts.tenants) < maxTenantsPerTrace {
			ts.tenants = append(ts.tenants, primary)
			idx = len(ts.tenants) - 1
		}
		if idx >= 0 {
			rec.tenant = uint8(idx + 1)
		}
	}
	if mismatch {
		sh.recordMismatch(ts, s, ep, norm)
		rec.flags |= flagEvidence
	}
	clear(norm)
	sh.norm = norm
	if len(ts.spans) < d.cfg.MaxSpansPerTrace {
		ts.spans = append(ts.spans, rec)
	} else {
		d.stats.overCap.Add(1)
	}
}

// recordMismatch describes a mismatching span; norm holds its values as
// ingest normalised them ("" for no tenant).
func (sh *shard) recordMismatch(ts *traceState, s *Span, ep *endpoint, norm []string) {
	if len(ts.mismatches) >= sh.d.cfg.MaxEvidenceSpans {
		return
	}
	for i := range ts.mismatches {
		if ts.mismatches[i].SpanID == s.SpanID {
			return // the same span delivered again
		}
	}
	m := Mismatch{SpanID: s.SpanID, Service: ep.service, Name: ep.name}
	for i, t := range norm {
		if t == "" {
			continue
		}
		rt := &s.Tenants[i]
		m.Values = append(m.Values, TenantSource{Key: sh.d.keys[rt.KeyIndex], Tenant: t, Resource: rt.Resource})
	}
	ts.mismatches = append(ts.mismatches, m)
}

// normalize turns a raw value into an interned tenant. Ints and integral
// doubles are rendered in decimal so that 42, 42.0 and "42" agree.
func (sh *shard) normalize(v Value) (string, bool) {
	switch v.Kind {
	case KindString:
		s := strings.TrimSpace(v.Str)
		if s == "" {
			return "", false
		}
		if len(s) > MaxTenantLength {
			sh.d.stats.rejected.Add(1)
			return "", false
		}
		return sh.strs.intern(s), true
	case KindInt:
		sh.scratch = strconv.AppendInt(sh.scratch[:0], v.Int, 10)
		return sh.strs.internBytes(sh.scratch), true
	case KindDouble:
		f := v.Double
		if math.IsNaN(f) || math.IsInf(f, 0) {
			sh.d.stats.rejected.Add(1)
			return "", false
		}
		// Every integral double in int64's range converts exactly, so it
		// renders as the int of the same value would.
		if f == math.Trunc(f) && f >= math.MinInt64 && f < -math.MinInt64 {
			sh.scratch = strconv.AppendInt(sh.scratch[:0], int64(f), 10)
		} else {
			sh.scratch = strconv.AppendFloat(sh.scratch[:0], f, 'g', -1, 64)
		}
		return sh.strs.internBytes(sh.scratch), true
	default:
		sh.d.stats.rejected.Add(1)
		return "", false
	}
}

func (sh *shard) alloc() *traceState {
	if n := len(sh.free); n > 0 {
		ts := sh.free[n-1]
		sh.free = sh.free[:n-1]
		return ts
	}
	return &traceState{}
}

// release recycles a trace's state; slices keep their capacity unless they
// grew large, so one huge trace does not pin memory forever.
func (sh *shard) release(ts *traceState) {
	delete(sh.traces, ts.id)
	sh.unlink(ts)
	sh.d.stats.active.Add(-1)
	if len(sh.free) >= 1024 {
		return
	}
	spans := ts.spans[:0]
	if cap(spans) > 64 {
		spans = nil
	}
	clear(ts.tenants)
	clear(ts.services)
	*ts = traceState{tenants: ts.tenants[:0], services: ts.services[:0], spans: spans}
	sh.free = append(sh.free, ts)
}

func (sh *shard) evictOldest(now time.Time) {
	ts := sh.head
	if ts == nil {
		return
	}
	sh.d.stats.evicted.Add(1)
	sh.close(ts, now)
}

// expire closes traces idle past the window (all of them when force is set).
func (sh *shard) expire(now time.Time, force bool) {
	cutoff := now.Add(-sh.d.cfg.IdleWindow)
	for ts := sh.head; ts != nil; ts = sh.head {
		if !force && ts.lastSeen.After(cutoff) {
			return
		}
		sh.d.stats.expired.Add(1)
		sh.close(ts, now)
	}
}

// close evaluates a trace a last time and emits the closing version of its
// findings, then frees its state.
func (sh *shard) close(ts *traceState, now time.Time) {
	if ts.dirty {
		sh.evaluate(ts, now)
	}
	for _, f := range []*finding{ts.cross, ts.mismatch} {
		if f != nil && f.status == StatusOpen {
			f.status = StatusClosed
			sh.emit(ts, f, now)
		}
	}
	sh.release(ts)
}

// evaluate runs the rules on one trace and emits what changed.
func (sh *shard) evaluate(ts *traceState, now time.Time) {
	ts.dirty = false
	if ts.allowedBy != "" {
		// Streaming means a finding may have gone out before the allow-listed
		// span arrived; withdraw it so nobody acts on it.
		for _, f := range []*finding{ts.cross, ts.mismatch} {
			if f != nil && f.status == StatusOpen {
				f.status = StatusAllowed
				sh.emit(ts, f, now)
			}
		}
		return
	}
	if len(ts.tenants) >= 2 {
		if ts.cross == nil {
			ts.cross = &finding{rule: RuleCrossTenantTrace, status: StatusOpen, detectedAt: now,
				leakID: LeakID(ts.id, RuleCrossTenantTrace)}
		}
		sh.maybeEmit(ts, ts.cross, now)
	}
	if len(ts.mismatches) > 0 {
		if ts.mismatch == nil {
			ts.mismatch = &finding{rule: RuleTenantMismatch, status: StatusOpen, detectedAt: now,
				leakID: LeakID(ts.id, RuleTenantMismatch)}
		}
		sh.maybeEmit(ts, ts.mismatch, now)
	}
}

// maybeEmit sends a new version only when the finding's shape changed: more
// tenants, edges, services or mismatching spans. Growth in span count alone
// waits for the closing version, so a long leaking trace is one finding with
// a handful of versions, not one per span.
func (sh *shard) maybeEmit(ts *traceState, f *finding, now time.Time) {
	if f.status != StatusOpen {
		return
	}
	edges := 0
	if f.rule == RuleCrossTenantTrace {
		edges = len(sh.crossingEdges(ts))
	}
	if f.lastVersion != 0 && f.tenants == len(ts.tenants) && f.edges == edges &&
		f.services == len(ts.services) && f.mismatches == len(ts.mismatches) {
		return
	}
	sh.emit(ts, f, now)
}

func (sh *shard) emit(ts *traceState, f *finding, now time.Time) {
	// Only the cross-tenant rule has edges; maybeEmit compares f.edges
	// with 0 for the other rules.
	var edges []edgeRef
	if f.rule == RuleCrossTenantTrace {
		edges = sh.crossingEdges(ts)
	}
	// Versions grow per shard, not just per finding: a trace id always maps
	// to the same shard, so a trace that is closed and starts again (late
	// spans, eviction, a batch that read the clock before a sweep) keeps
	// its leak id's versions increasing.
	v := uint64(now.UnixNano())
	if v <= sh.lastVers {
		v = sh.lastVers + 1
	}
	sh.lastVers = v
	f.lastVersion = v
	isNew := !f.emitted
	f.emitted = true
	f.tenants, f.edges, f.services, f.mismatches, f.spanCount =
		len(ts.tenants), len(edges), len(ts.services), len(ts.mismatches), ts.spanCount
	out := Finding{
		New:        isNew,
		ArrivedAt:  ts.arrived,
		LeakID:     f.leakID,
		Version:    v,
		Rule:       f.rule,
		Severity:   severityOf(f.rule),
		Status:     f.status,
		TraceID:    ts.id,
		Tenants:    sortedCopy(ts.tenants),
		Services:   sortedCopy(ts.services),
		SpanCount:  ts.spanCount,
		FirstSeen:  ts.firstSeen,
		LastSeen:   ts.lastSeenForEvidence(),
		DetectedAt: f.detectedAt,
	}
	if f.status == StatusAllowed {
		out.AllowedBy = ts.allowedBy
	}
	maxEv := sh.d.cfg.MaxEvidenceSpans
	addEvidence := func(r *spanRec) {
		if len(out.Spans) >= maxEv {
			return
		}
		for i := range out.Spans {
			if out.Spans[i].SpanID == r.id {
				return
			}
		}
		out.Spans = append(out.Spans, sh.evidence(ts, r))
	}
	switch f.rule {
	case RuleCrossTenantTrace:
		out.Edges = make([]CrossingEdge, 0, len(edges))
		for _, e := range edges {
			from, to := &ts.spans[e.from], &ts.spans[e.to]
			out.Edges = append(out.Edges, CrossingEdge{
				From: EdgeEnd{SpanID: from.id, Service: from.ep.service, Name: from.ep.name, Tenant: ts.tenantOf(from)},
				To:   EdgeEnd{SpanID: to.id, Service: to.ep.service, Name: to.ep.name, Tenant: ts.tenantOf(to)},
				Hops: e.hops,
			})
			addEvidence(from)
			addEvidence(to)
		}
		// A crossing without a known edge (the parent never arrived, or the
		// tenants sit in separate roots) still needs one span per tenant.
		for ti := range ts.tenants {
			for i := range ts.spans {
				if int(ts.spans[i].tenant) == ti+1 {
					if !evidenceHasTenant(out.Spans, ts.tenants[ti]) {
						addEvidence(&ts.spans[i])
					}
					break
				}
			}
		}
	case RuleTenantMismatch:
		// The forged tenant is a tenant the trace reached for: list it, so
		// that a search by either tenant finds the attempt.
		for _, m := range ts.mismatches {
			for _, v := range m.Values {
				if !contains(out.Tenants, v.Tenant) {
					out.Tenants = append(out.Tenants, v.Tenant)
				}
			}
		}
		slices.Sort(out.Tenants)
		out.Mismatches = append([]Mismatch(nil), ts.mismatches...)
		for i := range ts.spans {
			if ts.spans[i].flags&flagEvidence != 0 {
				addEvidence(&ts.spans[i])
			}
		}
	}
	sh.d.stats.findings.Add(1)
	switch f.rule {
	case RuleCrossTenantTrace:
		sh.d.stats.cross.Add(1)
	case RuleTenantMismatch:
		sh.d.stats.mismatch.Add(1)
	}
	sh.d.sink(out)
}

func evidenceHasTenant(spans []EvidenceSpan, tenant string) bool {
	for i := range spans {
		if spans[i].Tenant == tenant {
			return true
		}
	}
	return false
}

func (sh *shard) evidence(ts *traceState, r *spanRec) EvidenceSpan {
	e := EvidenceSpan{SpanID: r.id, ParentID: r.parent, Service: r.ep.service, Name: r.ep.name, Tenant: ts.tenantOf(r)}
	if e.Tenant != "" {
		e.TenantKey = sh.d.keys[r.key]
	}
	return e
}

// lastSeenForEvidence is the latest span end when spans carry times, so
// that replays of old traces are dated by the traces, not by the replay.
func (ts *traceState) lastSeenForEvidence() time.Time {
	if ts.lastEnd.IsZero() || ts.lastEnd.Before(ts.firstSeen) {
		return ts.lastSeen
	}
	return ts.lastEnd
}

func (ts *traceState) tenantOf(r *spanRec) string {
	if r.tenant == 0 {
		return ""
	}
	return ts.tenants[r.tenant-1]
}

type edgeRef struct {
	from, to int32
	hops     int
}

// crossingEdges finds, for every span with a tenant, its nearest ancestor
// with a tenant; where the two differ, that is a crossing edge. Spans without
// a tenant in between (a proxy, a middleware) are walked through and counted
// as hops. It runs only on traces that already hold two tenants, and is
// linear in the spans kept, using an index map the shard reuses.
func (sh *shard) crossingEdges(ts *traceState) []edgeRef {
	if len(ts.tenants) < 2 {
		return nil
	}
	idx := sh.index
	clear(idx)
	for i := range ts.spans {
		if _, dup := idx[ts.spans[i].id]; !dup {
			idx[ts.spans[i].id] = int32(i)
		}
	}
	var edges []edgeRef
	for i := range ts.spans {
		c := &ts.spans[i]
		if c.tenant == 0 || c.parent.IsEmpty() || idx[c.id] != int32(i) {
			// No tenant, a root, or a second delivery of a span (an
			// exporter retry): no edge of its own.
			continue
		}
		hops := 0
		p, ok := idx[c.parent]
		for ok && ts.spans[p].tenant == 0 && hops < len(ts.spans) {
			if ts.spans[p].parent.IsEmpty() {
				ok = false
				break
			}
			hops++
			p, ok = idx[ts.spans[p].parent]
		}
		if !ok || hops >= len(ts.spans) {
			continue
		}
		if ts.spans[p].tenant != c.tenant {
			edges = append(edges, edgeRef{from: p, to: int32(i), hops: hops})
		}
	}
	return edges
}

func severityOf(r Rule) Severity {
	switch r {
	case RuleCrossTenantTrace:
		return SeverityCritical
	case RuleTenantMismatch:
		return SeverityHigh
	}
	return SeverityMedium
}

func contains(xs []string, s string) bool { return indexOf(xs, s) >= 0 }

func indexOf(xs []string, s string) int {
	for i, x := range xs {
		if x == s {
			return i
		}
	}
	return -1
}

func sortedCopy(xs []string) []string {
	out := append([]string(nil), xs...)
	slices.Sort(out)
	return out
}
