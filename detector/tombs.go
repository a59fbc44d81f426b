package detector

// What a closed trace leaves behind for the late window (its tomb), and the
// rings that hold the tombs' queue and the spans they keep as link targets.

import (
	"math"
	"math/bits"
	"time"
)

// tomb is what a closed trace leaves behind for LateWindow: its tenants,
// the last version of each finding, so a late span from another tenant is
// caught and joined to the same finding, not a poorer one, and the spans a
// later consumer may link to. A tomb is 48 bytes in the shard's map; a
// clean single-tenant trace allocates nothing more. Its link targets are up
// to maxBuriedSpans of its spans that carry a tenant, 32 bytes each in the
// shard's ring of buried spans, so a tomb costs at most 48 + 8×32 = 304
// bytes.
type tomb struct {
	at     int64  // unix nanoseconds of the close
	tenant string // the only tenant, when more is nil
	more   *tombstone
	first  uint64 // sequence number of its first buried span
	n      uint8  // how many buried spans it has
}

// buriedSpan is a span of a closed trace that carries a tenant, kept for
// the late window so that a consumer linking to it later gets an edge with
// both ends: the producer's service and span name, not only its tenant.
// A tomb finds its spans by sequence number, so they need no trace id.
type buriedSpan struct {
	id     SpanID
	ep     *endpoint
	at     int64 // unix nanoseconds of the close that buried it
	tenant uint8 // index into the tomb's tenants
}

// maxBuriedSpans caps the spans a tomb keeps as link targets. Producers
// are usually data-bearing spans (a publish to a queue) and batch jobs link
// to the request's root, so those are kept first; a link to a span not kept
// is unresolved (counted), never an edge with an empty end.
const maxBuriedSpans = 8

type tombstone struct {
	tenants  []string
	findings map[Rule]*Finding
}

func (t *tomb) tenants() []string {
	if t.more != nil {
		return t.more.tenants
	}
	return []string{t.tenant}
}

// buriedCapFor is the largest power of two up to limit×maxBuriedSpans (a
// limit near MaxInt must not overflow).
func buriedCapFor(limit int) int {
	n := uint(min(max(limit, 1), math.MaxInt/maxBuriedSpans))
	return 1 << (bits.Len(n*maxBuriedSpans) - 1)
}

// bury leaves a tombstone for a closed trace with tenants.
func (sh *shard) bury(ts *traceState, last map[Rule]*Finding, now time.Time) {
	if sh.d.cfg.LateWindow <= 0 || len(ts.tenants) == 0 {
		return
	}
	if prior := ts.prior; prior != nil {
		for r, f := range prior.findings {
			if _, ok := last[r]; !ok {
				if last == nil {
					last = map[Rule]*Finding{}
				}
				last[r] = f
			}
		}
	}
	tb := tomb{at: now.UnixNano()}
	if len(ts.tenants) == 1 && last == nil {
		tb.tenant = ts.tenants[0]
	} else {
		tb.more = &tombstone{tenants: append([]string(nil), ts.tenants...), findings: last}
	}
	old, exists := sh.tombs[ts.id]
	if !exists {
		sh.tombQ.push(ts.id)
	}
	sh.buryLinkTargets(ts, &tb, old, exists)
	sh.tombs[ts.id] = tb
	// Bounded like the traces themselves.
	for len(sh.tombs) > sh.limit && sh.tombQ.len() > 0 {
		delete(sh.tombs, sh.tombQ.pop())
	}
}

// buryLinkTargets keeps the spans of a closing trace that a consumer may
// link to: those carrying a tenant, data-bearing ones first, then roots,
// then the rest in arrival order, at most maxBuriedSpans. A trace reopened
// by late spans within the late window keeps what its earlier close kept
// first: its tenants begin with the earlier tomb's, so their indexes hold.
func (sh *shard) buryLinkTargets(ts *traceState, tb *tomb, old tomb, reopened bool) {
	tb.first = sh.buriedSeq + uint64(sh.buried.len()) // the next push's
	push := func(b buriedSpan) {
		if sh.buried.len() >= sh.buriedCap {
			sh.popBuried()
		}
		b.at = tb.at
		sh.buried.push(b)
	}
	n := 0
	if reopened && ts.arrived.UnixNano()-old.at < int64(sh.d.cfg.LateWindow) {
		var keep [maxBuriedSpans]buriedSpan // copied out first: pushing may drop them
		for seq := old.first; seq < old.first+uint64(old.n); seq++ {
			if b := sh.buriedAt(seq); b != nil {
				keep[n] = *b
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
		for i := range ts.spans {
			r := &ts.spans[i]
			if r.tenant == 0 {
				continue
			}
			isData, isRoot := r.flags&flagData != 0, r.parent.IsEmpty()
			if (pass == dataBearing) != isData || (pass == root) != (isRoot && !isData) {
				continue
			}
			push(buriedSpan{id: r.id, ep: r.ep, tenant: r.tenant - 1})
			if n++; n == maxBuriedSpans {
				break
			}
		}
	}
	tb.n = uint8(n)
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
	sh.buried.pop()
	sh.buriedSeq++
}

func (sh *shard) expireTombs(now time.Time) {
	for sh.tombQ.len() > 0 {
		id := sh.tombQ.front()
		t, ok := sh.tombs[id]
		if ok && now.UnixNano()-t.at < int64(sh.d.cfg.LateWindow) {
			break
		}
		if ok {
			delete(sh.tombs, id)
		}
		sh.tombQ.pop()
	}
	// Spans are buried in close order: those past the window are in front.
	for sh.buried.len() > 0 && now.UnixNano()-sh.buried.at(0).at >= int64(sh.d.cfg.LateWindow) {
		sh.popBuried()
	}
}

// idRing is a FIFO of trace ids. The tombstone queue gains one id and
// loses one per closed trace at line rate; as a re-sliced slice it kept
// reallocating and copying itself (most of the bytes allocated per span
// on clean traffic).
type idRing = ring[TraceID]

// ring is a FIFO that grows by doubling and never shrinks: its users bound
// it (the tombstone queue and the buried spans by the shard's trace limit).
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

func (r *ring[T]) front() T { return r.buf[r.head] }

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
