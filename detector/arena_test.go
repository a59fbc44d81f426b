package detector

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestArenaAgreesWithSlices runs random pushes and frees on many chunks
// against plain slices: every chunk must read back what was pushed, through
// growth and reuse of freed room, and a freed chunk's room must come back
// zeroed.
func TestArenaAgreesWithSlices(t *testing.T) {
	type rec struct{ a, b uint64 }
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 7))
		a := newArena[rec](3)
		chunks := make([]chunk, 50)
		want := make([][]rec, 50)
		for step := range 20_000 {
			i := r.IntN(len(chunks))
			switch op := r.IntN(10); {
			case op < 7:
				v := rec{uint64(step), seed}
				a.push(&chunks[i], v)
				want[i] = append(want[i], v)
			case op < 8:
				a.reserve(&chunks[i])
				if chunks[i].c == 0 {
					t.Fatal("reserve left no room")
				}
			default:
				a.free(&chunks[i])
				want[i] = nil
				if chunks[i] != (chunk{}) {
					t.Fatal("free left the chunk non-empty")
				}
			}
			if got := a.view(chunks[i]); !slices.Equal(got, want[i]) {
				t.Fatalf("seed %d step %d: chunk %d holds %v, want %v", seed, step, i, got, want[i])
			}
		}
		for i := range chunks {
			if got := a.view(chunks[i]); !slices.Equal(got, want[i]) {
				t.Fatalf("seed %d: chunk %d holds %v, want %v", seed, i, got, want[i])
			}
			c := chunks[i]
			if c.c > 0 {
				room := a.pages[c.page][c.at+c.n : c.at+c.c]
				if slices.ContainsFunc(room, func(x rec) bool { return x != rec{} }) {
					t.Fatalf("seed %d: chunk %d has non-zero room past its elements", seed, i)
				}
			}
		}
	}
}

// TestArenaViewDoesNotWriteIntoTheArena: appending to a view copies it.
func TestArenaViewDoesNotWriteIntoTheArena(t *testing.T) {
	a := newArena[uint32](4)
	var c, d chunk
	a.push(&c, 1)
	a.push(&d, 2)
	v := a.view(c)
	_ = append(v, 99)
	if got := a.view(d); !slices.Equal(got, []uint32{2}) {
		t.Fatalf("appending to a view wrote into the arena: next chunk holds %v", got)
	}
	if cap(v) != len(v) {
		t.Fatalf("view capacity %d, want its length %d", cap(v), len(v))
	}
}

// TestSlabGrowsPastItsPreallocation: entries past the preallocated ones,
// on a page boundary or not, are made as before, distinct and in order;
// the preallocated chunks are cut first, and chunks cut later still agree.
func TestSlabGrowsPastItsPreallocation(t *testing.T) {
	for _, c := range []struct{ max, pre int32 }{{1000, 300}, {1000, 256}, {600, 1000}, {300, 1}} {
		s := newSlab(int(c.max))
		s.preallocate(c.pre)
		seen := map[*traceState]bool{}
		for i := range c.max {
			ts := s.take()
			if ts == nil || ts.self != i || seen[ts] || s.at(i) != ts {
				t.Fatalf("max %d, preallocated %d: entry %d wrong (%v)", c.max, c.pre, i, ts)
			}
			seen[ts] = true
			s.fill(ts)
			s.spanRecs.push(&ts.spans, spanRec{id: SpanID{byte(i), byte(i >> 8)}})
		}
		if s.take() != nil {
			t.Fatalf("max %d: a full slab made one more entry", c.max)
		}
		for i := range c.max {
			ts := s.at(i)
			if got := s.spanRecs.view(ts.spans); len(got) != 1 || got[0].id != (SpanID{byte(i), byte(i >> 8)}) {
				t.Fatalf("max %d, preallocated %d: entry %d holds %v", c.max, c.pre, i, got)
			}
		}
	}
}
