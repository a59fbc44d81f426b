package detector

import (
	"cmp"
	"slices"
	"time"
)

// Coverage is what lets a quiet period be told apart from an unwatched one:
// for each tenant and hour, how much of its traffic the detector checked,
// how much of it carried no tenant, and what it found. While spans arrive,
// a few counters on the trace are bumped where ingest already looks (a span
// without a tenant, a tenant-aware service, an unscoped statement); when
// the trace closes (idle, evicted or flushed) it is counted once, in the
// hour its first span arrived, into a per-shard table under the lock the
// shard is already held with.
//
// Memory is bounded: at most Config.CoverageMaxTenants tenants per hour are
// counted under their own name (per shard, and again when shards are
// merged); the rest are added up under OtherTenants.

// OtherTenants is the tenant that coverage of tenants beyond the cap is
// counted under.
const OtherTenants = "_other"

// NoTenant is the tenant that traces carrying no tenant at all are counted
// under.
const NoTenant = "_none"

// maxServicesPerTenant caps the services counted per tenant and hour; the
// rest are counted under OtherServices.
const maxServicesPerTenant = 64

// CoverageCounts are the counters of one tenant in one hour.
type CoverageCounts struct {
	Traces uint64 // traces that touched the tenant
	Spans  uint64 // spans of the traces the tenant leads (its tenant came first)
	// SpansMissingTenant are spans of tenant-aware services that carried no
	// tenant, in traces this tenant leads.
	SpansMissingTenant uint64
	// CrossingsSucceeded are traces with a cross_tenant_trace finding that
	// stood when the trace closed (not allowed, not reclassified as refused).
	CrossingsSucceeded uint64
	// CrossingsRefused are traces with a blocked_attempt finding: another
	// tenant was reached for and the request was refused.
	CrossingsRefused uint64
	// UnscopedQueries are database spans whose statement had no tenant
	// predicate on a scoped table.
	UnscopedQueries uint64
}

func (c *CoverageCounts) add(o *CoverageCounts) {
	c.Traces += o.Traces
	c.Spans += o.Spans
	c.SpansMissingTenant += o.SpansMissingTenant
	c.CrossingsSucceeded += o.CrossingsSucceeded
	c.CrossingsRefused += o.CrossingsRefused
	c.UnscopedQueries += o.UnscopedQueries
}

// TenantHour is the coverage of one tenant in one hour. Services counts,
// per service, the traces the tenant led through it and how many of them
// had a span of that service without a tenant.
type TenantHour struct {
	Hour     time.Time // UTC, on the hour
	Tenant   string
	Counts   CoverageCounts
	Services map[string]ServiceTraces
}

// ServiceTraces is one service's share of a tenant's traces.
type ServiceTraces struct {
	Traces              uint64
	TracesWithoutTenant uint64 // traces where the service sent a span without a tenant
}

// traceCoverage is what ingest counts on a trace for coverage.
type traceCoverage struct {
	missing  uint32 // spans of tenant-aware services without a tenant
	unscoped uint32 // unscoped statements
	// gaps has bit i set when traceState.services[i] sent a span without
	// a tenant (the list holds at most 64 services).
	gaps uint64
}

// withoutTenant records a span of the service at index i of
// traceState.services (-1: not in the list) without a tenant.
func (c *traceCoverage) withoutTenant(i int) {
	if i >= 0 && i < 64 {
		c.gaps |= 1 << i
	}
}

// coverageTable is a shard's coverage since it was last taken: per hour,
// per tenant. Rows live in a map by tenant (a string-keyed map is the
// cheapest lookup there is); a row's services are a short slice, searched
// linearly, since a tenant's traffic touches few services and their names
// are interned (equal names are usually the same pointer).
type coverageTable struct {
	hours map[int64]*coverageHour
	// last is hours[lastHour] (nil: none): traces close in arrival order
	// more or less, so nearly all of them count into the same hour.
	last     *coverageHour
	lastHour int64
}

type coverageHour struct {
	rows  map[string]*coverageRow
	named int // tenants counted under their own name
}

// coverageRow is one tenant's counts in one hour: 232 bytes, in Go's 240-byte
// size class, so a row may start mid-line. Closing a trace of up to four
// services touches four or five cache lines of it (the fields read first,
// then the counts, then the services in the order they were seen). A row
// padded to 256 bytes, 256-byte aligned, did not measure better.
type coverageRow struct {
	services []serviceTally // inline[:n], then grown onto the heap
	counts   CoverageCounts
	// inline holds the first five services: no memory access elsewhere
	// for the common tenant that uses a handful.
	inline [5]serviceTally
}

type serviceTally struct {
	name string
	n    ServiceTraces
}

// countTrace adds a closing trace to the shard's coverage. It runs once
// per trace, with the shard locked, and reads only the trace's header, its
// tenants and its services.
func (sh *shard) countTrace(ts *traceState) {
	max := sh.d.cfg.CoverageMaxTenants
	if max <= 0 {
		return
	}
	h := time.Unix(0, ts.arrived).Unix() / 3600
	hr := sh.cov.hour(h)
	lead := NoTenant
	if ts.tenants.n > 0 {
		lead = sh.tenantsOf(ts)[0]
	}
	row := hr.row(lead, max)
	row.counts.Spans += uint64(ts.spanCount)
	row.counts.SpansMissingTenant += uint64(ts.cov.missing)
	row.counts.UnscopedQueries += uint64(ts.cov.unscoped)
	for i, id := range sh.servicesOf(ts) {
		svc := sh.eps.at(id).service
		var gap uint64
		if i < 64 {
			gap = ts.cov.gaps >> i & 1
		}
		// A tenant's traces mostly list the same services in the same
		// order: try the tally at the same position first.
		if i < len(row.services) && row.services[i].name == svc {
			row.services[i].n.Traces++
			row.services[i].n.TracesWithoutTenant += gap
			continue
		}
		row.addService(svc, ServiceTraces{Traces: 1, TracesWithoutTenant: gap})
	}
	notes := sh.n(ts)
	cross, blocked := notes.findings[idxCross], notes.findings[idxBlocked]
	succeeded := cross != nil && cross.emitted && cross.status == StatusClosed
	refused := blocked != nil && blocked.emitted
	if int(ts.tenants.n) == 0 {
		row.counts.Traces++
		return
	}
	// A reopened trace's earlier close counted the tenants its tomb kept,
	// and the findings it had then (they carry on, as the same leak, in
	// this one): the trace counts again only for its spans since, and for
	// tenants and findings that close did not see.
	counted := int(ts.tombTenants)
	var hadCross, hadRefused bool
	if prior := notes.prior; prior != nil {
		_, hadCross = prior.findings[RuleCrossTenantTrace]
		_, hadRefused = prior.findings[RuleBlockedAttempt]
	}
	for i, t := range sh.tenantsOf(ts) {
		if i > 0 {
			row = hr.row(t, max)
		}
		seen := i < counted
		if !seen {
			row.counts.Traces++
		}
		if succeeded && !(seen && hadCross) {
			row.counts.CrossingsSucceeded++
		}
		if refused && !(seen && hadRefused) {
			row.counts.CrossingsRefused++
		}
	}
}

func (c *coverageTable) hour(h int64) *coverageHour {
	if c.last != nil && c.lastHour == h {
		return c.last
	}
	hr, ok := c.hours[h]
	if !ok {
		if c.hours == nil {
			c.hours = map[int64]*coverageHour{}
		}
		hr = &coverageHour{rows: map[string]*coverageRow{}}
		c.hours[h] = hr
	}
	c.last, c.lastHour = hr, h
	return hr
}

// row returns the tenant's row, or OtherTenants' once the hour has max
// tenants of its own.
func (hr *coverageHour) row(tenant string, max int) *coverageRow {
	if r, ok := hr.rows[tenant]; ok {
		return r
	}
	if tenant != OtherTenants {
		if hr.named >= max {
			return hr.row(OtherTenants, max)
		}
		hr.named++
	}
	r := &coverageRow{}
	r.services = r.inline[:0]
	hr.rows[tenant] = r
	return r
}

func (r *coverageRow) addService(name string, n ServiceTraces) {
	i := -1
	for k := range r.services {
		if r.services[k].name == name {
			i = k
			break
		}
	}
	if i < 0 {
		if len(r.services) >= maxServicesPerTenant && name != OtherServices {
			r.addService(OtherServices, n) // _other itself is the one past the cap
			return
		}
		r.services = append(r.services, serviceTally{name: name})
		i = len(r.services) - 1
	}
	r.services[i].n.Traces += n.Traces
	r.services[i].n.TracesWithoutTenant += n.TracesWithoutTenant
}

func addService(m map[string]ServiceTraces, svc string, n ServiceTraces) {
	if _, ok := m[svc]; !ok && len(m) >= maxServicesPerTenant {
		svc = OtherServices
	}
	cur := m[svc]
	cur.Traces += n.Traces
	cur.TracesWithoutTenant += n.TracesWithoutTenant
	m[svc] = cur
}

// TakeCoverage hands over the coverage counted for hours that began before
// `before` (every hour when before is zero) and forgets it; records are
// additive, so counts for an hour already taken (a trace that arrived then
// and closed later) simply come in a later take. Shards are merged and the
// tenant cap applied again: per hour at most CoverageMaxTenants tenants,
// those with the most traces, keep their name. The result is sorted by hour,
// then tenant. Call it from a ticker, not per span: it locks each shard.
func (d *Detector) TakeCoverage(before time.Time) []TenantHour {
	all := before.IsZero()
	cut := before.Unix()
	type key struct {
		hour   int64
		tenant string
	}
	merged := map[key]*TenantHour{}
	for _, sh := range d.shards {
		sh.mu.Lock()
		for h, hr := range sh.cov.hours {
			if !all && h*3600 >= cut {
				continue
			}
			delete(sh.cov.hours, h)
			sh.cov.last = nil
			for tenant, r := range hr.rows {
				k := key{h, tenant}
				m, ok := merged[k]
				if !ok {
					m = &TenantHour{Hour: time.Unix(h*3600, 0).UTC(), Tenant: tenant, Services: map[string]ServiceTraces{}}
					merged[k] = m
				}
				m.Counts.add(&r.counts)
				for _, s := range r.services {
					addService(m.Services, s.name, s.n)
				}
			}
		}
		sh.mu.Unlock()
	}
	out := make([]TenantHour, 0, len(merged))
	for _, r := range merged {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b TenantHour) int {
		return cmp.Or(a.Hour.Compare(b.Hour), cmp.Compare(b.Counts.Traces, a.Counts.Traces), cmp.Compare(a.Tenant, b.Tenant))
	})
	// Apply the cap across shards: within each hour, rows are by traces.
	kept := out[:0]
	var other *TenantHour
	named := 0
	for i := range out {
		r := out[i]
		if i == 0 || !r.Hour.Equal(out[i-1].Hour) {
			named, other = 0, nil
		}
		if r.Tenant != OtherTenants && named < d.cfg.CoverageMaxTenants {
			named++
			kept = append(kept, r)
			continue
		}
		if other == nil {
			kept = append(kept, TenantHour{Hour: r.Hour, Tenant: OtherTenants, Services: map[string]ServiceTraces{}})
			other = &kept[len(kept)-1]
		}
		mergeTenantHour(other, &r)
	}
	slices.SortFunc(kept, func(a, b TenantHour) int {
		return cmp.Or(a.Hour.Compare(b.Hour), cmp.Compare(a.Tenant, b.Tenant))
	})
	return kept
}

func mergeTenantHour(dst, src *TenantHour) {
	dst.Counts.add(&src.Counts)
	for svc, n := range src.Services {
		addService(dst.Services, svc, n)
	}
}
