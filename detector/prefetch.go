package detector

import "unsafe"

// At line rate every new trace pushes the oldest out of memory and the
// oldest tomb out of the late window, and both were last touched
// max_traces traces ago: their entries, chunks and index slot are cache
// misses, ~200 ns each on a state of 100 MB on the development machine.
// What the next close reads is known one close ahead (the idle and tomb
// lists are in order), so the shard asks for it while it works on this
// one: 4–5% of the reference load's CPU per span (BENCHMARKS.md, section
// 8). Loads in its place gained nothing (they stall the core as a miss
// does); a prefetch does not.

// prefetchLines prefetches the n bytes at p.
func prefetchLines(p unsafe.Pointer, n uintptr) {
	for off := uintptr(0); off < n; off += 64 {
		prefetch(uintptr(p) + off)
	}
	prefetch(uintptr(p) + n - 1)
}

func prefetchEntry(ts *traceState) {
	prefetchLines(unsafe.Pointer(ts), unsafe.Sizeof(*ts))
}

func prefetchChunk[T any](a *arena[T], c chunk) {
	if c.n == 0 {
		return
	}
	var t T
	prefetchLines(unsafe.Pointer(&a.pages[c.page][c.at]), uintptr(c.n)*unsafe.Sizeof(t))
}

// prefetchNextVictims: the idle list's entry after ts (the next to close)
// was prefetched by the close before, so its chunks' places are known; the
// one after it is prefetched for the next close.
func (sh *shard) prefetchNextVictims(ts *traceState) {
	if ts.next < 0 {
		return
	}
	next := sh.slab.at(ts.next)
	prefetchChunk(&sh.slab.spanRecs, next.spans)
	prefetchChunk(&sh.slab.tenantNames, next.tenants)
	prefetchChunk(&sh.slab.serviceIDs, next.services)
	if next.next >= 0 {
		prefetchEntry(sh.slab.at(next.next))
	}
}

// prefetchNextTombs does the same for the tomb list: the next tomb's index
// slot and tenants, and the entry of the one after.
func (sh *shard) prefetchNextTombs(ts *traceState) {
	if ts.next < 0 {
		return
	}
	next := sh.slab.at(ts.next)
	x := &sh.traces
	prefetch(uintptr(unsafe.Pointer(&x.slots[sh.d.hash32(next.id)>>x.shift])))
	prefetchChunk(&sh.slab.tenantNames, next.tenants)
	if next.next >= 0 {
		prefetchEntry(sh.slab.at(next.next))
	}
}
