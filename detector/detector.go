package detector

import (
	"hash/maphash"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tenantguard/tenantguard/detector/sqlscope"
)

// Sink receives every new version of a finding, the versions of one
// finding in the order they were raised. It is called with no shard locked
// (the detector collects what it raises while a shard is locked and hands
// it over once the lock is released; see handover.go), from the goroutine
// that raised it: a batch's (in Add or Close), the sweeper's, Flush's
// caller's. It must be safe for concurrent use, should not block (later
// versions raised in the same shard wait for it), and must not feed the
// detector (Batch, Sweep, Flush).
type Sink func(Finding)

// Detector holds the per-trace state and runs the rules. It is safe for
// concurrent use: state is split into shards by trace id, each with its own
// lock, so concurrent requests rarely wait on each other.
type Detector struct {
	cfg       Config
	sink      Sink
	now       func() time.Time
	keys      []string // tenant attributes, then derivation attributes
	derive    []Derivator
	bindings  []binding
	sql       *sqlscope.Scope
	aware     map[string]struct{}
	allowSvc  map[string]struct{}
	shared    map[string]struct{}
	shards    []*shard
	seed      maphash.Seed
	batchPool sync.Pool
	batches   atomic.Uint64 // Batch.seq's source
	stats     counters
	windows   windowLimiter
	waiting   waitingLinks
	services  *serviceNames
}

// waitingLinks holds span links whose producer trace has not arrived yet
// (a consumer's request can overtake the producer's), keyed by producer
// trace, until it arrives or an idle window passes.
type waitingLinks struct {
	mu sync.Mutex
	n  atomic.Int64
	by map[TraceID][]pendingLink
}

// maxWaitingLinks bounds the links kept waiting for their producer.
const maxWaitingLinks = 10_000

// Derivator is a compiled tenant derivation. Callers that read attributes
// (the processor's extractor, scans) apply it and pass the result as a
// RawTenant with KeyIndex.
type Derivator struct {
	Attribute string
	KeyIndex  uint8
	pattern   *derivePattern
	rejected  *atomic.Uint64 // the detector's TenantsRejected
}

// Derive returns the tenant the pattern captures in value, if any. Only
// the first 4 KiB of value are looked at. A match that reaches that cut
// might have read on past it (`…&tenant=tailspin` cut after `tail`), so it
// is discarded, never a tenant, and counted in Stats.TenantsRejected.
func (dv *Derivator) Derive(value string) (string, bool) {
	cut := len(value) > maxDerivationInput
	if cut {
		value = value[:maxDerivationInput]
	}
	lo, hi, end, ok := dv.pattern.find(value)
	if !ok {
		return "", false
	}
	if cut && end == len(value) {
		if dv.rejected != nil {
			dv.rejected.Add(1)
		}
		return "", false
	}
	return value[lo:hi], true
}

type binding struct {
	attribute string
	tenants   map[string]string
	global    map[string]struct{}
}

// New builds a detector. The config is validated; defaults are not filled
// in here (callers such as the processor own their defaults).
func New(cfg Config, sink Sink) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sink == nil {
		sink = func(Finding) {}
	}
	d := &Detector{
		cfg:      cfg,
		sink:     sink,
		now:      cfg.Now,
		keys:     append([]string(nil), cfg.TenantKeys...),
		aware:    toSet(cfg.TenantAwareServices),
		allowSvc: toSet(cfg.AllowServices),
		shared:   toSet(cfg.SharedTenants),
		seed:     maphash.MakeSeed(),
		services: newServiceNames(cfg.MaxServices, cfg.ServiceIdle),
	}
	if d.now == nil {
		d.now = time.Now
	}
	for i, dv := range cfg.Derivations {
		pattern, _ := compileDerivation(i, dv) // validated above
		d.derive = append(d.derive, Derivator{Attribute: dv.Attribute, KeyIndex: uint8(len(d.keys)), pattern: pattern, rejected: &d.stats.rejected})
		d.keys = append(d.keys, dv.Attribute)
	}
	for _, b := range cfg.Bindings {
		d.bindings = append(d.bindings, binding{attribute: b.Attribute, tenants: b.Tenants, global: toSet(b.Global)})
	}
	if len(cfg.ScopedTables) > 0 {
		d.sql, _ = sqlscope.New(cfg.ScopedTables, cfg.tenantColumn()) // validated above
	}
	d.windows.seen = map[windowKey]time.Time{}
	n := cfg.Shards
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	// The shards' limits add up to MaxTraces exactly (rounding each up
	// would hold up to n-1 more, and MaxTraces+n-1 can overflow), and every
	// shard holds at least one trace.
	n = min(n, cfg.MaxTraces)
	for i := range n {
		limit := cfg.MaxTraces / n
		if i < cfg.MaxTraces%n {
			limit++
		}
		d.shards = append(d.shards, newShard(d, limit))
	}
	d.batchPool.New = func() any { return &Batch{d: d} }
	return d, nil
}

// Keys lists the tenant keys in trust order: the configured tenant
// attributes, then the derivations' attributes. RawTenant.KeyIndex indexes it.
func (d *Detector) Keys() []string { return d.keys }

// TenantAttributes are the attributes read as tenants directly.
func (d *Detector) TenantAttributes() []string { return d.keys[:len(d.cfg.TenantKeys)] }

// Derivations are the compiled tenant derivations.
func (d *Detector) Derivations() []Derivator { return d.derive }

// BindingAttributes lists, by Identifier.Binding index, the attributes
// whose values callers pass as Span.Identifiers.
func (d *Detector) BindingAttributes() []string {
	out := make([]string, len(d.bindings))
	for i, b := range d.bindings {
		out[i] = b.attribute
	}
	return out
}

// WantsQueries reports whether callers should pass database statements
// (the unscoped-query rule is on).
func (d *Detector) WantsQueries() bool { return d.sql != nil }

func toSet(xs []string) map[string]struct{} {
	m := make(map[string]struct{}, len(xs))
	for _, x := range xs {
		m[strings.TrimSpace(x)] = struct{}{}
	}
	return m
}

// hash is a trace id's hash: its low bits pick the shard, its top 32 bits
// (hash32) its slot in the shard's index. Trace ids are random already; the
// hash guards against clients that generate sequential ids, and its seed
// against ids chosen to collide.
func (d *Detector) hash(id TraceID) uint64 { return maphash.Bytes(d.seed, id[:]) }

func (d *Detector) hash32(id TraceID) uint32 { return slotHash(d.hash(id)) }

// slotHash is the part of a trace id's hash its shard's index uses.
func slotHash(h uint64) uint32 { return uint32(h >> 32) }

func (d *Detector) shardOf(id TraceID) *shard { return d.shardFor(d.hash(id)) }

func (d *Detector) shardFor(h uint64) *shard { return d.shards[h%uint64(len(d.shards))] }

// Batch groups the spans of one request. Rules run when the batch is closed,
// so that spans which arrive together (a root span with an allow-listed
// service and its children, say) are judged together.
type Batch struct {
	// Annotate, when set, sees every finding version this batch answers
	// for before the sink does, while the caller still holds the request:
	// it may fill the evidence spans' Detail, and later versions of the
	// same finding (built after the request is gone: the close, late spans)
	// carry what it filled. It runs as the sink does: with no shard locked,
	// under the same contract. The batch answers for every version it
	// raises but one kind: the closing version of a trace whose spans had
	// all been judged, which the batch pushed out of memory (MaxTraces).
	// That version holds nothing of the batch's request and goes to the
	// sink alone. Close clears Annotate.
	Annotate func(*Finding)

	d       *Detector
	now     time.Time
	touched []TraceID // each listed once (Add), until judged
	seq     uint64    // unique among batches (see traceState.listed)
	links   []pendingLink
	held    *shard // locked by Add
	// heldFrom and heldLinks are len(touched) and len(links) when held was
	// taken: what Settle may judge.
	heldFrom, heldLinks int
	settled             []TraceID // touched traces Settle judged
	spans               uint64    // counted once per batch: a global atomic per span showed in profiles
	out                 holder    // what the batch raises while it holds a shard
}

// release unlocks the shard Add kept locked.
func (b *Batch) release() {
	if sh := b.held; sh != nil {
		b.held = nil
		sh.unlock()
	}
}

type pendingLink struct {
	trace  TraceID // the consumer's trace
	span   SpanID  // the consumer span
	target Link    // the producer span
	at     time.Time
}

// NewBatch returns a batch from a pool; Close returns it. The batch reads
// the clock once: its spans all arrived at the same moment.
func (d *Detector) NewBatch() *Batch {
	b := d.batchPool.Get().(*Batch)
	b.now = d.now()
	b.seq = d.batches.Add(1)
	b.out.seq = b.seq
	return b
}

// Shards is how many shards the detector's state is split into: one per
// GOMAXPROCS unless configured.
func (b *Batch) Shards() int { return len(b.d.shards) }

// ShardOf is the shard (0 ≤ ShardOf < Shards) that holds a trace's state.
// A caller with many spans can group them by shard and Add each group under
// one hold (see Hold), so that concurrent batches work on different shards
// instead of taking turns on each one.
func (b *Batch) ShardOf(id TraceID) int { return int(b.d.hash(id) % uint64(len(b.d.shards))) }

// TryHold locks shard i for the Adds that follow, if no other batch or
// sweep holds it, and reports whether it did. It first releases the shard
// the batch held.
func (b *Batch) TryHold(i int) bool {
	sh := b.d.shards[i]
	if sh == b.held {
		return true
	}
	b.release()
	if !sh.mu.TryLock() {
		return false
	}
	b.out.annotate = b.Annotate
	sh.holder = &b.out
	b.take(sh)
	return true
}

// take notes that the batch now holds sh.
func (b *Batch) take(sh *shard) {
	b.held, b.heldFrom, b.heldLinks = sh, len(b.touched), len(b.links)
}

// Settle judges the traces the batch touched since it took the shard it
// holds, while it still holds it, so that Close need not lock that shard
// again (with concurrent batches, taking each shard a second time was where
// they waited for each other). If one of those spans carried a link, it
// leaves them to Close, which resolves links before it judges.
func (b *Batch) Settle() {
	sh := b.held
	if sh == nil || len(b.links) > b.heldLinks {
		return
	}
	for _, id := range b.touched[b.heldFrom:] {
		if ts := sh.entry(id, b.d.hash32(id)); ts != nil && ts.kind == entryLive {
			if ts.dirty {
				sh.evaluate(ts, b.now)
			}
			ts.listed = ^b.seq // touched again, it must be listed again
		}
	}
	b.settled = append(b.settled, b.touched[b.heldFrom:]...)
	b.touched = b.touched[:b.heldFrom]
}

// Hold locks shard i for the Adds that follow, waiting for it if needed.
func (b *Batch) Hold(i int) {
	sh := b.d.shards[i]
	if sh == b.held {
		return
	}
	b.release()
	b.out.annotate = b.Annotate
	sh.lock(&b.out)
	b.take(sh)
}

// Add ingests one span. It never blocks on I/O. It keeps the span's shard
// locked until a span of another shard arrives or the batch closes: spans
// of one trace come in runs, and a lock per span showed in profiles. So
// between Add and Close the caller must not call into the detector.
func (b *Batch) Add(s *Span) {
	d := b.d
	b.spans++
	h := d.hash(s.TraceID)
	sh := d.shardFor(h)
	if sh != b.held {
		b.release()
		b.out.annotate = b.Annotate
		sh.lock(&b.out)
		b.take(sh)
	}
	if ts := sh.ingest(s, slotHash(h), b.now); ts.listed != b.seq {
		ts.listed = b.seq
		b.touched = append(b.touched, s.TraceID)
	}
	for _, l := range s.Links {
		if !l.TraceID.IsEmpty() && len(b.links) < maxLinksPerBatch {
			b.links = append(b.links, pendingLink{trace: s.TraceID, span: s.SpanID, target: l, at: b.now})
		}
	}
}

// maxLinksPerBatch bounds link resolution work for one request.
const maxLinksPerBatch = 4096

// Close joins the flows the batch's span links connect, runs the rules on
// every trace the batch touched and returns the batch to the pool. Every
// finding version the batch raised (in Add, in link resolution, in the
// rules) has gone to Annotate and the sink when it returns.
//
// Close reports whether another holder judged some of the batch's spans:
// a concurrent batch added spans to one of its traces and judged them all,
// or pushed the trace out of memory, between this batch's Add and Close.
// What that raised went to the other holder's Annotate, not this batch's,
// so a caller that acknowledges a request once its findings are durable
// must also wait for the requests that were in flight with it. It reports
// only traces that hold a finding, or that are no longer in memory (their
// closing version, if any, is not known any more).
func (b *Batch) Close() (judgedElsewhere bool) {
	b.release()
	d := b.d
	now := b.now
	d.stats.spans.Add(b.spans)
	b.spans = 0
	b.out.annotate = b.Annotate
	for _, pl := range b.links {
		d.resolveLink(pl, true, now, &b.out)
	}
	if d.waiting.n.Load() > 0 {
		// Producers that consumers were waiting for may be in this batch.
		for _, ids := range [2][]TraceID{b.settled, b.touched} {
			for _, id := range ids {
				for _, pl := range d.waiting.take(id) {
					d.resolveLink(pl, false, now, &b.out)
				}
			}
		}
	}
	// The touched traces come grouped by shard when the caller grouped its
	// spans (Hold): one lock per run of a shard's traces.
	for _, id := range b.touched {
		h := d.hash(id)
		sh := d.shardFor(h)
		if sh != b.held {
			b.release()
			sh.lock(&b.out)
			b.take(sh)
		}
		switch ts := sh.entry(id, slotHash(h)); {
		case ts != nil && ts.kind == entryLive && ts.dirty:
			sh.evaluate(ts, now)
		case ts != nil && ts.kind == entryLive:
			// Not dirty: the spans of this batch were judged already. By
			// whom: listed says (evaluate).
			if ts.listed != ^b.seq && ts.listed != b.seq && sh.holdsFinding(ts) {
				judgedElsewhere = true
			}
		case ts == nil || sh.n(ts).prior != nil:
			// Closed since Add, its entry gone or a tomb that kept a finding.
			judgedElsewhere = true
		}
	}
	b.release()
	b.touched, b.settled = b.touched[:0], b.settled[:0]
	b.links = b.links[:0]
	b.Annotate, b.out.annotate = nil, nil
	d.batchPool.Put(b)
	return judgedElsewhere
}

// resolveLink reads the producer span's tenant from its trace (or the
// closed trace's tombstone) and records the link on the consumer span's
// trace. The two shards are locked one after the other, never together;
// what the consumer's trace raises goes to h.
func (d *Detector) resolveLink(pl pendingLink, mayWait bool, now time.Time, h *holder) {
	src := d.shardOf(pl.target.TraceID)
	src.mu.Lock()
	from, ok := src.linkEnd(pl.target)
	known := src.live(pl.target.TraceID) != nil
	src.mu.Unlock()
	if !ok {
		if mayWait && !known && d.waiting.add(pl) {
			return
		}
		d.stats.linksUnresolved.Add(1)
		return
	}
	dst := d.shardOf(pl.trace)
	dst.lock(h)
	// The consumer's trace may not be in this batch (its producer arrived
	// late): judge it now.
	if ts := dst.addLink(pl, from); ts != nil && ts.dirty {
		dst.evaluate(ts, now)
	}
	dst.unlock()
}

// Sweep expires traces idle for longer than the idle window, emitting the
// closing version of their findings. The processor calls it on a ticker.
func (d *Detector) Sweep() {
	now := d.now()
	var h holder
	for _, sh := range d.shards {
		sh.lock(&h)
		sh.expire(now, false)
		sh.unlock()
	}
	d.windows.sweep(now, max(d.cfg.UnscopedWindow, d.cfg.CoverageWindow))
	d.ageServices(now)
	d.stats.linksUnresolved.Add(uint64(d.waiting.expire(now.Add(-d.cfg.IdleWindow))))
}

// Flush closes every trace in memory, as on shutdown, so that no open
// finding's last version is lost.
func (d *Detector) Flush() {
	now := d.now()
	var h holder
	for _, sh := range d.shards {
		sh.lock(&h)
		sh.expire(now, true)
		sh.unlock()
	}
}

// Stats is a snapshot of the detector's counters.
type Stats struct {
	Spans              uint64 // spans observed
	SpansWithoutTenant uint64 // spans with no tenant under any configured key
	SpansOverCap       uint64 // spans not recorded because their trace hit MaxSpansPerTrace
	TenantsRejected    uint64 // tenant values rejected (too long, unusable type, a derivation cut at 4 KiB)
	SpansLate          uint64 // spans that arrived for a trace already closed (within LateWindow)
	LinksUnresolved    uint64 // span links whose producer span was not (or no longer) known
	TracesActive       int64  // traces in memory now
	TracesExpired      uint64 // traces closed after the idle window
	TracesEvicted      uint64 // traces pushed out by MaxTraces before going idle
	Findings           uint64 // finding versions emitted
	FindingsByRule     map[Rule]uint64
	// Suppressed counts per-service findings (unscoped_query,
	// missing_tenant) not emitted because one was emitted in the window.
	Suppressed uint64
}

type counters struct {
	spans, noTenant, overCap, rejected atomic.Uint64
	late, linksUnresolved              atomic.Uint64
	active                             atomic.Int64
	expired, evicted, findings         atomic.Uint64
	suppressed                         atomic.Uint64
	byRule                             [numRules]atomic.Uint64
}

// Stats returns the current counters.
func (d *Detector) Stats() Stats {
	c := &d.stats
	st := Stats{
		Spans:              c.spans.Load(),
		SpansWithoutTenant: c.noTenant.Load(),
		SpansOverCap:       c.overCap.Load(),
		TenantsRejected:    c.rejected.Load(),
		SpansLate:          c.late.Load(),
		LinksUnresolved:    c.linksUnresolved.Load(),
		TracesActive:       c.active.Load(),
		TracesExpired:      c.expired.Load(),
		TracesEvicted:      c.evicted.Load(),
		Findings:           c.findings.Load(),
		Suppressed:         c.suppressed.Load(),
		FindingsByRule:     map[Rule]uint64{},
	}
	for i, r := range ruleByIndex {
		st.FindingsByRule[r] = c.byRule[i].Load()
	}
	return st
}

// windowLimiter lets one per-service finding through per key and window.
type windowLimiter struct {
	mu   sync.Mutex
	seen map[windowKey]time.Time
}

type windowKey struct {
	rule          Rule
	service, name string
}

// maxWindowKeys bounds the limiter; beyond it new keys are suppressed
// until the next sweep, rather than growing without end.
const maxWindowKeys = 10_000

// allow reports whether a finding for k may go out now, and the window it
// belongs to. Windows are aligned on the clock (now truncated to the window
// size), so every collector, a restart and a replay name the same window,
// and so the same finding, alike.
func (w *windowLimiter) allow(k windowKey, now time.Time, window time.Duration) (time.Time, bool) {
	start := now.Truncate(window)
	w.mu.Lock()
	defer w.mu.Unlock()
	if at, ok := w.seen[k]; ok && at.Equal(start) {
		return start, false
	}
	if _, ok := w.seen[k]; !ok && len(w.seen) >= maxWindowKeys {
		return time.Time{}, false
	}
	w.seen[k] = start
	return start, true
}

func (w *windowLimiter) sweep(now time.Time, window time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, at := range w.seen {
		if now.Sub(at) >= window {
			delete(w.seen, k)
		}
	}
}

func (w *waitingLinks) add(pl pendingLink) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n.Load() >= maxWaitingLinks {
		return false
	}
	if w.by == nil {
		w.by = map[TraceID][]pendingLink{}
	}
	w.by[pl.target.TraceID] = append(w.by[pl.target.TraceID], pl)
	w.n.Add(1)
	return true
}

func (w *waitingLinks) take(producer TraceID) []pendingLink {
	w.mu.Lock()
	defer w.mu.Unlock()
	pls, ok := w.by[producer]
	if !ok {
		return nil
	}
	delete(w.by, producer)
	w.n.Add(-int64(len(pls)))
	return pls
}

// expire drops links waiting since before cutoff and says how many.
func (w *waitingLinks) expire(cutoff time.Time) int {
	if w.n.Load() == 0 {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	dropped := 0
	for id, pls := range w.by {
		kept := pls[:0]
		for _, pl := range pls {
			if pl.at.Before(cutoff) {
				dropped++
				continue
			}
			kept = append(kept, pl)
		}
		if len(kept) == 0 {
			delete(w.by, id)
		} else {
			w.by[id] = kept
		}
	}
	w.n.Add(-int64(dropped))
	return dropped
}
