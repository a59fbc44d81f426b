package detector

// How finding versions leave the detector: collected while a shard is
// locked, handed to Annotate and the sink once it is not, in the order
// they were raised.

import (
	"slices"
	"sync"
)

// holder is whoever holds a shard's lock: a batch, a sweep, a flush. The
// finding versions the shard raises meanwhile are collected in raised
// (copies whose evidence spans are their own), and annotate, when set,
// sees those the holder owes before the sink (owed, one per version).
type holder struct {
	raised   []Finding
	owed     []bool
	annotate func(*Finding)
	seq      uint64 // the batch's seq; 0 for a sweep or a flush
}

// turns orders the hand-overs of one shard: a holder that raised something
// takes a turn while it still holds the lock, and hands over when its turn
// comes, with the lock released. So the versions of a finding (a finding
// lives in one shard) reach Annotate and the sink in the order they were
// raised, and nobody waits for a turn while holding the lock: a shard's
// state is never locked while the caller's code runs.
type turns struct {
	next    uint64 // guarded by the shard's lock
	mu      sync.Mutex
	serving uint64
	cond    *sync.Cond
}

func (t *turns) wait(turn uint64) {
	t.mu.Lock()
	if t.cond == nil {
		t.cond = sync.NewCond(&t.mu)
	}
	for t.serving != turn {
		t.cond.Wait()
	}
	t.mu.Unlock()
}

func (t *turns) done() {
	t.mu.Lock()
	t.serving++
	if t.cond != nil {
		t.cond.Broadcast()
	}
	t.mu.Unlock()
}

// lock locks the shard for h.
func (sh *shard) lock(h *holder) {
	sh.mu.Lock()
	sh.holder = h
}

// unlock releases the shard, then hands what its holder raised there to
// Annotate and the sink in turn. A holder that raised nothing (clean
// traffic) just unlocks.
func (sh *shard) unlock() {
	h := sh.holder
	sh.holder = nil
	if h == nil || len(h.raised) == 0 {
		sh.mu.Unlock()
		return
	}
	turn := sh.turns.next
	sh.turns.next++
	sh.mu.Unlock()
	sh.handOver(turn, h)
}

func (sh *shard) handOver(turn uint64, h *holder) {
	sh.turns.wait(turn)
	defer func() {
		clear(h.raised)
		h.raised, h.owed = h.raised[:0], h.owed[:0]
	}()
	defer sh.turns.done() // even if Annotate or the sink panics
	if h.annotate != nil {
		for i := range h.raised {
			if h.owed[i] {
				h.annotate(&h.raised[i])
			}
		}
		sh.mu.Lock()
		for i := range h.raised {
			if h.owed[i] {
				sh.remember(&h.raised[i])
			}
		}
		sh.mu.Unlock()
	}
	for i := range h.raised {
		sh.d.sink(h.raised[i])
	}
}

// remember gives the last version of f's finding, kept for later versions
// (in the live trace, or in the tomb of a closed one), the evidence details
// Annotate filled in f that it lacks, so versions built after the request
// is gone (the close at the idle window, late spans) carry them. The kept
// version is replaced, never written to: versions already handed out share
// its evidence spans.
func (sh *shard) remember(f *Finding) {
	if !slices.ContainsFunc(f.Spans, func(s EvidenceSpan) bool { return s.Detail != nil }) {
		return
	}
	with := func(prev *Finding) *Finding {
		c := *prev
		c.Spans = slices.Clone(prev.Spans)
		carryDetails(&c, f)
		return &c
	}
	ts := sh.entry(f.TraceID, sh.d.hash32(f.TraceID))
	if ts == nil {
		return
	}
	if ts.kind == entryLive {
		for _, tf := range sh.n(ts).findings {
			if tf != nil && tf.leakID == f.LeakID && tf.last != nil {
				tf.last = with(tf.last)
				return
			}
		}
	}
	if prior := sh.n(ts).prior; prior != nil { // a tomb's, or a reopened trace's
		if prev := prior.findings[f.Rule]; prev != nil && prev.LeakID == f.LeakID {
			prior.findings[f.Rule] = with(prev)
		}
	}
}
