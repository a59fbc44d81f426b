package sqlscope

import (
	"hash/maphash"
	"strings"
	"sync"
)

// statementCache remembers Unscoped's answer per statement text, so that a
// service sending the same statements over and over has each analysed once.
// It is bounded by count and by bytes, and it admits a statement only the
// second time it is seen (a doorkeeper of hashes remembers the first
// sighting), so a flood of distinct statements neither grows it nor flushes
// the statements that recur. It is split into stripes, each with its own
// lock, so concurrent callers rarely wait on each other.
type statementCache struct {
	seed    maphash.Seed
	stripes [cacheStripes]cacheStripe
}

type cacheStripe struct {
	mu    sync.Mutex
	seen  [doorkeeperSlots]uint64 // hashes seen once, by their low bits
	m     map[uint64]cachedAnswer
	bytes int
}

type cachedAnswer struct {
	text   string // the statement (a copy: the caller's text may be a view of a request's buffer)
	tables []string
	joined string
}

// Bounds on the cache: in all, at most maxCachedStatements answers and
// maxCachedBytes of statement text and answers. Longer statements than
// maxCachedStatement are analysed every time.
const (
	cacheStripes        = 8
	doorkeeperSlots     = 256
	maxCachedStatements = 4096
	maxCachedBytes      = 1 << 20
	maxCachedStatement  = 4 << 10
	cachedAnswerBytes   = 96 // what an entry costs beyond its strings: map slot, headers
)

func (c *statementCache) init() {
	c.seed = maphash.MakeSeed()
	for i := range c.stripes {
		c.stripes[i].m = map[uint64]cachedAnswer{}
	}
}

// UnscopedCached is Unscoped, with the answer remembered per statement text
// in a bounded cache (see statementCache), together with the tables joined
// by commas. The returned slice is shared by every caller that gets the
// same answer: it must not be modified. A statement seen before costs a
// hash of its text and nothing is allocated.
func (s *Scope) UnscopedCached(query string) (tables []string, joined string) {
	if len(query) > maxCachedStatement {
		tables = s.Unscoped(query)
		return tables, strings.Join(tables, ",")
	}
	c := &s.cache
	h := maphash.String(c.seed, query)
	st := &c.stripes[h%cacheStripes]
	st.mu.Lock()
	if a, ok := st.m[h]; ok && a.text == query {
		st.mu.Unlock()
		return a.tables, a.joined
	}
	slot := &st.seen[(h/cacheStripes)%doorkeeperSlots]
	admit := *slot == h
	*slot = h
	st.mu.Unlock()

	tables = s.Unscoped(query)
	joined = strings.Join(tables, ",")
	if !admit {
		return tables, joined
	}
	a := cachedAnswer{text: strings.Clone(query), tables: tables, joined: joined}
	size := a.size()
	st.mu.Lock()
	if old, ok := st.m[h]; ok {
		st.bytes -= old.size()
		delete(st.m, h)
	}
	// Make room: any entries will do (the map's order is random), those
	// that recur come back on their next two sightings.
	for k, old := range st.m {
		if len(st.m) < maxCachedStatements/cacheStripes && st.bytes+size <= maxCachedBytes/cacheStripes {
			break
		}
		st.bytes -= old.size()
		delete(st.m, k)
	}
	st.m[h] = a
	st.bytes += size
	st.mu.Unlock()
	return tables, joined
}

func (a cachedAnswer) size() int {
	return len(a.text) + len(a.joined) + 16*len(a.tables) + cachedAnswerBytes
}
