package detector

// What a closed trace leaves behind for the late window (its tomb), and the
// ring that holds the spans tombs keep as link targets.

import (
	"math"
	"math/bits"
	"slices"
	"time"
)

// A closed trace's entry is its tomb for LateWindow: the entry keeps its
// tenants, the last version of each finding (prior), so a late span from
// another tenant is caught and joined to the same finding, not a poorer
// one, and the spans a later consumer may link to. A tomb is its slab entry
// (160 bytes) and index slot (8 bytes, table.go) and its tenants' chunk; a
// clean single-tenant trace allocates nothing more. Its link targets are up to
// maxBuriedSpans of its spans that carry a tenant, 32 bytes each in the
// shard's ring of buried spans, so a tomb costs about 200 + 8×32 = 456
// bytes at most, besides its tenants and its notes (findings). A late span
// reopens the entry in place.

// buriedSpan is a span of a closed trace that carries a tenant, kept for
// the late window so that a consumer linking to it later gets an edge with
// both ends (the producer's service and span name, not only its tenant),
// and so that late spans that reopen the trace find their crossing edges
// to it (reopen puts it back among the trace's spans). A tomb finds its
// spans by sequence number, so they need no trace id. 32 bytes, and no
// pointer (see endpoint).
type buriedSpan struct {
	id     SpanID
	parent SpanID
	at     int64  // unix nanoseconds of the close that buried it
	ep     uint32 // the endpoint's id, held
	tenant uint8  // as spanRec.tenant: 1-based into the tomb's tenants, 0 for none (a call)
	key    uint8  // spanRec.key
	flags  uint8  // spanRec.flags, but flagEvidence (see unburySpans)
}

// maxBuriedSpans caps the spans a tomb keeps as link targets. Producers
// are usually data-bearing spans (a publish to a queue) and batch jobs link
// to the request's root, so those are kept first; a link to a span not kept
// is unresolved (counted), never an edge with an empty end.
const maxBuriedSpans = 8

// tombstone is what a closed trace's findings said last, by rule.
type tombstone struct {
	findings map[Rule]*Finding
}

// buriedCapFor is the largest power of two up to limit×maxBuriedSpans (a
// limit near MaxInt must not overflow).
func buriedCapFor(limit int) int {
	n := uint(min(max(limit, 1), math.MaxInt/maxBuriedSpans))
	return 1 << (bits.Len(n*maxBuriedSpans) - 1)
}

// bury leaves a closed trace's entry, off the idle list, as its tomb when
// the trace had tenants, and frees it otherwise. last is the last version
// of each finding of the trace.
func (sh *shard) bury(ts *traceState, last map[Rule]*Finding, now time.Time) {
	if sh.d.cfg.LateWindow <= 0 || int(ts.tenants.n) == 0 {
		sh.drop(ts)
		return
	}
	if prior := sh.n(ts).prior; prior != nil {
		for r, f := range prior.findings {
			if _, ok := last[r]; !ok {
				if last == nil {
					last = map[Rule]*Finding{}
				}
				last[r] = f
			}
		}
	}
	at := now.UnixNano()
	sh.buryLinkTargets(ts, at)
	// A tomb keeps its id, tenants, prior and link targets; the close time
	// goes in lastSeen. The rest is emptied; its spans' and services'
	// chunks go to the next traces, and its notes hold only the prior.
	sh.releaseServices(ts)
	sh.releaseSpans(ts)
	sh.slab.putNotes(&ts.notes)
	var notes int32
	if last != nil {
		notes = sh.slab.newNotes()
		sh.slab.notesAt(notes).prior = &tombstone{findings: last}
	}
	*ts = traceState{
		id: ts.id, tenants: ts.tenants, notes: notes,
		lastSeen: now.UnixNano(), buriedFirst: ts.buriedFirst, buriedN: ts.buriedN,
		self: ts.self, prev: -1, next: -1, kind: entryTomb,
	}
	sh.tombs.pushBack(&sh.slab, ts)
	// Bounded like the traces themselves.
	for sh.tombs.n > sh.limit {
		sh.unbury(sh.tombs.front(&sh.slab))
	}
}

// unbury frees a tomb.
func (sh *shard) unbury(ts *traceState) {
	sh.prefetchNextTombs(ts)
	sh.tombs.unlink(&sh.slab, ts)
	sh.drop(ts)
}

// reopen turns a tomb back into a live trace when spans of its trace
// arrive. Within the late window they are late spans: the trace keeps its
// tenants and what was said about it (prior), and its tomb's link targets
// for when it closes again. Past it, the trace starts afresh.
func (sh *shard) reopen(ts *traceState, now time.Time) {
	sh.tombs.unlink(&sh.slab, ts)
	ts.kind = entryLive
	if now.UnixNano()-ts.lastSeen < int64(sh.d.cfg.LateWindow) {
		sh.d.stats.late.Add(1)
	} else {
		sh.slab.tenantNames.truncate(&ts.tenants)
		sh.slab.putNotes(&ts.notes) // a tomb's notes hold only its prior
		ts.buriedN = 0
	}
	ts.lastSeen = 0
	ts.tombTenants = uint8(ts.tenants.n)
	sh.slab.fill(ts)
	sh.unburySpans(ts)
}

// unburySpans puts a reopened trace's buried spans back among its spans
// (marked flagBuried), so that a crossing edge between a span of the
// closed part and a late one is found, with its outcome. Without them a
// trace split by the idle window was judged with no edge known, and a
// refused attempt whose refused span had closed first came out as a
// crossing that succeeded. Their evidence details (mismatches, keys) are
// in the tomb's findings, which the late versions merge (mergePrior), so
// they are not evidence spans again.
func (sh *shard) unburySpans(ts *traceState) {
	for seq := ts.buriedFirst; seq < ts.buriedFirst+uint64(ts.buriedN); seq++ {
		b := sh.buriedAt(seq)
		if b == nil || int(ts.spans.n) >= sh.d.cfg.MaxSpansPerTrace {
			continue
		}
		sh.slab.spanRecs.push(&ts.spans, spanRec{id: b.id, parent: b.parent, ep: sh.eps.holdID(b.ep),
			tenant: b.tenant, key: b.key, flags: b.flags | flagBuried})
	}
}

// buryLinkTargets keeps the spans of a closing trace that a consumer may
// link to, or a late span may be the parent or child of: those carrying a
// tenant, data-bearing ones first, then roots, then the rest latest first
// (the spans that arrive last in a part are usually its topmost ones, whose
// parents are still to come), then, while there is room, calls without a
// tenant (client or producer spans, not to a store), latest first, with
// the spans without a tenant above them: a late callee's edge walks
// through them to its caller's span (no link resolves to one), at most
// maxBuriedSpans. A trace reopened by
// late spans within the late window keeps what its earlier close kept first
// (reopen kept its range and put those spans back, flagged flagBuried, so
// they are not kept twice): its tenants begin with the earlier tomb's, so
// their indexes hold. at is the close's time, in unix nanoseconds.
func (sh *shard) buryLinkTargets(ts *traceState, at int64) {
	spans := sh.spansOf(ts)
	oldFirst, oldN := ts.buriedFirst, ts.buriedN
	ts.buriedFirst = sh.buriedSeq + uint64(sh.buried.len()) // the next push's
	// push takes over the caller's hold on b's endpoint.
	push := func(b buriedSpan) {
		if sh.buried.len() >= sh.buriedCap {
			sh.popBuried()
		}
		b.at = at
		sh.buried.push(b)
	}
	n := 0
	if oldN > 0 {
		var keep [maxBuriedSpans]buriedSpan // copied out first: pushing may drop them
		for seq := oldFirst; seq < oldFirst+uint64(oldN); seq++ {
			if b := sh.buriedAt(seq); b != nil {
				keep[n] = *b
				sh.eps.holdID(b.ep) // pushing may pop b and its hold
				n++
			}
		}
		for i := range n {
			push(keep[i])
		}
	}
	const (
		dataBearing = iota
		root
		rest
	)
	for pass := dataBearing; pass <= rest && n < maxBuriedSpans; pass++ {
		for k := range spans {
			i := k
			if pass == rest {
				i = len(spans) - 1 - k
			}
			r := &spans[i]
			if r.tenant == 0 || r.flags&flagBuried != 0 {
				continue
			}
			isData, isRoot := r.flags&flagData != 0, r.parent.IsEmpty()
			if (pass == dataBearing) != isData || (pass == root) != (isRoot && !isData) {
				continue
			}
			push(buriedSpan{id: r.id, parent: r.parent, ep: sh.eps.holdID(r.ep), tenant: r.tenant, key: r.key,
				flags: r.flags &^ flagEvidence})
			if n++; n == maxBuriedSpans {
				break
			}
		}
	}
	// Then the calls without a tenant, latest first, each with the spans
	// without a tenant between it and its caller's span (a handler span),
	// so that a late callee's edge can walk up to a span with a tenant.
	var bare [maxBuriedSpans]SpanID // kept by this loop
	nbare := 0
	for k := len(spans) - 1; k >= 0 && n < maxBuriedSpans; k-- {
		r := &spans[k]
		if r.tenant != 0 || r.flags&(flagCalls|flagData|flagBuried) != flagCalls {
			continue
		}
		for r != nil && r.tenant == 0 && r.flags&flagBuried == 0 && n < maxBuriedSpans && !slices.Contains(bare[:nbare], r.id) {
			bare[nbare] = r.id
			nbare++
			push(buriedSpan{id: r.id, parent: r.parent, ep: sh.eps.holdID(r.ep), key: r.key, flags: r.flags &^ flagEvidence})
			n++
			r = spanByID(spans, r.parent)
		}
	}
	ts.buriedN = uint8(n)
}

// spanByID is the trace's span with this id, nil when it holds none (or id
// is empty: a root's parent). A linear search: it serves closes only.
func spanByID(spans []spanRec, id SpanID) *spanRec {
	if id.IsEmpty() {
		return nil
	}
	for i := range spans {
		if spans[i].id == id {
			return &spans[i]
		}
	}
	return nil
}

// buriedAt is the buried span with sequence number seq, nil when it is no
// longer (or not yet) in the ring. Sequence numbers are never reused, so a
// span in a tomb's range is that tomb's.
func (sh *shard) buriedAt(seq uint64) *buriedSpan {
	if seq < sh.buriedSeq || seq-sh.buriedSeq >= uint64(sh.buried.len()) {
		return nil
	}
	return sh.buried.at(int(seq - sh.buriedSeq))
}

func (sh *shard) popBuried() {
	sh.eps.drop(sh.buried.at(0).ep)
	sh.buried.pop()
	sh.buriedSeq++
}

func (sh *shard) expireTombs(now time.Time) {
	for ts := sh.tombs.front(&sh.slab); ts != nil; ts = sh.tombs.front(&sh.slab) {
		if now.UnixNano()-ts.lastSeen < int64(sh.d.cfg.LateWindow) {
			break
		}
		sh.unbury(ts)
	}
	// Spans are buried in close order: those past the window are in front.
	for sh.buried.len() > 0 && now.UnixNano()-sh.buried.at(0).at >= int64(sh.d.cfg.LateWindow) {
		sh.popBuried()
	}
}

// ring is a FIFO that grows by doubling and never shrinks: its user bounds
// it (the buried spans by the shard's trace limit).
// Its length is a power of two, so positions wrap with a mask.
type ring[T any] struct {
	buf  []T
	head int
	n    int
}

func (r *ring[T]) len() int { return r.n }

func (r *ring[T]) push(v T) {
	if r.n == len(r.buf) {
		grown := make([]T, max(16, 2*len(r.buf)))
		copied := copy(grown, r.buf[r.head:])
		copy(grown[copied:], r.buf[:r.head])
		r.buf, r.head = grown, 0
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = v
	r.n++
}

// at is the i-th entry from the front, i < len().
func (r *ring[T]) at(i int) *T { return &r.buf[(r.head+i)&(len(r.buf)-1)] }

func (r *ring[T]) pop() T {
	v := r.buf[r.head]
	var zero T
	r.buf[r.head] = zero // let what it points to go
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	return v
}
