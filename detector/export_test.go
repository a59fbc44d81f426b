package detector

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
