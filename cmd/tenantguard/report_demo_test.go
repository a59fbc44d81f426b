package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/internal/demoapp"
)

// TestDemoShopReportShowsIsolationHeldButForTheInjectedLeak is the README's
// "Proving isolation" demo: the demo shop serves 100 rounds of requests (a few seconds) through the
// built collector (three tenants reading their own stock, acme trying
// globex's URL and being refused), then one leak is injected (a forgetful
// inventory-svc serves globex's row to acme). The report must show every
// tenant's traffic checked, every refused attempt, and no succeeded
// crossing but the injected one.
func TestDemoShopReportShowsIsolationHeldButForTheInjectedLeak(t *testing.T) {
	// The gateway's tenant-scoped route names the tenant whose stock is
	// asked for in the path: derived, it shows acme reaching for globex's.
	c := startCollector(t, withProcessorYAML("tenant_derivations: [{attribute: url.path, regex: '^/t/(?P<tenant>[^/]+)/'}]"))
	filtering := startDemo(t, c, false)
	forgetful := startDemo(t, c, true)
	ctx := context.Background()
	const initech = "initech" // a third tenant, with no stock of its own

	get := func(d *demo, tenant, owner, item string, want int) string {
		t.Helper()
		resp, err := d.client.TenantInventory(ctx, tenant, owner, item)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != want {
			t.Fatalf("token %s on /t/%s/inventory?item=%s: status %d, want %d", tenant, owner, item, resp.StatusCode, want)
		}
		return resp.TraceID.String()
	}
	const rounds = 100
	for range rounds {
		get(filtering, demoapp.TenantAcme, demoapp.TenantAcme, demoapp.ItemAcmeAnvil, http.StatusOK)
		get(filtering, demoapp.TenantGlobex, demoapp.TenantGlobex, demoapp.ItemGlobexGear, http.StatusOK)
		get(filtering, initech, initech, demoapp.ItemAcmeRocket, http.StatusNotFound)
		get(filtering, demoapp.TenantAcme, demoapp.TenantGlobex, demoapp.ItemGlobexWidget, http.StatusForbidden) // refused
		// Each round's spans go out together, so every trace is judged whole.
		filtering.flush(t, false)
	}
	leak := get(forgetful, demoapp.TenantAcme, demoapp.TenantGlobex, demoapp.ItemGlobexWidget, http.StatusOK)
	forgetful.flush(t, false)
	c.stop(t) // closes every trace and writes the coverage

	var r isolationReport
	if err := json.Unmarshal([]byte(c.report(t, "--format", "json")), &r); err != nil {
		t.Fatal(err)
	}
	var id detector.TraceID
	if _, err := hex.Decode(id[:], []byte(leak)); err != nil {
		t.Fatal(err)
	}
	leakID := detector.LeakID(id, detector.RuleCrossTenantTrace)
	rows := map[string]tenantReport{}
	for _, tr := range r.Tenants {
		rows[tr.Tenant] = tr
	}
	for tenant, minTraces := range map[string]int{demoapp.TenantAcme: 2*rounds + 1, demoapp.TenantGlobex: 2*rounds + 1, initech: rounds} {
		tr, ok := rows[tenant]
		if !ok {
			t.Fatalf("no row for %s in %+v", tenant, r.Tenants)
		}
		if tr.TracesChecked < uint64(minTraces) {
			t.Errorf("%s: %d traces checked, want at least %d", tenant, tr.TracesChecked, minTraces)
		}
		wantLeaks := []string{leakID}
		if tenant == initech {
			wantLeaks = nil
		}
		if !slices.Equal(tr.Leaks, wantLeaks) || tr.CrossingsSucceeded != len(wantLeaks) || tr.IsolationHeld != (wantLeaks == nil) {
			t.Errorf("%s: crossings %d %v, isolation held %v; want only the injected leak %v", tenant, tr.CrossingsSucceeded, tr.Leaks, tr.IsolationHeld, wantLeaks)
		}
	}
	if r.Totals.CrossingsSucceeded != 1 {
		t.Errorf("%d crossings succeeded, want the injected one", r.Totals.CrossingsSucceeded)
	}
	if r.Totals.BlockedAttempts != rounds || rows[demoapp.TenantAcme].BlockedAttempts != rounds {
		t.Errorf("blocked attempts %d (acme %d), want one per round: %d", r.Totals.BlockedAttempts, rows[demoapp.TenantAcme].BlockedAttempts, rounds)
	}
	t.Logf("%d rounds; report:\n%s", rounds, c.report(t))
}
