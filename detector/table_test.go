package detector

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// The trace index against a map, through inserts, removals (which shift
// slots back), growth and wrap-around. Hashes are drawn from a few values
// so that probe runs are long and cross the end of the slots.
func TestTraceIndexAgreesWithMap(t *testing.T) {
	for _, hashes := range []int{1, 7, 1 << 30} {
		steps := 20_000
		if hashes < 100 {
			steps = 1_500 // every id on a handful of runs: quadratic
		}
		rng := rand.New(rand.NewPCG(1, uint64(hashes)))
		s := newSlab(1 << 14)
		x := newTraceIndex()
		want := map[TraceID]*traceState{}
		hashOf := func(id TraceID) uint32 {
			// Top bits pick the home: the last slots, so runs wrap.
			return ^uint32(binary.LittleEndian.Uint64(id[:]) % uint64(hashes))
		}
		var live []*traceState
		for step := range steps {
			if len(live) > 0 && (rng.IntN(3) == 0 || s.n == s.max && s.free < 0) {
				k := rng.IntN(len(live))
				ts := live[k]
				live[k] = live[len(live)-1]
				live = live[:len(live)-1]
				x.remove(hashOf(ts.id), ts.self+1)
				delete(want, ts.id)
				s.give(ts)
			} else {
				var id TraceID
				binary.LittleEndian.PutUint64(id[:], uint64(step)+1)
				ts := s.take()
				ts.id, ts.kind = id, entryLive
				x.insert(hashOf(id), ts.self+1)
				want[id] = ts
				live = append(live, ts)
			}
			if step%(steps/10) == 0 || step > steps-20 {
				if x.n != len(want) {
					t.Fatalf("hashes %d step %d: index holds %d, want %d", hashes, step, x.n, len(want))
				}
				for id, ts := range want {
					if got := x.find(&s, id, hashOf(id)); got != ts {
						t.Fatalf("hashes %d step %d: find(%x) = %p, want %p", hashes, step, id, got, ts)
					}
				}
				var gone TraceID
				binary.LittleEndian.PutUint64(gone[:], uint64(step)+1<<40)
				if got := x.find(&s, gone, hashOf(gone)); got != nil {
					t.Fatalf("hashes %d step %d: found an id never inserted", hashes, step)
				}
			}
		}
	}
}
