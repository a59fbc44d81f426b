package detector_test

import "testing"

// TestGrowingStateAllocations: a fresh detector fed new traces makes no
// allocation of a trace's own while its state fills from empty: entries,
// their buffers and the index come in blocks (a page of 256 entries, 64
// buffers, a doubling), not per trace. The traces cross 3 services, as in
// the reference load: an entry starts with room for 4 (a trace of more
// grows its list once, the first time its entry is used).
func TestGrowingStateAllocations(t *testing.T) {
	if raceEnabled() {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items)")
	}
	f := newBenchFeed(t)
	for i := range f.spans {
		f.spans[i].Service = []string{"gateway", "orders", "db"}[i%3]
	}
	f.batch() // the interners and pools the first batch fills
	// 60 batches of 100 new 10-span traces, none old enough to expire:
	// 6,000 traces, all still held at the end.
	perBatch := testing.AllocsPerRun(60, f.batch)
	perSpan := perBatch / benchSpansPerBatch
	t.Logf("growing state: %.2f allocs per batch of %d spans (%.4f per span)", perBatch, benchSpansPerBatch, perSpan)
	if perSpan > 0.02 {
		t.Errorf("%.4f allocations per span while the state fills, want about 0", perSpan)
	}
}
