package tenantguardprocessor

import (
	"context"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

// durableAckWait bounds how long a request waits for its findings to reach
// the journal. A healthy journal takes one fsync (a few milliseconds); past
// this bound the store is taken to be failing, the request is acknowledged
// anyway and its findings stay queued for retry: telemetry is never held
// hostage by the disk.
const durableAckWait = 2 * time.Second

// requestState is one ConsumeTraces call while its spans are read: it fills the
// evidence details of the findings it raises (EvidenceReader) and notes
// each of them, so that the call returns only once they are durable.
// Requests are pooled with their Annotate bound once, so a request that
// raises no finding allocates nothing here.
type requestState struct {
	p        *tenantguard
	evidence *EvidenceReader // nil: evidence spans keep no details
	annotate func(*detector.Finding)
	raised   bool        // a finding was raised: only then is there anything to wait for
	timer    *time.Timer // bounds the wait (durableAckWait): made at the first, then reused

	// Guarded by p.acks.mu.
	outstanding int
	leaks       []string // leak ids it waits for, to withdraw on timeout
	done        chan struct{}

	landed chan struct{} // signalled by flights.land (awaitEarlier)
}

func (p *tenantguard) newRequest() any {
	r := &requestState{p: p, done: make(chan struct{}, 1), landed: make(chan struct{}, 1),
		evidence: newEvidenceReader(p.redactor)}
	r.annotate = r.see
	return r
}

// see is the batch's Annotate: the detector calls it with no shard locked,
// right before it hands the same finding version to onFinding, so the
// request waits for a version before the version can be made durable.
func (r *requestState) see(f *detector.Finding) {
	if r.evidence != nil {
		r.evidence.Fill(f)
	}
	r.raised = true
	r.p.acks.expect(r, f.LeakID, f.Version)
}

func (r *requestState) reset() {
	if r.evidence != nil {
		r.evidence.Reset()
	}
	r.leaks = r.leaks[:0]
	r.raised = false
	r.outstanding = 0
	for _, c := range [...]chan struct{}{r.done, r.landed} {
		select { // a signal sent just before a timed-out wait withdrew
		case <-c:
		default:
		}
	}
}

// durableAcks matches the finding versions requests wait for with the
// versions the evidence worker has made durable. The worker takes the whole
// queue at once and writes it with one write and one fsync, so every request
// waiting meanwhile shares that fsync: a group commit. A request wakes the
// worker only once it has raised everything it will (see onFinding), so
// its own versions never take more than one fsync. A durable version
// acknowledges every lower version of the same finding (each version holds
// everything the ones before it said), which is why coalescing in the queue
// never leaves a request waiting for a version that was superseded.
type durableAcks struct {
	mu sync.Mutex
	by map[string][]ackWait // leak id → waiting requests
}

type ackWait struct {
	r       *requestState
	version uint64
}

func (a *durableAcks) expect(r *requestState, leak string, version uint64) {
	a.mu.Lock()
	if a.by == nil {
		a.by = map[string][]ackWait{}
	}
	a.by[leak] = append(a.by[leak], ackWait{r, version})
	r.leaks = append(r.leaks, leak)
	r.outstanding++
	a.mu.Unlock()
}

// awaited reports whether a request waits for this very version: the
// request that raised it, still reading its spans.
func (a *durableAcks) awaited(leak string, version uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.by[leak] {
		if w.version == version {
			return true
		}
	}
	return false
}

// durable releases the requests waiting for versions in batch (now on disk)
// or older ones.
func (a *durableAcks) durable(batch []store.Evidence) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.by) == 0 {
		return
	}
	for i := range batch {
		a.settle(batch[i].LeakID, batch[i].Version)
	}
}

// lost releases the requests waiting for a version that will never be
// stored (the queue had no room): waiting longer would not help.
func (a *durableAcks) lost(leak string, version uint64) {
	a.mu.Lock()
	a.settle(leak, version)
	a.mu.Unlock()
}

func (a *durableAcks) settle(leak string, version uint64) {
	ws, ok := a.by[leak]
	if !ok {
		return
	}
	kept := ws[:0]
	for _, w := range ws {
		if w.version > version {
			kept = append(kept, w)
			continue
		}
		if w.r.outstanding--; w.r.outstanding == 0 {
			select { // a signal may be pending: the request raised more since
			case w.r.done <- struct{}{}:
			default:
			}
		}
	}
	if len(kept) == 0 {
		delete(a.by, leak)
	} else {
		a.by[leak] = kept
	}
}

// withdraw forgets what r still waits for.
func (a *durableAcks) withdraw(r *requestState) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, leak := range r.leaks {
		ws := a.by[leak]
		kept := ws[:0]
		for _, w := range ws {
			if w.r != r {
				kept = append(kept, w)
			}
		}
		if len(kept) == 0 {
			delete(a.by, leak)
		} else {
			a.by[leak] = kept
		}
	}
	r.outstanding = 0
}

// awaitDurable returns once every finding version r raised is in the
// journal, or after durableAckWait, or when ctx ends. It does not wait while
// the store is failing, nor after a wait ran out, until a write succeeds
// again (the findings stay queued and are retried); it reports whether
// everything r raised was made durable in time.
func (p *tenantguard) awaitDurable(ctx context.Context, r *requestState) bool {
	if !r.raised {
		return true
	}
	p.acks.mu.Lock()
	pending := r.outstanding
	p.acks.mu.Unlock()
	if pending == 0 {
		return true
	}
	if !p.storeHealthy.Load() {
		p.acks.withdraw(r)
		return false
	}
	if r.timer == nil {
		r.timer = time.NewTimer(durableAckWait)
	} else {
		r.timer.Reset(durableAckWait) // stopped: no stale tick is left in it
	}
	defer r.timer.Stop()
	for {
		select {
		case <-r.done:
			// The request may have raised more after an earlier signal.
			p.acks.mu.Lock()
			pending = r.outstanding
			p.acks.mu.Unlock()
			if pending == 0 {
				return true
			}
		case <-r.timer.C:
			p.acks.withdraw(r)
			// A hung disk: until a write succeeds, requests stop waiting.
			p.storeHealthy.Store(false)
			p.logger.Warn("the journal did not confirm this request's findings in time; the request is acknowledged "+
				"and its findings stay queued for the journal",
				zap.Int("findings", pending), zap.Duration("waited", durableAckWait))
			return false
		case <-ctx.Done():
			p.acks.withdraw(r)
			return false
		}
	}
}

// feed reads one request into the detector. The batch is closed before
// feed returns, even on a panic: it holds a shard's lock between spans.
// What the batch raises goes to r.see and then onFinding, with no shard
// locked, before Close returns; then the evidence worker is woken to write
// it all at once (see onFinding). It reports whether another request judged
// some of its spans (detector.Batch.Close), and the first ticket of the
// requests that boarded after it closed.
func (p *tenantguard) feed(r *requestState, td ptrace.Traces) (judgedElsewhere bool, boarded uint64) {
	if r.evidence != nil {
		r.evidence.Read(td)
	}
	// Deferred calls run last first: Close, then land, then writeRaised.
	defer p.writeRaised(r)
	defer p.reading.land(p.reading.board())
	b := p.det.NewBatch()
	defer func() {
		judgedElsewhere = b.Close()
		boarded = p.flights.boarded()
	}()
	b.Annotate = r.annotate
	if n := p.extract.Feed(b, td); n > 0 {
		p.invalidSpans.Add(uint64(n))
	}
	return
}

// flights numbers requests while they are at some stage, so that one can
// wait for those that boarded before a given moment to land. The processor
// keeps two: flights, from a request's arrival until it may be
// acknowledged, and reading, until it has raised everything (see linger).
//
// flights is for the request whose spans another request judged between its
// Add and its Close (a concurrent request adding spans of the same trace,
// or pushing the trace out of memory): what that judgement raised went to
// the other request's wait, not to this one's, and acknowledging this
// request before it is durable would leave a crash able to lose the
// evidence of spans no sender will send again. The other request was in
// flight when this one closed its batch, so waiting for every request in
// flight then to land covers it, whoever it was, at the cost of waiting
// for some that raised nothing. Requests land after their own wait and
// before waiting for others, so no two wait for each other.
type flights struct {
	mu      sync.Mutex
	next    uint64   // the next request's ticket
	open    []uint64 // the tickets in flight, ascending
	waiters []flightWait
}

type flightWait struct {
	before uint64 // waits until no ticket below it is in flight
	landed chan struct{}
}

func (f *flights) board() uint64 {
	f.mu.Lock()
	t := f.next
	f.next++
	f.open = append(f.open, t)
	f.mu.Unlock()
	return t
}

// boarded is the ticket the next request will get.
func (f *flights) boarded() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.next
}

// lowest is the lowest ticket in flight (next if none is). Guarded by mu.
func (f *flights) lowest() uint64 {
	if len(f.open) == 0 {
		return f.next
	}
	return f.open[0]
}

// land takes t out of flight; landing it again does nothing.
func (f *flights) land(t uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := slices.BinarySearch(f.open, t)
	if !ok {
		return
	}
	f.open = slices.Delete(f.open, i, i+1)
	if len(f.waiters) == 0 {
		return
	}
	low := f.lowest()
	f.waiters = slices.DeleteFunc(f.waiters, func(w flightWait) bool {
		if w.before > low {
			return false
		}
		select {
		case w.landed <- struct{}{}:
		default:
		}
		return true
	})
}

// wait registers landed to be signalled once no ticket below before is in
// flight, and reports false if none is already.
func (f *flights) wait(before uint64, landed chan struct{}) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lowest() >= before {
		return false
	}
	f.waiters = append(f.waiters, flightWait{before, landed})
	return true
}

func (f *flights) withdraw(landed chan struct{}) {
	f.mu.Lock()
	f.waiters = slices.DeleteFunc(f.waiters, func(w flightWait) bool { return w.landed == landed })
	f.mu.Unlock()
}

// awaitEarlier returns once every request that boarded before the ticket
// before has landed (made its findings durable, or given up waiting), or
// after durableAckWait, or when ctx ends.
func (p *tenantguard) awaitEarlier(ctx context.Context, r *requestState, before uint64) {
	if !p.flights.wait(before, r.landed) {
		return
	}
	if r.timer == nil {
		r.timer = time.NewTimer(durableAckWait)
	} else {
		r.timer.Reset(durableAckWait)
	}
	defer r.timer.Stop()
	select {
	case <-r.landed:
	case <-r.timer.C:
		p.flights.withdraw(r.landed)
	case <-ctx.Done():
		p.flights.withdraw(r.landed)
	}
}

// lingerMax bounds how long the evidence worker, woken, waits for the
// requests being read: about three times what a 1,000-span request takes to
// read, and a few fsyncs.
const lingerMax = time.Millisecond

// linger waits, at most lingerMax, until the requests being read when the
// evidence worker woke have raised everything, so that their findings share
// the write and fsync it is about to make: a group commit that also takes
// the requests not yet waiting. With concurrent requests raising findings,
// the fsync is the bound; with 4 senders per core on the fresh-state load,
// each fsync took 2.3 requests' findings before and ~6 after, and throughput
// rose 8-15% (BENCHMARKS.md, section 8). A sender alone never lingers: no
// other request is being read when its own wakes the worker.
func (p *tenantguard) linger() {
	select { // a signal left by a wait that ran out
	case <-p.lingered:
	default:
	}
	if !p.reading.wait(p.reading.boarded(), p.lingered) {
		return
	}
	t := time.NewTimer(p.lingerMax)
	defer t.Stop()
	select {
	case <-p.lingered:
	case <-t.C:
		p.reading.withdraw(p.lingered)
	}
}

// writeRaised wakes the notifiers' worker to announce what r raised and the
// evidence worker to write it. The evidence worker is woken last, so that it
// is the goroutine this core runs next, once the request parks to wait for it.
func (p *tenantguard) writeRaised(r *requestState) {
	if r.raised {
		p.alertQueue.signal()
		p.queue.signal()
	}
}
