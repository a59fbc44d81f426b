package demoapp_test

// Red-team tests of the demo shop with the tenantguard test helper: tenant
// acme's token against globex's item. The status code is only half of the
// answer; the Guard checks the traces behind it.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/detector/redteam"
	"github.com/tenantguard/tenantguard/internal/demoapp"
)

// startGuardedShop runs the shop with both services' spans judged by g.
func startGuardedShop(t *testing.T, g *redteam.Guard, forgetful bool) *demoapp.Shop {
	t.Helper()
	gwTP, err := demoapp.NewTracerProvider(demoapp.ServiceGateway, sdktrace.WithSpanProcessor(g.SpanProcessor()))
	if err != nil {
		t.Fatal(err)
	}
	invTP, err := demoapp.NewTracerProvider(demoapp.ServiceInventory, sdktrace.WithSpanProcessor(g.SpanProcessor()))
	if err != nil {
		t.Fatal(err)
	}
	shop := demoapp.Start(demoapp.Options{Gateway: gwTP, Inventory: invTP, Forgetful: forgetful})
	t.Cleanup(func() {
		shop.Close()
		_ = gwTP.Shutdown(context.Background())
		_ = invTP.Shutdown(context.Background())
	})
	return shop
}

func TestRedTeamForeignItemIsBlocked(t *testing.T) {
	g := redteam.New(t) // before the shop: its end-of-test check runs after the shop's shutdown
	client := startGuardedShop(t, g, false).Client()
	ctx := context.Background()

	resp, err := client.Inventory(ctx, demoapp.TenantAcme, demoapp.ItemGlobexWidget)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusForbidden {
		t.Fatalf("acme asking for globex's %s: status %d, want 404 or 403", demoapp.ItemGlobexWidget, resp.StatusCode)
	}
	g.AssertBlocked(t, resp.TraceID, demoapp.TenantGlobex)

	// acme's own item is served, and that trace stays within acme.
	own, err := client.Inventory(ctx, demoapp.TenantAcme, demoapp.ItemAcmeAnvil)
	if err != nil {
		t.Fatal(err)
	}
	if own.StatusCode != http.StatusOK {
		t.Fatalf("acme asking for its own %s: status %d, want 200", demoapp.ItemAcmeAnvil, own.StatusCode)
	}
	g.AssertNoLeaks(t)
}

// TestRedTeamForgetfulInventoryIsCaught runs the same attack against the
// inventory service that forgot its tenant filter: the helper must fail the
// test, naming globex and the span that read its rows. The helper reports
// to a recorder here, so that its failure is what this test checks.
func TestRedTeamForgetfulInventoryIsCaught(t *testing.T) {
	rec := &recordingTB{TB: t}
	g := redteam.New(rec)
	client := startGuardedShop(t, g, true).Client()

	resp, err := client.Inventory(context.Background(), demoapp.TenantAcme, demoapp.ItemGlobexWidget)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Item == nil || resp.Item.Tenant != demoapp.TenantGlobex {
		t.Fatalf("forgetful inventory: status %d, item %+v; want globex's row served to acme (the leak)", resp.StatusCode, resp.Item)
	}

	g.AssertBlocked(rec, resp.TraceID, demoapp.TenantGlobex)
	blocked := rec.take()
	for _, want := range []string{
		"request of tenant acme against tenant globex (trace " + resp.TraceID.String() + ") was not blocked",
		"gateway `GET /inventory` answered 200",
		"inventory-svc `SELECT stock`",
		"carries tenant globex under tenant.id",
		"from tenant acme reached tenant globex at inventory-svc `SELECT stock`, from gateway `GET /inventory`",
	} {
		if !strings.Contains(blocked, want) {
			t.Errorf("AssertBlocked on the leaking trace must report %q; it reported:\n%s", want, blocked)
		}
	}

	g.AssertNoLeaks(rec)
	leaks := rec.take()
	if !strings.Contains(leaks, "critical cross_tenant_trace") || !strings.Contains(leaks, "tenant globex at inventory-svc `SELECT stock`") {
		t.Errorf("AssertNoLeaks must fail naming globex and the span that read its rows; it reported:\n%s", leaks)
	}

	fs := g.Findings()
	if len(fs) != 1 {
		t.Fatalf("want one finding, got %d: %+v", len(fs), fs)
	}
	f := fs[0]
	if f.Rule != detector.RuleCrossTenantTrace || f.TraceID != detector.TraceID(resp.TraceID) ||
		strings.Join(f.Tenants, ",") != "acme,globex" {
		t.Errorf("finding = %s %s %q, want cross_tenant_trace %s acme,globex", f.Rule, f.TraceID, f.Tenants, resp.TraceID)
	}
	if len(f.Edges) != 1 || f.Edges[0].From.Name != demoapp.SpanGateway || f.Edges[0].To.Name != demoapp.SpanSelect ||
		f.Edges[0].Hops != 1 {
		t.Errorf("crossing edges = %+v, want gateway `GET /inventory` → (GET /stock) → `SELECT stock`", f.Edges)
	}
}

// recordingTB is a testing.TB whose Errorf records rather than fails; every
// other method is the real test's.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	msgs []string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

// take returns what was recorded since the last take; an empty recording
// fails the real test, since every assertion made through r must fail.
func (r *recordingTB) take() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := strings.Join(r.msgs, "\n")
	if len(r.msgs) == 0 {
		r.TB.Helper()
		r.TB.Errorf("the assertion passed; it must fail on the leaking trace")
	}
	r.msgs = nil
	return out
}

// TestRedTeamTenantURLIsBlocked: acme's token on globex's URL
// (/t/globex/inventory), an IDOR attempt. The filtering inventory-svc
// refuses it with 403 and the gateway passes that on; the forgetful one
// serves globex's row, which the Guard catches at the SELECT.
//
// The Guard judges with its default tenant keys: it reads no derivations
// (not even from redteam.DetectorConfig), so the path tenant on url.path is
// invisible to it here; the end-to-end test covers the derivation through
// the collector.
func TestRedTeamTenantURLIsBlocked(t *testing.T) {
	g := redteam.New(t)
	client := startGuardedShop(t, g, false).Client()
	resp, err := client.TenantInventory(context.Background(), demoapp.TenantAcme, demoapp.TenantGlobex, demoapp.ItemGlobexWidget)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("acme's token on /t/globex/inventory: status %d, want 403", resp.StatusCode)
	}
	g.AssertBlocked(t, resp.TraceID, demoapp.TenantGlobex)
	g.AssertNoLeaks(t)

	rec := &recordingTB{TB: t}
	leaky := redteam.New(rec)
	client = startGuardedShop(t, leaky, true).Client()
	resp, err = client.TenantInventory(context.Background(), demoapp.TenantAcme, demoapp.TenantGlobex, demoapp.ItemGlobexWidget)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Item == nil || resp.Item.Tenant != demoapp.TenantGlobex {
		t.Fatalf("forgetful inventory on /t/globex/: status %d, item %+v; want globex's row (the leak)", resp.StatusCode, resp.Item)
	}
	leaky.AssertBlocked(rec, resp.TraceID, demoapp.TenantGlobex)
	if got := rec.take(); !strings.Contains(got, "gateway `"+demoapp.SpanTenantGateway+"` answered 200") ||
		!strings.Contains(got, "reached tenant globex at inventory-svc `SELECT stock`") {
		t.Errorf("AssertBlocked on the served IDOR must name the 200 and the SELECT of globex's rows; it reported:\n%s", got)
	}
}
