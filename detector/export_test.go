package detector

import "fmt"

// IDRingForTest exposes the tombstone queue's ring to the external tests.
type IDRingForTest struct{ r ring[TraceID] }

func (x *IDRingForTest) Push(id TraceID) { x.r.push(id) }
func (x *IDRingForTest) Pop() TraceID    { return x.r.pop() }
func (x *IDRingForTest) Len() int        { return x.r.len() }

// BuriedSpansForTest counts the link targets the detector's tombs keep.
func (d *Detector) BuriedSpansForTest() int {
	n := 0
	for _, sh := range d.shards {
		sh.mu.Lock()
		n += sh.buried.len()
		sh.mu.Unlock()
	}
	return n
}

// ShardLockedForTest reports whether any shard is locked now. Only a test
// with no other goroutine in the detector may ask.
func (d *Detector) ShardLockedForTest() bool {
	for _, sh := range d.shards {
		if !sh.mu.TryLock() {
			return true
		}
		sh.mu.Unlock()
	}
	return false
}

// SetEndpointLimitForTest makes each shard's endpoint table start a new
// generation (retiring the names not asked for since the last) every n
// names, instead of every 16,384.
func (d *Detector) SetEndpointLimitForTest(n int) {
	for _, sh := range d.shards {
		sh.mu.Lock()
		sh.eps.limit = n
		sh.mu.Unlock()
	}
}

// CheckEndpointRefsForTest recounts who holds each endpoint id (the span
// records and service lists of the traces, the ring of buried spans) and checks the counts,
// that every id held names an endpoint, and that the ids the table finds by
// name are its own and not retired.
func (d *Detector) CheckEndpointRefsForTest() error {
	for si, sh := range d.shards {
		// Asked when nothing else runs in the detector: a locked shard
		// means a panic left it locked, which waiting would turn into a
		// hang.
		if !sh.mu.TryLock() {
			return fmt.Errorf("shard %d is locked", si)
		}
		err := sh.checkEndpointRefs()
		sh.mu.Unlock()
		if err != nil {
			return fmt.Errorf("shard %d: %w", si, err)
		}
	}
	return nil
}

func (sh *shard) checkEndpointRefs() error {
	t := sh.eps
	held := map[uint32]int32{}
	for i := int32(0); i < sh.slab.n; i++ {
		ts := sh.slab.at(i)
		for _, r := range sh.spansOf(ts) {
			held[r.ep]++
		}
		for _, id := range sh.servicesOf(ts) {
			held[id]++
		}
	}
	for i := range sh.buried.len() {
		held[sh.buried.at(i).ep]++
	}
	for id, n := range held {
		if int(id) >= len(t.byID) || t.byID[id] == nil {
			return fmt.Errorf("endpoint id %d is held %d times but names no endpoint", id, n)
		}
	}
	for id, e := range t.byID {
		if e == nil {
			continue
		}
		if e.id != uint32(id) {
			return fmt.Errorf("endpoint %s/%s at id %d says id %d", e.service, e.name, id, e.id)
		}
		if e.refs != held[uint32(id)] {
			return fmt.Errorf("endpoint %s/%s (id %d) counts %d holders, %d hold it", e.service, e.name, id, e.refs, held[uint32(id)])
		}
		if e.retired && e.refs == 0 {
			return fmt.Errorf("endpoint %s/%s (id %d) is retired and held by nobody, but its id is not free", e.service, e.name, id)
		}
	}
	for _, m := range []map[endpoint]*endpoint{t.cur, t.prev} {
		for _, e := range m {
			if e.retired || int(e.id) >= len(t.byID) || t.byID[e.id] != e {
				return fmt.Errorf("endpoint %s/%s, found by name, is retired or not at its id %d", e.service, e.name, e.id)
			}
		}
	}
	for _, id := range t.free {
		if t.byID[id] != nil {
			return fmt.Errorf("free id %d names endpoint %s/%s", id, t.byID[id].service, t.byID[id].name)
		}
	}
	return nil
}

// TouchedForTest is how many traces the batch lists as touched and not yet
// settled.
func (b *Batch) TouchedForTest() int { return len(b.touched) }
