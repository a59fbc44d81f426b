package detector

// Per-shard arenas for the variable-length parts of trace entries (their
// tenants, services and span records), so that an entry holds positions,
// not pointers, and the garbage collector never reads the slab. In a
// collector, which collects every second or so, marking the entries'
// pointers was about a third of the CPU tenantguard cost a collector
// beyond a minimal prototype of its work (BENCHMARKS.md, section 7).

// chunk is a run of elements in an arena: where it starts, how many it
// holds and how many fit. The zero chunk is empty and holds no room.
type chunk struct {
	page, at uint32 // the page, and the first element's index in it
	n, c     uint32 // elements held, and room
}

// arena hands out chunks of T. T may hold pointers (tenants are strings):
// the collector then scans the arena's pages, but the entries still hold
// none. Chunks come in size classes, base << k elements; a class's chunks
// are cut from pages of pageChunks chunks and, once freed, reused by the
// next chunk of the class. A chunk larger than maxSmall classes has a page
// of its own, given back to the garbage collector when it is freed, so a
// rare huge trace does not keep its room for good.
type arena[T any] struct {
	pages     [][]T
	freePages []uint32 // indices of pages given back (nil), reused first
	classes   []arenaClass
	base      uint32
}

type arenaClass struct {
	free     []uint64 // freed chunks, page<<32 | at
	page, at uint32   // the page chunks are being cut from, and the next cut
	left     uint32   // chunks still to cut from that page
}

const (
	// pageChunks is how many chunks of a small class one page holds.
	pageChunks = 64
	// maxSmall is the largest small class: chunks up to base << maxSmall
	// elements are recycled within their class for good.
	maxSmall = 3
)

func newArena[T any](base int) arena[T] {
	return arena[T]{base: uint32(max(base, 1)), classes: make([]arenaClass, maxSmall+1)}
}

// view is the chunk's elements, valid until the chunk grows or is freed.
// Its capacity is its length: appending to it copies, never writes into
// the arena.
func (a *arena[T]) view(c chunk) []T {
	if c.n == 0 {
		return nil
	}
	return a.pages[c.page][c.at : c.at+c.n : c.at+c.n]
}

// push appends v to c, moving c to a chunk of the next class when it is
// full.
func (a *arena[T]) push(c *chunk, v T) {
	if c.n == c.c {
		a.grow(c)
	}
	a.pages[c.page][c.at+c.n] = v
	c.n++
}

// truncate empties c, keeping its room (zeroed).
func (a *arena[T]) truncate(c *chunk) {
	clear(a.pages[c.page][c.at : c.at+c.n])
	c.n = 0
}

// preallocate cuts the next chunks of the smallest class from one page of
// n chunks.
func (a *arena[T]) preallocate(n int) {
	cl := &a.classes[0]
	if n <= 0 || cl.left > 0 || len(cl.free) > 0 {
		return
	}
	cl.page, cl.at, cl.left = a.newPage(int(a.base)*n), 0, uint32(n)
}

// reserve makes c a chunk of the smallest class, when it has no room.
func (a *arena[T]) reserve(c *chunk) {
	if c.c == 0 {
		*c = a.alloc(0)
	}
}

func (a *arena[T]) grow(c *chunk) {
	k := 0
	for a.base<<k <= c.c {
		k++
	}
	next := a.alloc(k)
	if c.n > 0 {
		copy(a.pages[next.page][next.at:next.at+c.n], a.pages[c.page][c.at:c.at+c.n])
	}
	next.n = c.n
	a.free(c)
	*c = next
}

// alloc returns an empty chunk of class k.
func (a *arena[T]) alloc(k int) chunk {
	size := a.base << k
	if k > maxSmall {
		return chunk{page: a.newPage(int(size)), c: size}
	}
	cl := &a.classes[k]
	if n := len(cl.free); n > 0 {
		pa := cl.free[n-1]
		cl.free = cl.free[:n-1]
		return chunk{page: uint32(pa >> 32), at: uint32(pa), c: size}
	}
	if cl.left == 0 {
		cl.page, cl.at, cl.left = a.newPage(int(size)*pageChunks), 0, pageChunks
	}
	c := chunk{page: cl.page, at: cl.at, c: size}
	cl.at += size
	cl.left--
	return c
}

func (a *arena[T]) newPage(n int) uint32 {
	p := make([]T, n)
	if k := len(a.freePages); k > 0 {
		i := a.freePages[k-1]
		a.freePages = a.freePages[:k-1]
		a.pages[i] = p
		return i
	}
	a.pages = append(a.pages, p)
	return uint32(len(a.pages) - 1)
}

// free gives c's room back, zeroed, and empties c.
func (a *arena[T]) free(c *chunk) {
	if c.c == 0 {
		return
	}
	k := 0
	for a.base<<k < c.c {
		k++
	}
	if k > maxSmall {
		a.pages[c.page] = nil
		a.freePages = append(a.freePages, c.page)
	} else {
		// Room past n is zero already: the next chunk cut here starts zeroed.
		clear(a.pages[c.page][c.at : c.at+c.n])
		a.classes[k].free = append(a.classes[k].free, uint64(c.page)<<32|uint64(c.at))
	}
	*c = chunk{}
}
