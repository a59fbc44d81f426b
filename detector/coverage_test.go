package detector_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

func coverageHarness(t *testing.T, maxTenants int) *harness {
	return newHarness(t, func(c *detector.Config) {
		c.CoverageMaxTenants = maxTenants
		c.TenantAwareServices = []string{"api"}
		c.ScopedTables = []string{"orders"}
	})
}

func byTenant(rows []detector.TenantHour) map[string]detector.TenantHour {
	m := map[string]detector.TenantHour{}
	for _, r := range rows {
		if _, dup := m[r.Tenant]; dup {
			panic("two rows for " + r.Tenant + " in one hour")
		}
		m[r.Tenant] = r
	}
	return m
}

// One clean trace per tenant, a leak, a refused attempt, a tenant-aware
// span without a tenant and an unscoped query: each lands in its counter,
// under the tenant whose trace it was.
func TestCoverageCountsEachTraceOnceUnderItsTenants(t *testing.T) {
	h := coverageHarness(t, 10)
	clean := span(tid(1), 1, 0, "api", "GET /a", ten("acme"))
	child := span(tid(1), 2, 1, "api", "GET /inner") // aware, no tenant
	db := span(tid(1), 3, 1, "db", "SELECT")
	db.Query = "SELECT * FROM orders"
	h.batch(clean, child, db)
	h.batch(span(tid(2), 1, 0, "api", "GET /b", ten("globex")))
	// acme reaches globex's data and gets it: a leak.
	h.batch(span(tid(3), 1, 0, "api", "GET /x", ten("acme")), span(tid(3), 2, 1, "orders", "read", ten("globex")))
	// globex reaches for initech's and is refused.
	refused := span(tid(4), 2, 1, "orders", "read", ten("initech"))
	refused.HTTPStatus = 403
	h.batch(span(tid(4), 1, 0, "api", "GET /y", ten("globex")), refused)
	h.batch(span(tid(5), 1, 0, "cron", "tick")) // no tenant anywhere

	if got := h.d.TakeCoverage(time.Time{}); len(got) != 0 {
		t.Fatalf("coverage before any trace closed: %+v", got)
	}
	h.d.Flush()
	rows := h.d.TakeCoverage(time.Time{})
	m := byTenant(rows)
	hour := epoch.Truncate(time.Hour)
	want := map[string]detector.CoverageCounts{
		// A trace's spans count for the tenant that leads it (the first seen).
		"acme":    {Traces: 2, Spans: 5, SpansMissingTenant: 1, UnscopedQueries: 1, CrossingsSucceeded: 1},
		"globex":  {Traces: 3, Spans: 3, CrossingsSucceeded: 1, CrossingsRefused: 1},
		"initech": {Traces: 1, Spans: 0, CrossingsRefused: 1},
		"_none":   {Traces: 1, Spans: 1},
	}
	if len(m) != len(want) {
		t.Fatalf("tenants %v, want %v", rows, want)
	}
	for tenant, w := range want {
		r, ok := m[tenant]
		if !ok {
			t.Fatalf("no row for %s in %+v", tenant, rows)
		}
		if r.Counts != w {
			t.Errorf("%s: counts %+v, want %+v", tenant, r.Counts, w)
		}
		if !r.Hour.Equal(hour) {
			t.Errorf("%s: hour %s, want %s", tenant, r.Hour, hour)
		}
	}
	if got := m["acme"].Services["api"]; got != (detector.ServiceTraces{Traces: 2, TracesWithoutTenant: 1}) {
		t.Errorf("acme/api: %+v, want 2 traces, 1 with a span without a tenant", got)
	}
	if got := m["acme"].Services["db"]; got != (detector.ServiceTraces{Traces: 1, TracesWithoutTenant: 1}) {
		t.Errorf("acme/db: %+v, want 1 trace with a span without a tenant", got)
	}
	if got := m["acme"].Services["orders"]; got != (detector.ServiceTraces{Traces: 1}) {
		t.Errorf("acme/orders: %+v, want 1 trace, covered", got)
	}
	if got := h.d.TakeCoverage(time.Time{}); len(got) != 0 {
		t.Errorf("taken twice: %+v", got)
	}
}

// Traces are counted in the hour their first span arrived; a take with a
// cut-off hands over only the hours that began before it.
func TestCoverageTakesCompleteHoursOnly(t *testing.T) {
	h := coverageHarness(t, 10)
	h.batch(span(tid(1), 1, 0, "api", "GET", ten("acme")))
	h.clock.Advance(time.Hour)
	h.batch(span(tid(2), 1, 0, "api", "GET", ten("acme")))
	h.d.Flush()
	now := h.clock.Now()
	first := h.d.TakeCoverage(now.Truncate(time.Hour))
	if len(first) != 1 || !first[0].Hour.Equal(epoch.Truncate(time.Hour)) || first[0].Counts.Traces != 1 {
		t.Fatalf("complete hours: %+v, want acme's first hour with one trace", first)
	}
	rest := h.d.TakeCoverage(time.Time{})
	if len(rest) != 1 || !rest[0].Hour.Equal(now.Truncate(time.Hour)) || rest[0].Counts.Traces != 1 {
		t.Fatalf("current hour: %+v", rest)
	}
}

// A trace open across a take still counts, in the take after its close:
// the row ingest found for its tenant was handed over meanwhile, so the
// close must count into a new one.
func TestCoverageCountsTraceOpenAcrossATake(t *testing.T) {
	h := coverageHarness(t, 10)
	h.batch(span(tid(1), 1, 0, "api", "GET", ten("acme")))
	h.d.Flush() // acme's row exists now
	h.batch(span(tid(2), 1, 0, "api", "GET", ten("acme")), span(tid(2), 2, 1, "db", "SELECT"))
	first := h.d.TakeCoverage(time.Time{})
	if len(first) != 1 || first[0].Counts.Traces != 1 || first[0].Counts.Spans != 1 {
		t.Fatalf("first take: %+v, want acme with the closed trace only", first)
	}
	h.d.Flush()
	rest := h.d.TakeCoverage(time.Time{})
	want := detector.CoverageCounts{Traces: 1, Spans: 2}
	if len(rest) != 1 || rest[0].Tenant != "acme" || rest[0].Counts != want {
		t.Fatalf("second take: %+v, want acme with %+v", rest, want)
	}
	if got := rest[0].Services; len(got) != 2 || got["api"].Traces != 1 || got["db"] != (detector.ServiceTraces{Traces: 1, TracesWithoutTenant: 1}) {
		t.Errorf("second take's services: %+v", got)
	}
}

// A flood of distinct tenants keeps at most max named tenants per hour;
// everything else adds up under _other, and no trace is lost, even with
// several shards each below the cap and concurrent batches.
func TestCoverageFoldsTenantsBeyondTheCapIntoOther(t *testing.T) {
	const max, tenants, perWorker = 5, 400, 100
	h := coverageHarness(t, max)
	var wg sync.WaitGroup
	for w := range tenants / perWorker {
		wg.Go(func() {
			for i := range perWorker {
				n := w*perWorker + i
				h.batch(span(tid(n+1), 1, 0, "api", "GET", ten(fmt.Sprintf("tenant-%03d\xff", n))))
			}
		})
	}
	wg.Wait()
	// Once the cap is reached, a newcomer counts under _other, however busy.
	for i := range 3 {
		h.batch(span(tid(10_000+i), 1, 0, "api", "GET", ten("busy")))
	}
	h.d.Flush()
	rows := h.d.TakeCoverage(time.Time{})
	if len(rows) != max+1 {
		t.Fatalf("%d rows, want %d named tenants and _other", len(rows), max)
	}
	var traces uint64
	for _, r := range rows {
		traces += r.Counts.Traces
	}
	if traces != tenants+3 {
		t.Errorf("traces add up to %d, want %d", traces, tenants+3)
	}
	m := byTenant(rows)
	if _, named := m["busy"]; named {
		t.Errorf("a tenant past the cap kept its name: %+v", rows)
	}
	if got := m[detector.OtherTenants].Counts.Traces; got != tenants+3-max {
		t.Errorf("_other holds %d traces, want %d", got, tenants+3-max)
	}
}

// With coverage off (max 0) nothing is counted.
func TestCoverageOffCountsNothing(t *testing.T) {
	h := coverageHarness(t, 0)
	h.batch(span(tid(1), 1, 0, "api", "GET", ten("acme")))
	h.d.Flush()
	if got := h.d.TakeCoverage(time.Time{}); len(got) != 0 {
		t.Fatalf("coverage off, got %+v", got)
	}
}

// A tenant whose traces pass through more services than a row keeps (a
// flood of invented service names) counts the rest under _other.
func TestCoverageFoldsServicesBeyondTheCapIntoOther(t *testing.T) {
	h := coverageHarness(t, 10)
	const services = 300
	for i := range services {
		h.batch(span(tid(i+1), 1, 0, fmt.Sprintf("svc-%d\xff", i), "GET", ten("acme")))
	}
	h.d.Flush()
	rows := h.d.TakeCoverage(time.Time{})
	if len(rows) != 1 {
		t.Fatalf("rows %+v", rows)
	}
	var traces uint64
	for _, n := range rows[0].Services {
		traces += n.Traces
	}
	other := rows[0].Services[detector.OtherServices]
	if len(rows[0].Services) > 65 || other.Traces == 0 || traces != services {
		t.Errorf("%d services kept, _other %+v, %d traces in all; want at most 64 named, the rest under _other, %d in all",
			len(rows[0].Services), other, traces, services)
	}
}

// A tenant's traces taking different paths, switching back and forth, one
// with a span missing its tenant, more distinct paths than a shard
// remembers, and a take between two traces of one path: every service's
// tally is exactly what the traces that passed through it add up to.
func TestCoverageServiceTalliesAcrossChangingPaths(t *testing.T) {
	h := coverageHarness(t, 10)
	want := map[string]detector.ServiceTraces{}
	n := 0
	trace := func(services ...string) {
		n++
		var spans []detector.Span
		for i, svc := range services {
			spans = append(spans, span(tid(n), i+1, i, svc, "op", ten("acme")))
			w := want[svc]
			w.Traces++
			want[svc] = w
		}
		h.batch(spans...)
		h.d.Flush()
	}
	for range 3 {
		trace("gw", "orders", "db")
	}
	trace("gw", "billing")
	trace("gw", "orders", "db")
	// One with a span of orders without a tenant.
	n++
	h.batch(span(tid(n), 1, 0, "gw", "op", ten("acme")), span(tid(n), 2, 1, "orders", "op"))
	h.d.Flush()
	want["gw"] = detector.ServiceTraces{Traces: want["gw"].Traces + 1}
	want["orders"] = detector.ServiceTraces{Traces: want["orders"].Traces + 1, TracesWithoutTenant: 1}
	for i := range 20 { // more distinct paths than a shard remembers
		trace("gw", fmt.Sprintf("svc-%d", i))
	}
	trace("gw", "orders", "db")
	first := byTenant(h.d.TakeCoverage(time.Time{}))["acme"]
	trace("gw", "orders", "db") // the same path, after the take
	rest := byTenant(h.d.TakeCoverage(time.Time{}))["acme"]

	got := map[string]detector.ServiceTraces{}
	for _, take := range []detector.TenantHour{first, rest} {
		for svc, st := range take.Services {
			g := got[svc]
			g.Traces += st.Traces
			g.TracesWithoutTenant += st.TracesWithoutTenant
			got[svc] = g
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d services, want %d: %+v", len(got), len(want), got)
	}
	for svc, w := range want {
		if got[svc] != w {
			t.Errorf("%s: %+v, want %+v", svc, got[svc], w)
		}
	}
	if rest.Counts.Traces != 1 || rest.Services["db"].Traces != 1 {
		t.Errorf("the take after the last trace: %+v, want that trace alone", rest)
	}
}

// A trace reopened by late spans is still one trace: its second close
// counts its new spans, and a tenant or a crossing the late spans brought,
// but not again the tenant and the trace the first close counted.
func TestCoverageCountsAReopenedTraceOnce(t *testing.T) {
	h := coverageHarness(t, 10)
	idle := func() {
		h.clock.Advance(h.cfg.IdleWindow + time.Second)
		h.d.Sweep()
	}
	// acme's trace closes, then a late span of acme's reopens it.
	h.batch(span(tid(1), 1, 0, "gw", "GET", ten("acme")))
	idle()
	h.batch(span(tid(1), 2, 1, "orders", "read", ten("acme")))
	idle()
	// acme's second trace closes clean, then a late span of globex's data
	// turns it into a crossing.
	h.batch(span(tid(2), 1, 0, "gw", "GET", ten("acme")))
	idle()
	h.batch(span(tid(2), 2, 1, "orders", "read", ten("globex")))
	idle()
	m := byTenant(h.d.TakeCoverage(time.Time{}))
	if got, want := m["acme"].Counts, (detector.CoverageCounts{Traces: 2, Spans: 4, CrossingsSucceeded: 1}); got != want {
		t.Errorf("acme: %+v, want %+v", got, want)
	}
	if got, want := m["globex"].Counts, (detector.CoverageCounts{Traces: 1, CrossingsSucceeded: 1}); got != want {
		t.Errorf("globex: %+v, want %+v", got, want)
	}
	if st := h.d.Stats(); st.SpansLate != 2 {
		t.Errorf("%d late spans, want the 2 that reopened the traces", st.SpansLate)
	}
}
