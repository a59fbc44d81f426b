package detector

// The shard's trace table: every trace state, live or left as a tomb, is
// an entry of one slab, found through one open-addressing index. A trace
// costs no heap object of its own and no map entry: entries and their
// chunks are reused, and a closed trace's entry (and its index slot) is
// its tombstone.

import "math/bits"

// Kinds of slab entry.
const (
	entryFree uint8 = iota
	entryLive       // a trace in memory, on the idle list
	entryTomb       // a closed trace kept for the late window, on the tomb list
)

// traceIndex maps trace ids to slab entries by linear probing; a removed
// id's successors are shifted back (no deleted markers), so a probe stops
// at the first empty slot. Ids hash with the detector's seed, so a client
// cannot line up its ids on one probe run.
type traceIndex struct {
	slots []indexSlot
	shift uint8 // 32 - log2(len(slots)): a slot's home is hash >> shift
	n     int   // slots in use
	max   int   // slots it may use before it doubles: 3/4 of them
}

// indexSlot is 8 bytes, eight to a cache line: the top of the id's hash,
// which rules out other ids without touching the slab (and lets a slot be
// moved without hashing its id again), and the entry. A hit reads the
// entry's id to confirm it, and the entry is what the caller reads next.
type indexSlot struct {
	hash uint32 // the hash's top 32 bits; the slot's home is hash >> shift
	ref  int32  // 1 + the entry's index in the slab; 0: the slot is empty
}

// The index starts small and doubles as the shard's state first fills (a
// default shard of 50,000 traces and as many tombs doubles 8 times, then
// never again), so a detector that holds few traces holds a small index.
const minIndexSlots = 1024

func newTraceIndex() traceIndex {
	var x traceIndex
	x.resize(minIndexSlots)
	return x
}

func (x *traceIndex) resize(n int) {
	old := x.slots
	x.slots = make([]indexSlot, n)
	x.shift = uint8(32 - bits.TrailingZeros(uint(n)))
	x.max = n / 4 * 3
	mask := uint32(n - 1)
	for _, s := range old {
		if s.ref != 0 {
			i := s.hash >> x.shift
			for x.slots[i].ref != 0 {
				i = (i + 1) & mask
			}
			x.slots[i] = s
		}
	}
}

// find returns the entry of id, nil when it has none.
func (x *traceIndex) find(s *slab, id TraceID, h uint32) *traceState {
	mask := uint32(len(x.slots) - 1)
	for i := h >> x.shift; ; i = (i + 1) & mask {
		sl := x.slots[i]
		if sl.ref == 0 {
			return nil
		}
		if sl.hash == h {
			if ts := s.at(sl.ref - 1); ts.id == id {
				return ts
			}
		}
	}
}

// insert adds an entry, whose id must be absent.
func (x *traceIndex) insert(h uint32, ref int32) {
	if x.n >= x.max {
		x.resize(2 * len(x.slots))
	}
	mask := uint32(len(x.slots) - 1)
	i := h >> x.shift
	for x.slots[i].ref != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = indexSlot{hash: h, ref: ref}
	x.n++
}

// remove takes out the entry ref, whose id hashes to h, and shifts back
// the slots after it that probe through its slot.
func (x *traceIndex) remove(h uint32, ref int32) {
	mask := uint32(len(x.slots) - 1)
	i := h >> x.shift
	for x.slots[i].ref != ref {
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		s := x.slots[j]
		if s.ref == 0 {
			break
		}
		// s may fill the hole at i unless its home lies after i, up to j
		// (cyclically): then a probe for it never passes i.
		if (j-s.hash>>x.shift)&mask >= (j-i)&mask {
			x.slots[i] = s
			i = j
		}
	}
	x.slots[i] = indexSlot{}
	x.n--
}

// slab holds the shard's trace entries in pages that are allocated as the
// state first fills and then reused for good, and the arenas that hold the
// entries' tenants, services and span records, whose chunks keep their
// room from one trace to the next. Entries never move, so a pointer to one
// stays valid while the shard is locked.
type slab struct {
	pages [][]traceState
	n     int32 // entries made so far
	max   int32 // entries it may make: the shard's live traces and tombs
	free  int32 // first free entry, chained through next; -1: none
	// The entries' chunks: an entry that has none (a new one, or a tomb,
	// which gives up its spans and services) takes one here (fill).
	tenantNames arena[string]
	serviceIDs  arena[uint32]
	spanRecs    arena[spanRec]
	// notes recycles traces' notes, so that a leak storm settles into
	// reusing them. A trace numbers its notes (traceState.notes): they
	// are noteSlots[notes-1], a pointer the GC marks only for traces
	// that have notes; freeNoteSlots are the numbers free for the next.
	notes         []*traceNotes
	noteSlots     []*traceNotes
	freeNoteSlots []int32
}

func newSlab(entries int) slab {
	return slab{
		max: int32(entries), free: -1,
		tenantNames: newArena[string](1),
		serviceIDs:  newArena[uint32](4),
		spanRecs:    newArena[spanRec](12),
	}
}

// fill gives an entry about to hold a trace the chunks it lacks.
func (s *slab) fill(ts *traceState) {
	s.tenantNames.reserve(&ts.tenants)
	s.serviceIDs.reserve(&ts.services)
	s.spanRecs.reserve(&ts.spans)
}

// newNotes gives a trace that needs some empty notes, and returns their
// number (traceState.notes).
func (s *slab) newNotes() int32 {
	var nt *traceNotes
	if n := len(s.notes); n > 0 {
		nt = s.notes[n-1]
		s.notes[n-1] = nil
		s.notes = s.notes[:n-1]
	} else {
		nt = new(traceNotes)
	}
	if n := len(s.freeNoteSlots); n > 0 {
		i := s.freeNoteSlots[n-1]
		s.freeNoteSlots = s.freeNoteSlots[:n-1]
		s.noteSlots[i] = nt
		return i + 1
	}
	s.noteSlots = append(s.noteSlots, nt)
	return int32(len(s.noteSlots))
}

// notesAt is the notes numbered i (not 0).
func (s *slab) notesAt(i int32) *traceNotes { return s.noteSlots[i-1] }

// putNotes takes back a trace's notes (*i == 0: none), emptied, and sets
// *i to 0; it keeps at most maxFreeNotes for reuse.
func (s *slab) putNotes(i *int32) {
	if *i == 0 {
		return
	}
	nt := s.noteSlots[*i-1]
	s.noteSlots[*i-1] = nil
	s.freeNoteSlots = append(s.freeNoteSlots, *i-1)
	*i = 0
	*nt = traceNotes{}
	if len(s.notes) < maxFreeNotes {
		s.notes = append(s.notes, nt)
	}
}

// maxFreeNotes bounds the notes kept for reuse (144 bytes each).
const maxFreeNotes = 1024

const slabPageBits = 8 // 256 entries (48 KiB) a page

func (s *slab) at(i int32) *traceState { return &s.pages[i>>slabPageBits][i&(1<<slabPageBits-1)] }

// take returns a free entry, making one when none is free; nil when the
// slab has made max and none is free (the shard keeps fewer than max in
// use, so it never asks then).
func (s *slab) take() *traceState {
	if i := s.free; i >= 0 {
		ts := s.at(i)
		s.free = ts.next
		ts.next = -1
		return ts
	}
	if s.n >= s.max {
		return nil
	}
	if int(s.n)>>slabPageBits == len(s.pages) {
		s.pages = append(s.pages, make([]traceState, min(1<<slabPageBits, s.max-s.n)))
	}
	ts := s.at(s.n)
	ts.self, ts.prev, ts.next = s.n, -1, -1
	s.n++
	return ts
}

// preallocate makes room at once for the first n entries (as many as the
// shard may hold live) and their span records and services. The memory
// holds no pointer, so the garbage collector never reads it; allocated
// now, it sets the collector's heap goal from the start, instead of a
// goal that trails the state as it fills (twice as many collections
// while a collector's state fills after a restart: BENCHMARKS.md,
// section 7). tenantguard writes a page only when the state reaches it,
// so on memory fresh from the kernel the rest takes address space, not
// memory.
func (s *slab) preallocate(n int32) {
	// Whole pages: take makes the next page when n reaches len(pages)
	// pages, so the last may be short only where the slab ends.
	n = min((n+1<<slabPageBits-1)&^(1<<slabPageBits-1), s.max)
	if n <= 0 || len(s.pages) > 0 {
		return
	}
	block := make([]traceState, n)
	for at := int32(0); at < n; at += 1 << slabPageBits {
		s.pages = append(s.pages, block[at:min(at+1<<slabPageBits, n):min(at+1<<slabPageBits, n)])
	}
	s.spanRecs.preallocate(int(n))
	s.serviceIDs.preallocate(int(n))
}

// give puts an entry back on the free chain.
func (s *slab) give(ts *traceState) {
	ts.kind = entryFree
	ts.prev, ts.next = -1, s.free
	s.free = ts.self
}

// entryList is a doubly linked list of slab entries through their prev
// and next: the idle list (oldest update first) and the tomb list (oldest
// close first).
type entryList struct {
	head, tail int32
	n          int
}

func newEntryList() entryList { return entryList{head: -1, tail: -1} }

func (l *entryList) pushBack(s *slab, ts *traceState) {
	ts.prev, ts.next = l.tail, -1
	if l.tail >= 0 {
		s.at(l.tail).next = ts.self
	} else {
		l.head = ts.self
	}
	l.tail = ts.self
	l.n++
}

func (l *entryList) unlink(s *slab, ts *traceState) {
	if ts.prev >= 0 {
		s.at(ts.prev).next = ts.next
	} else {
		l.head = ts.next
	}
	if ts.next >= 0 {
		s.at(ts.next).prev = ts.prev
	} else {
		l.tail = ts.prev
	}
	ts.prev, ts.next = -1, -1
	l.n--
}

// front is the list's first entry, nil when it is empty.
func (l *entryList) front(s *slab) *traceState {
	if l.head < 0 {
		return nil
	}
	return s.at(l.head)
}

// spansOf is the trace's span records, valid until the next record is
// pushed or they are released.
func (sh *shard) spansOf(ts *traceState) []spanRec { return sh.slab.spanRecs.view(ts.spans) }

// tenantsOf is the trace's tenants, valid until the next is pushed or they
// are released.
func (sh *shard) tenantsOf(ts *traceState) []string {
	return sh.slab.tenantNames.view(ts.tenants)
}

// servicesOf is the trace's services (held endpoint ids), valid until the
// next is pushed or they are released.
func (sh *shard) servicesOf(ts *traceState) []uint32 { return sh.slab.serviceIDs.view(ts.services) }

// entry is the trace's entry, live or tomb, nil when it has none.
func (sh *shard) entry(id TraceID, h uint32) *traceState {
	return sh.traces.find(&sh.slab, id, h)
}

// live is the trace's state while it is in memory, nil otherwise.
func (sh *shard) live(id TraceID) *traceState {
	if ts := sh.entry(id, sh.d.hash32(id)); ts != nil && ts.kind == entryLive {
		return ts
	}
	return nil
}

// newEntry makes a live entry for a trace the index does not hold.
func (sh *shard) newEntry(id TraceID, h uint32) *traceState {
	ts := sh.slab.take()
	ts.id, ts.kind = id, entryLive
	sh.slab.fill(ts)
	sh.traces.insert(h, ts.self+1)
	return ts
}

// releaseSpans lets go of the trace's span records: their endpoints, then
// their chunk, which goes to the next traces.
func (sh *shard) releaseSpans(ts *traceState) {
	for _, r := range sh.spansOf(ts) {
		sh.eps.drop(r.ep)
	}
	sh.slab.spanRecs.free(&ts.spans)
}

// drop frees an entry (live or tomb, already off its list) for the next
// trace: out of the index, its chunks back in the arenas.
func (sh *shard) drop(ts *traceState) {
	sh.traces.remove(sh.d.hash32(ts.id), ts.self+1)
	sh.slab.tenantNames.free(&ts.tenants)
	sh.releaseServices(ts)
	sh.releaseSpans(ts)
	sh.slab.putNotes(&ts.notes)
	*ts = traceState{self: ts.self}
	sh.slab.give(ts)
}
