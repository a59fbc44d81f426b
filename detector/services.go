package detector

import (
	"sync"
	"sync/atomic"
	"time"
)

// Per-service coverage (spans, and spans without a tenant, per
// service.name) is what the processor exports as
// tenantguard_service_spans_total. Service names come from whoever can send
// OTLP, so the table is bounded and forgets:
//
//   - At most MaxServices names have their own counters per detector,
//     however many shards there are; spans of any other service are
//     counted under OtherServices.
//   - A service that sent no span for ServiceIdle (counted from the first
//     Sweep that saw its last span, so up to two sweep intervals more) is
//     forgotten, and its place goes to the next new service: a flood of
//     invented names stops costing anything once it stops, and a real
//     service that appeared during it gets its own counters.
//
// Counts live in each shard, under the shard's lock, so a span pays no
// global lock and no shared atomic write. serviceNames, the detector-wide
// list of admitted names, is consulted only when a shard meets a service it
// holds no counters for; aging runs in Sweep.

// OtherServices is the service name coverage is counted under for services
// beyond MaxServices.
const OtherServices = "_other"

// Defaults of the per-service table.
const (
	DefaultMaxServices = 500
	DefaultServiceIdle = time.Hour
)

// serviceCounts is one shard's coverage of one service: how many spans it
// sent and how many of them named no tenant. An unattributed path is where
// leaks hide.
type serviceCounts struct {
	spans, withoutTenant uint64
	seen                 uint64    // spans at the last sweep
	active               time.Time // the last sweep that saw spans
	other                bool      // the OtherServices counters, never forgotten
	gone                 bool      // forgotten: endpoints holding it look again
}

// serviceNames admits service names to their own counters, up to a limit,
// and keeps the counts of shards that forgot a name still held by others,
// so that a name's total never goes down while it is exported.
type serviceNames struct {
	mu    sync.Mutex
	names map[string]*serviceName
	limit int
	idle  time.Duration
	// freed counts sweeps that forgot names: an endpoint folded into
	// OtherServices at an older generation asks for its own counters again.
	freed atomic.Uint64
	// aging serialises forgetting with Coverage, so a scrape never sees a
	// shard's counts both in the shard and in retired, or in neither.
	aging sync.Mutex
}

type serviceName struct {
	shards  int             // shards holding counters for the name
	retired ServiceCoverage // counts of shards that forgot it meanwhile
}

func newServiceNames(limit int, idle time.Duration) *serviceNames {
	if limit <= 0 {
		limit = DefaultMaxServices
	}
	if idle <= 0 {
		idle = DefaultServiceIdle
	}
	return &serviceNames{names: map[string]*serviceName{}, limit: limit, idle: idle}
}

// admit reports whether name may have its own counters in one more shard.
func (t *serviceNames) admit(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n, ok := t.names[name]; ok {
		n.shards++
		return true
	}
	if len(t.names) >= t.limit {
		return false
	}
	t.names[name] = &serviceName{shards: 1}
	return true
}

// bindService points e at this shard's counters for its service, creating
// them if the service is admitted, else at the OtherServices counters.
// Called with sh.mu held.
func (sh *shard) bindService(e *endpoint) {
	t := sh.d.services
	e.gen = t.freed.Load() // before admit: a name freed meanwhile is seen next span
	if c, ok := sh.svcs[e.service]; ok {
		e.svc = c
		return
	}
	if e.service != OtherServices && t.admit(e.service) {
		c := &serviceCounts{}
		sh.svcs[e.service] = c
		e.svc = c
		return
	}
	c := sh.svcs[OtherServices]
	if c == nil {
		c = &serviceCounts{other: true}
		sh.svcs[OtherServices] = c
	}
	e.svc = c
}

// ageServices forgets services that sent no span for the idle period. The
// detector's Sweep calls it.
func (d *Detector) ageServices(now time.Time) {
	t := d.services
	t.aging.Lock()
	defer t.aging.Unlock()
	type forgotten struct {
		name string
		cov  ServiceCoverage
	}
	var forgot []forgotten
	for _, sh := range d.shards {
		sh.mu.Lock()
		for name, c := range sh.svcs {
			if c.other {
				// Kept: one per shard, and dropping one shard's share
				// would make the exported total go down.
				continue
			}
			if c.spans != c.seen || c.active.IsZero() {
				c.seen, c.active = c.spans, now
				continue
			}
			if now.Sub(c.active) < t.idle {
				continue
			}
			c.gone = true
			delete(sh.svcs, name)
			forgot = append(forgot, forgotten{name, ServiceCoverage{Spans: c.spans, WithoutTenant: c.withoutTenant}})
		}
		sh.mu.Unlock()
	}
	if len(forgot) == 0 {
		return
	}
	t.mu.Lock()
	for _, f := range forgot {
		n := t.names[f.name]
		if n.shards--; n.shards == 0 {
			delete(t.names, f.name)
			continue
		}
		n.retired.Spans += f.cov.Spans
		n.retired.WithoutTenant += f.cov.WithoutTenant
	}
	t.mu.Unlock()
	t.freed.Add(1)
}

// ServiceCoverage is how many spans a service sent, and how many of them
// carried no tenant.
type ServiceCoverage struct {
	Spans         uint64
	WithoutTenant uint64
}

// Coverage returns per-service span counts since each service was last
// admitted (see OtherServices and Config.ServiceIdle). It locks each shard
// briefly: call it at scrape time, not per span.
func (d *Detector) Coverage() map[string]ServiceCoverage {
	t := d.services
	t.aging.Lock()
	defer t.aging.Unlock()
	out := map[string]ServiceCoverage{}
	add := func(name string, c ServiceCoverage) {
		cur := out[name]
		cur.Spans += c.Spans
		cur.WithoutTenant += c.WithoutTenant
		out[name] = cur
	}
	for _, sh := range d.shards {
		sh.mu.Lock()
		for name, c := range sh.svcs {
			add(name, ServiceCoverage{Spans: c.spans, WithoutTenant: c.withoutTenant})
		}
		sh.mu.Unlock()
	}
	t.mu.Lock()
	for name, n := range t.names {
		if n.retired != (ServiceCoverage{}) {
			add(name, n.retired)
		}
	}
	t.mu.Unlock()
	return out
}
