package detector

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// spanRec is all that is kept of a span: 24 bytes, and no pointer (see
// endpoint).
type spanRec struct {
	id     SpanID
	parent SpanID
	ep     uint32 // the endpoint's id in the shard's endpoint table, held (endpointTable.hold)
	tenant uint8  // 1-based index into traceState.tenants; 0: none or shared
	key    uint8  // index of the key the tenant came from
	flags  uint8
}

const (
	flagResourceTenant uint8 = 1 << iota
	flagEvidence             // a mismatch, a foreign key or an unscoped query
	flagBlocked              // the span refused access
	flagData                 // the span read or wrote stored data
	flagBuried               // put back from the trace's tomb by a late span (unburySpans)
	flagCalls                // a client or producer span (Span.Calls)
)

// linkEdge is a span link whose producer carries a tenant: the far end
// lives in another trace, so it is kept resolved, as strings.
type linkEdge struct {
	from    EdgeEnd
	to      int32 // consumer span, index into traceState.spans
	blocked bool
}

// traceState is a trace's entry in the shard's slab (table.go). It holds
// no pointer: its variable-length parts are chunks of the slab's arenas,
// its notes a number, so the garbage collector never reads the slab. In a
// collector, which collects every second or so, marking a pointer per
// buffer per trace cost about a third of the CPU tenantguard cost a
// collector beyond a minimal prototype of its work (BENCHMARKS.md, section
// 7). TestStateRecordSizes holds it free of pointers.
type traceState struct {
	// tenants are the trace's distinct tenants in arrival order (shared
	// tenants excluded): shard.tenantsOf.
	tenants chunk
	// services are the trace's distinct services in arrival order, each as
	// the id of its first endpoint, held (endpointTable.hold):
	// shard.servicesOf.
	services chunk
	spans    chunk // the span records: shard.spansOf
	notes    int32 // the number of the trace's notes (slab.notesAt); 0 for most traces, which have none
	cov      traceCoverage
	id       TraceID
	// Times are unix nanoseconds (8 bytes, not time.Time's 24: a quarter
	// of the entry): findings turn them back into times (timeAt).
	arrived   int64 // first span's arrival here
	firstSeen int64 // earliest span start, or first arrival
	lastSeen  int64 // latest arrival: drives the idle window (0 in a tomb)
	lastEnd   int64 // latest span end: what evidence calls last seen (0: none)
	spanCount int
	// buriedFirst and buriedN are the sequence number of the first span
	// the trace's tomb keeps as a link target and how many it keeps (see
	// buryLinkTargets), kept while late spans reopen it.
	buriedFirst uint64
	// listed is the Batch.seq of the batch that last listed the trace among
	// those it touched, so that a batch lists each trace once, not once
	// per run of its spans (Batch.Add); once the trace is judged, the
	// complement (^seq) of the judging holder's, so that a batch finding
	// its spans judged knows whether it judged them itself (Batch.Close).
	listed uint64
	// self is the entry's index in the slab; prev and next link it in the
	// idle list (oldest update first) while it is live, in the tomb list
	// (oldest close first) while it is a tomb, in the free chain otherwise.
	self, prev, next int32
	dirty            bool
	kind             uint8 // entryFree, entryLive or entryTomb
	buriedN          uint8
	// tombTenants are how many of tenants a reopened trace's tomb gave it
	// (the first ones): its earlier close counted them (coverage.go).
	tombTenants uint8
}

// traceNotes holds what few traces have: their findings, the evidence
// details behind them, the allow rule that excused them, and what the
// detector said before a close. A trace numbers its notes (0: none), so
// that its entry holds no pointer (traceState); the slab's table of notes
// holds one pointer per trace that has some.
type traceNotes struct {
	findings [numRules]*finding
	// prior holds what this detector said about the trace before it was
	// closed, when late spans reopened it; for a tomb, what it said then.
	prior      *tombstone
	mismatches []Mismatch
	keys       []KeyUse
	links      []linkEdge
	allowedBy  string
}

// noNotes are the notes of a trace that has none: read, never written
// (TestMain checks).
var noNotes traceNotes

// n is the trace's notes, to read.
func (sh *shard) n(ts *traceState) *traceNotes {
	if ts.notes != 0 {
		return sh.slab.notesAt(ts.notes)
	}
	return &noNotes
}

// note is the trace's notes, to write: made when it has none.
func (sh *shard) note(ts *traceState) *traceNotes {
	if ts.notes == 0 {
		ts.notes = sh.slab.newNotes()
	}
	return sh.slab.notesAt(ts.notes)
}

type shard struct {
	d  *Detector
	mu sync.Mutex
	// Every trace of the shard, live or tomb, is an entry of slab, found
	// through traces (table.go); idle lists the live ones, oldest update
	// first, and tombs the tombs, oldest close first.
	traces   traceIndex
	slab     slab
	idle     entryList
	tombs    entryList
	limit    int
	strs     *interner
	eps      *endpointTable
	scratch  []byte
	norm     []string
	index    map[SpanID]int32
	anc      []ancestor // crossingEdges' memo, reused
	path     []int32    // crossingEdges' walk, reused
	lastVers uint64
	svcs     map[string]*serviceCounts // this shard's share of per-service coverage (services.go)
	cov      coverageTable
	// buried holds the tombs' link targets in the order they were buried,
	// none older than the late window, at most buriedCap: the largest power
	// of two up to limit×maxBuriedSpans, so its buffer (32 bytes an entry)
	// never outgrows that. buriedSeq is the sequence number of its front.
	buried    ring[buriedSpan]
	buriedSeq uint64
	buriedCap int
	// holder is whoever holds the lock (lock sets it): the finding
	// versions the shard raises are collected there, and nothing leaves
	// the shard until unlock (handover.go).
	holder *holder
	turns  turns
	// last is the trace the previous span went to: instrumentation exports
	// a trace's spans from one service together, so the next span often
	// belongs to it and needs no lookup. A close clears it.
	last *traceState
}

// maxShardTraces caps a shard's limit: its entries are numbered with int32.
const maxShardTraces = math.MaxInt32 / 2

func newShard(d *Detector, limit int) *shard {
	limit = min(max(limit, 1), maxShardTraces)
	// The shard holds up to limit live traces and as many tombs.
	entries := limit
	if d.cfg.LateWindow > 0 {
		entries = 2 * limit
	}
	sh := &shard{
		d:         d,
		traces:    newTraceIndex(),
		slab:      newSlab(entries),
		idle:      newEntryList(),
		tombs:     newEntryList(),
		limit:     limit,
		strs:      newInterner(16_384),
		eps:       newEndpointTable(16_384),
		index:     make(map[SpanID]int32),
		svcs:      make(map[string]*serviceCounts),
		buriedCap: buriedCapFor(limit),
	}
	sh.slab.preallocate(int32(min(limit, preallocTraces)))
	return sh
}

// preallocTraces caps the live traces a shard makes room for when it is
// made (slab.preallocate): the default max_traces fits, and a larger
// state grows past it as it fills, so that a huge max_traces does not
// take its address space at start.
const preallocTraces = 1 << 16

// MaxNameLength caps the service and span names the detector keeps: its
// name tables hold thousands of them for as long as they are in use, so a
// client sending megabyte names must not multiply that into gigabytes. A
// longer name is cut on a rune boundary and marked with "…".
const MaxNameLength = 256

func capName(s string) string { return CapString(s, MaxNameLength) }

// CapString cuts s to at most n bytes on a rune boundary, marking the cut
// with "…"; s itself when it fits.
func CapString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut, tail := n-len(mark), mark
	if cut < 0 { // no room for the mark
		cut, tail = max(n, 0), ""
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + tail
}

func (sh *shard) newEndpoint(service, name string) *endpoint {
	e := &endpoint{service: sh.strs.intern(service), name: sh.strs.intern(name)}
	sh.bindService(e)
	return e
}

// ingest adds a span to its trace, and returns the trace; h is the trace
// id's slotHash.
func (sh *shard) ingest(s *Span, h uint32, now time.Time) *traceState {
	d := sh.d
	ts := sh.last
	if ts == nil || ts.id != s.TraceID {
		ts = sh.entry(s.TraceID, h)
	}
	if ts == nil || ts.kind != entryLive {
		if sh.idle.n >= sh.limit {
			sh.evictOldest(now)
			if ts != nil {
				ts = sh.entry(s.TraceID, h) // the eviction may have dropped its tomb
			}
		}
		if ts != nil {
			sh.reopen(ts, now)
		} else {
			ts = sh.newEntry(s.TraceID, h)
		}
		ts.firstSeen = now.UnixNano()
		ts.arrived = ts.firstSeen
		d.stats.active.Add(1)
	} else {
		sh.idle.unlink(&sh.slab, ts)
	}
	// Children usually arrive before their parents (they end first), so the
	// trace starts at the earliest start seen, not the first span's.
	if s.StartUnixNano > 0 && s.StartUnixNano <= math.MaxInt64 {
		if st := int64(s.StartUnixNano); st < now.UnixNano() && st < ts.firstSeen {
			ts.firstSeen = st
		}
	}
	if s.EndUnixNano > 0 && s.EndUnixNano <= math.MaxInt64 {
		end := min(int64(s.EndUnixNano), now.UnixNano()) // a skewed clock must not date evidence in the future
		if end > ts.lastEnd {
			ts.lastEnd = end
		}
	}
	sh.idle.pushBack(&sh.slab, ts)
	sh.last = ts
	ts.lastSeen = now.UnixNano()
	ts.dirty = true
	ts.spanCount++

	ep := sh.eps.get(capName(s.Service), capName(s.Name), sh.newEndpoint)
	if ep.svc.gone || (ep.svc.other && ep.gen != d.services.freed.Load()) {
		sh.bindService(ep)
	}
	ep.svc.spans++
	svcAt := sh.serviceAt(ts, ep)
	if svcAt < 0 && ts.services.n < maxServicesPerTrace {
		sh.slab.serviceIDs.push(&ts.services, sh.eps.hold(ep))
		svcAt = int(ts.services.n) - 1
	}
	if sh.n(ts).allowedBy == "" {
		if s.AllowedBy != "" {
			sh.note(ts).allowedBy = strings.Clone(s.AllowedBy)
		} else if _, ok := d.allowSvc[ep.service]; ok && len(d.allowSvc) > 0 {
			sh.note(ts).allowedBy = "allow.services: " + ep.service
		}
	}

	rec := spanRec{id: s.SpanID, parent: s.ParentID}
	if s.blocked() {
		rec.flags |= flagBlocked
	}
	if s.Data != DataNone {
		rec.flags |= flagData
	}
	if s.Calls {
		rec.flags |= flagCalls
	}
	var primary string
	mismatch := false
	// norm[i] is s.Tenants[i] normalised, "" when it is no tenant; values are
	// normalised (and rejections counted) once, here.
	norm := sh.norm[:0]
	tenants := sh.tenantsOf(ts) // read, not pushed to, until primary joins below
	for i := range s.Tenants {
		rt := &s.Tenants[i]
		t, ok, known := "", false, false
		if int(rt.KeyIndex) < len(d.keys) {
			t, ok, known = sh.normalize(rt.Value, tenants)
		} else {
			d.stats.rejected.Add(1)
		}
		// A tenant the trace already holds is not a shared one (shared
		// tenants never join a trace's tenants), so only a new one is
		// looked up in the shared set.
		if ok && !known {
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
		ts.cov.withoutTenant(svcAt)
		if _, aware := d.aware[ep.service]; aware {
			ts.cov.missing++
			sh.missingTenant(ts, s, ep, now)
		}
	} else {
		idx := indexOf(tenants, primary)
		if idx < 0 && int(ts.tenants.n) < maxTenantsPerTrace {
			sh.slab.tenantNames.push(&ts.tenants, primary)
			idx = int(ts.tenants.n) - 1
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
	if len(s.Identifiers) > 0 && sh.checkKeys(ts, s, ep, primary) {
		rec.flags |= flagEvidence
	}
	if s.Query != "" && d.sql != nil && sh.checkQuery(ts, s, ep, now) {
		ts.cov.unscoped++
	}
	if int(ts.spans.n) < d.cfg.MaxSpansPerTrace {
		rec.ep = sh.eps.hold(ep)
		sh.slab.spanRecs.push(&ts.spans, rec)
	} else {
		d.stats.overCap.Add(1)
	}
	return ts
}

// serviceAt is the index of ep's service in ts.services, -1 when absent.
func (sh *shard) serviceAt(ts *traceState, ep *endpoint) int {
	for i, id := range sh.servicesOf(ts) {
		if id == ep.id || sh.eps.at(id).service == ep.service {
			return i
		}
	}
	return -1
}

// serviceNames are the trace's services, by name, sorted (nil for none).
func (sh *shard) serviceNames(ts *traceState) []string {
	ids := sh.servicesOf(ts)
	if len(ids) == 0 {
		return nil
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = sh.eps.at(id).service
	}
	slices.Sort(out)
	return out
}

// releaseServices lets go of the trace's services: their endpoints, then
// their chunk, which goes to the next traces.
func (sh *shard) releaseServices(ts *traceState) {
	for _, id := range sh.servicesOf(ts) {
		sh.eps.drop(id)
	}
	sh.slab.serviceIDs.free(&ts.services)
}

// recordMismatch describes a mismatching span; norm holds its values as
// ingest normalised them ("" for no tenant).
// maxMismatchValues caps the tenant values kept per disagreeing span: a
// header array can carry thousands. The finding lists as many tenants as a
// trace can hold, so the cap is the same.
const maxMismatchValues = maxTenantsPerTrace

func (sh *shard) recordMismatch(ts *traceState, s *Span, ep *endpoint, norm []string) {
	if len(sh.n(ts).mismatches) >= sh.d.cfg.MaxEvidenceSpans {
		return
	}
	for i := range sh.n(ts).mismatches {
		if sh.n(ts).mismatches[i].SpanID == s.SpanID {
			return // the same span delivered again
		}
	}
	m := Mismatch{SpanID: s.SpanID, Service: ep.service, Name: ep.name}
	for i, t := range norm {
		if t == "" {
			continue
		}
		if len(m.Values) == maxMismatchValues {
			break
		}
		rt := &s.Tenants[i]
		v := TenantSource{Key: sh.d.keys[rt.KeyIndex], Tenant: t, Resource: rt.Resource}
		if !slices.Contains(m.Values, v) {
			m.Values = append(m.Values, v)
		}
	}
	nt := sh.note(ts)
	nt.mismatches = append(nt.mismatches, m)
}

// checkKeys applies the identifier bindings: a key bound to another tenant
// than the span's, or a global key, is recorded. It reports whether the
// span is evidence.
func (sh *shard) checkKeys(ts *traceState, s *Span, ep *endpoint, spanTenant string) bool {
	found := false
	for _, id := range s.Identifiers {
		if int(id.Binding) >= len(sh.d.bindings) {
			continue
		}
		b := &sh.d.bindings[id.Binding]
		use := KeyUse{SpanID: s.SpanID, Service: ep.service, Name: ep.name, Attribute: b.attribute, SpanTenant: spanTenant}
		if _, global := b.global[id.Value]; global {
			use.Global = true
		} else if owner, ok := b.tenants[id.Value]; ok && spanTenant != "" && owner != spanTenant {
			use.KeyTenant = owner
		} else {
			continue
		}
		found = true
		if len(sh.n(ts).keys) >= sh.d.cfg.MaxEvidenceSpans || hasKeyUse(sh.n(ts).keys, s.SpanID, b.attribute) {
			continue
		}
		use.Identifier = strings.Clone(id.Value)
		nt := sh.note(ts)
		nt.keys = append(nt.keys, use)
	}
	return found
}

func hasKeyUse(keys []KeyUse, span SpanID, attr string) bool {
	for i := range keys {
		if keys[i].SpanID == span && keys[i].Attribute == attr {
			return true
		}
	}
	return false
}

// normalize turns a raw value into an interned tenant, counting values
// that cannot be tenants; known are the trace's tenants, already interned.
func (sh *shard) normalize(v Value, known []string) (t string, ok, isKnown bool) {
	str, num, res := appendTenant(sh.scratch[:0], v)
	switch res {
	case tenantOK:
		if num != nil {
			sh.scratch = num
			return sh.strs.internBytes(num), true, false
		}
		// Most spans carry a tenant their trace already has: comparing with
		// the trace's few tenants spares hashing a string the request has
		// just decoded and probing the interner's map with it.
		for _, t := range known {
			if t == str {
				return t, true, true
			}
		}
		return sh.strs.intern(str), true, false
	case tenantRejected:
		sh.d.stats.rejected.Add(1)
	}
	return "", false, false
}

type tenantResult uint8

const (
	tenantOK       tenantResult = iota
	tenantEmpty                 // no tenant, nothing wrong
	tenantRejected              // a value that cannot be a tenant
)

// appendTenant normalises a raw value: strings are trimmed (and returned
// as a substring, no copy), numbers are rendered in decimal into dst so
// that 42, 42.0 and "42" agree.
func appendTenant(dst []byte, v Value) (string, []byte, tenantResult) {
	switch v.Kind {
	case KindString:
		s := strings.TrimSpace(v.Str)
		if s == "" {
			return "", nil, tenantEmpty
		}
		if len(s) > MaxTenantLength {
			return "", nil, tenantRejected
		}
		return s, nil, tenantOK
	case KindInt:
		return "", strconv.AppendInt(dst, v.Int, 10), tenantOK
	case KindDouble:
		f := v.Double
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return "", nil, tenantRejected
		}
		// Every integral double in int64's range converts exactly, so it
		// renders as the int of the same value would.
		if f == math.Trunc(f) && f >= math.MinInt64 && f < -math.MinInt64 {
			return "", strconv.AppendInt(dst, int64(f), 10), tenantOK
		}
		return "", strconv.AppendFloat(dst, f, 'g', -1, 64), tenantOK
	default:
		return "", nil, tenantRejected
	}
}

// NormalizeTenant is the tenant a raw value names, as the detector sees it
// (for tools that compare tenants with findings, such as detector/redteam).
func NormalizeTenant(v Value) (string, bool) {
	str, num, res := appendTenant(nil, v)
	if res != tenantOK {
		return "", false
	}
	if num != nil {
		return string(num), true
	}
	return str, true
}

// linkEnd describes the producer end of a span link, from the trace in
// memory or, for a closed trace, the spans its tomb kept.
func (sh *shard) linkEnd(l Link) (EdgeEnd, bool) {
	ts := sh.entry(l.TraceID, sh.d.hash32(l.TraceID))
	if ts == nil {
		return EdgeEnd{}, false
	}
	if ts.kind == entryLive {
		spans := sh.spansOf(ts)
		for i := range spans {
			r := &spans[i]
			if r.id == l.SpanID {
				t := sh.tenantOf(ts, r)
				ep := sh.eps.at(r.ep)
				return EdgeEnd{TraceID: l.TraceID, SpanID: r.id, Service: ep.service, Name: ep.name, Tenant: t}, t != ""
			}
		}
		return EdgeEnd{}, false
	}
	for seq := ts.buriedFirst; seq < ts.buriedFirst+uint64(ts.buriedN); seq++ {
		if b := sh.buriedAt(seq); b != nil && b.id == l.SpanID && b.tenant != 0 {
			ep := sh.eps.at(b.ep)
			return EdgeEnd{TraceID: l.TraceID, SpanID: b.id, Service: ep.service, Name: ep.name, Tenant: sh.tenantsOf(ts)[b.tenant-1]}, true
		}
	}
	return EdgeEnd{}, false
}

// addLink records a resolved link on the consumer span's trace. The
// producer's tenant joins the trace's tenants: the flow touched it.
func (sh *shard) addLink(pl pendingLink, from EdgeEnd) *traceState {
	ts := sh.live(pl.trace)
	if ts == nil {
		return nil
	}
	spans := sh.spansOf(ts)
	for i := range spans {
		if spans[i].id != pl.span {
			continue
		}
		for _, le := range sh.n(ts).links {
			if le.to == int32(i) && le.from.TraceID == from.TraceID && le.from.SpanID == from.SpanID {
				return ts // a redelivered consumer span
			}
		}
		if len(sh.n(ts).links) >= sh.d.cfg.MaxEvidenceSpans {
			return ts
		}
		from.Service, from.Name = sh.strs.intern(from.Service), sh.strs.intern(from.Name)
		from.Tenant = sh.strs.intern(from.Tenant)
		nt := sh.note(ts)
		nt.links = append(nt.links, linkEdge{from: from, to: int32(i), blocked: spans[i].flags&flagBlocked != 0})
		if !contains(sh.tenantsOf(ts), from.Tenant) && int(ts.tenants.n) < maxTenantsPerTrace {
			sh.slab.tenantNames.push(&ts.tenants, from.Tenant)
		}
		ts.dirty = true
		return ts
	}
	return ts
}

func (sh *shard) evictOldest(now time.Time) {
	ts := sh.idle.front(&sh.slab)
	if ts == nil {
		return
	}
	sh.d.stats.evicted.Add(1)
	sh.close(ts, now)
}

// expire closes traces idle past the window (all of them when force is set).
func (sh *shard) expire(now time.Time, force bool) {
	cutoff := now.Add(-sh.d.cfg.IdleWindow)
	for ts := sh.idle.front(&sh.slab); ts != nil; ts = sh.idle.front(&sh.slab) {
		if !force && ts.lastSeen > cutoff.UnixNano() {
			break
		}
		sh.d.stats.expired.Add(1)
		sh.close(ts, now)
	}
	sh.expireTombs(now)
}

// close evaluates a trace a last time and emits the closing version of its
// findings, then leaves its entry as a tomb or frees it.
//
// The lock's holder answers for the closing versions (its request waits
// until they are durable) only when the trace held spans not yet judged:
// the holder's own, or a concurrent batch's it is judging for it. A trace
// whose spans were all judged, pushed out of memory by another trace of the
// holder's request, carries nothing of that request; its closing version
// goes to the sink alone and is written with the next write (processor's
// onFinding). Waiting for it cost a request with no crossing of its own an
// fsync: a fifth of the reference load's CPU per span (BENCHMARKS.md,
// section 8).
func (sh *shard) close(ts *traceState, now time.Time) {
	sh.prefetchNextVictims(ts)
	owed := ts.dirty
	if ts.dirty {
		sh.evaluate(ts, now)
	}
	var last map[Rule]*Finding
	for _, f := range sh.n(ts).findings {
		if f == nil {
			continue
		}
		if f.status == StatusOpen {
			f.status = StatusClosed
			sh.emit(ts, f, now, owed)
		}
		if f.last != nil {
			if last == nil {
				last = map[Rule]*Finding{}
			}
			last[f.rule] = f.last
		}
	}
	sh.countTrace(ts)
	if sh.last == ts {
		sh.last = nil
	}
	sh.idle.unlink(&sh.slab, ts)
	sh.d.stats.active.Add(-1)
	sh.bury(ts, last, now)
}

// lastSeenForEvidence is the latest span end when spans carry times, so
// that replays of old traces are dated by the traces, not by the replay.
func (ts *traceState) lastSeenForEvidence() int64 {
	if ts.lastEnd == 0 || ts.lastEnd < ts.firstSeen {
		return ts.lastSeen
	}
	return ts.lastEnd
}

// timeAt turns unix nanoseconds the state keeps back into a time, in the
// detector clock's location (that of now), as the state held them before.
func timeAt(ns int64, now time.Time) time.Time {
	return time.Unix(0, ns).In(now.Location())
}

func (sh *shard) tenantOf(ts *traceState, r *spanRec) string {
	if r.tenant == 0 {
		return ""
	}
	return sh.tenantsOf(ts)[r.tenant-1]
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

// holdsFinding reports whether judging the trace can have raised a finding
// version: it holds a finding, or a reopened trace's tomb held one.
func (sh *shard) holdsFinding(ts *traceState) bool {
	nt := sh.n(ts)
	return nt.prior != nil || slices.ContainsFunc(nt.findings[:], func(f *finding) bool { return f != nil })
}
