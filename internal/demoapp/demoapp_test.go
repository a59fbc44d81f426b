package demoapp_test

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenantguard/tenantguard/internal/demoapp"
)

type rig struct {
	shop   *demoapp.Shop
	gwExp  *tracetest.InMemoryExporter
	invExp *tracetest.InMemoryExporter
	gwTP   *sdktrace.TracerProvider
	invTP  *sdktrace.TracerProvider
}

func newRig(t *testing.T, forgetful bool) *rig {
	t.Helper()
	r := &rig{gwExp: tracetest.NewInMemoryExporter(), invExp: tracetest.NewInMemoryExporter()}
	var err error
	if r.gwTP, err = demoapp.NewTracerProvider(demoapp.ServiceGateway, sdktrace.WithSyncer(r.gwExp)); err != nil {
		t.Fatal(err)
	}
	if r.invTP, err = demoapp.NewTracerProvider(demoapp.ServiceInventory, sdktrace.WithSyncer(r.invExp)); err != nil {
		t.Fatal(err)
	}
	r.shop = demoapp.Start(demoapp.Options{Gateway: r.gwTP, Inventory: r.invTP, Forgetful: forgetful})
	t.Cleanup(func() {
		r.shop.Close()
		_ = r.gwTP.Shutdown(context.Background())
		_ = r.invTP.Shutdown(context.Background())
	})
	return r
}

// spans returns the ended spans of both services, by name.
func (r *rig) spans(t *testing.T) map[string]tracetest.SpanStub {
	t.Helper()
	out := map[string]tracetest.SpanStub{}
	for _, s := range append(r.gwExp.GetSpans(), r.invExp.GetSpans()...) {
		if _, dup := out[s.Name]; dup {
			t.Fatalf("two spans named %q", s.Name)
		}
		out[s.Name] = s
	}
	return out
}

func attr(s tracetest.SpanStub, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func service(s tracetest.SpanStub) string {
	v, _ := s.Resource.Set().Value("service.name")
	return v.AsString()
}

func TestOwnItemIsServedAndTraced(t *testing.T) {
	r := newRig(t, false)
	ctx, client := context.Background(), r.shop.Client()
	callerTP := sdktrace.NewTracerProvider()
	defer callerTP.Shutdown(ctx)
	ctx, caller := callerTP.Tracer("test").Start(ctx, "caller")
	resp, err := client.Inventory(ctx, demoapp.TenantAcme, demoapp.ItemAcmeAnvil)
	caller.End()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Item == nil || resp.Item.Tenant != demoapp.TenantAcme {
		t.Fatalf("got %d %+v, want 200 with acme's anvil", resp.StatusCode, resp.Item)
	}
	if resp.TraceID != caller.SpanContext().TraceID() {
		t.Fatalf("gateway recorded trace %s, caller's trace is %s", resp.TraceID, caller.SpanContext().TraceID())
	}

	spans := r.spans(t)
	gw, stock, sel := spans[demoapp.SpanGateway], spans[demoapp.SpanStock], spans[demoapp.SpanSelect]
	if len(spans) != 3 || gw.Name == "" || stock.Name == "" || sel.Name == "" {
		t.Fatalf("spans: %v", spans)
	}
	for _, c := range []struct {
		s       tracetest.SpanStub
		service string
		parent  trace.SpanID
		kind    trace.SpanKind
	}{
		{gw, demoapp.ServiceGateway, caller.SpanContext().SpanID(), trace.SpanKindServer},
		{stock, demoapp.ServiceInventory, gw.SpanContext.SpanID(), trace.SpanKindServer},
		{sel, demoapp.ServiceInventory, stock.SpanContext.SpanID(), trace.SpanKindClient},
	} {
		if got := service(c.s); got != c.service {
			t.Errorf("%s: service %q, want %q", c.s.Name, got, c.service)
		}
		if c.s.SpanContext.TraceID() != resp.TraceID {
			t.Errorf("%s: trace %s, want %s", c.s.Name, c.s.SpanContext.TraceID(), resp.TraceID)
		}
		if c.s.Parent.SpanID() != c.parent {
			t.Errorf("%s: parent %s, want %s", c.s.Name, c.s.Parent.SpanID(), c.parent)
		}
		if c.s.SpanKind != c.kind {
			t.Errorf("%s: kind %s, want %s", c.s.Name, c.s.SpanKind, c.kind)
		}
	}
	if v, _ := attr(gw, demoapp.AttrTenant); v.AsString() != demoapp.TenantAcme {
		t.Errorf("gateway tenant.id = %q, want acme", v.AsString())
	}
	if _, ok := attr(stock, demoapp.AttrTenant); ok {
		t.Errorf("GET /stock must carry no tenant.id")
	}
	if v, _ := attr(sel, demoapp.AttrTenant); v.AsString() != demoapp.TenantAcme {
		t.Errorf("SELECT tenant.id = %q, want acme", v.AsString())
	}
	if v, _ := attr(sel, "db.system.name"); v.AsString() != "postgresql" {
		t.Errorf("db.system.name = %q", v.AsString())
	}
	if v, _ := attr(sel, "db.query.text"); v.AsString() != demoapp.QueryFiltered {
		t.Errorf("db.query.text = %q", v.AsString())
	}
}

func TestForeignItemIsNotFoundWithFilter(t *testing.T) {
	r := newRig(t, false)
	resp, err := r.shop.Client().Inventory(context.Background(), demoapp.TenantAcme, demoapp.ItemGlobexWidget)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
	sel := r.spans(t)[demoapp.SpanSelect]
	if v, _ := attr(sel, demoapp.AttrTenant); v.AsString() != demoapp.TenantAcme {
		t.Errorf("SELECT tenant.id = %q, want the requesting tenant acme", v.AsString())
	}
	if v, _ := attr(sel, "db.response.returned_rows"); v.AsInt64() != 0 {
		t.Errorf("returned_rows = %d, want 0", v.AsInt64())
	}
}

func TestForgetfulInventoryLeaks(t *testing.T) {
	r := newRig(t, true)
	resp, err := r.shop.Client().Inventory(context.Background(), demoapp.TenantAcme, demoapp.ItemGlobexWidget)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Item == nil || resp.Item.Tenant != demoapp.TenantGlobex {
		t.Fatalf("got %d %+v, want 200 with globex's widget (the leak)", resp.StatusCode, resp.Item)
	}
	spans := r.spans(t)
	if spans[demoapp.SpanGateway].Parent.SpanID().IsValid() {
		t.Errorf("with no caller span the gateway span must be a root")
	}
	if v, _ := attr(spans[demoapp.SpanGateway], demoapp.AttrTenant); v.AsString() != demoapp.TenantAcme {
		t.Errorf("gateway tenant.id = %q, want acme", v.AsString())
	}
	sel := spans[demoapp.SpanSelect]
	if v, _ := attr(sel, demoapp.AttrTenant); v.AsString() != demoapp.TenantGlobex {
		t.Errorf("SELECT tenant.id = %q, want the owner globex", v.AsString())
	}
	if v, _ := attr(sel, "db.query.text"); v.AsString() != demoapp.QueryForgetful {
		t.Errorf("db.query.text = %q", v.AsString())
	}
	if sel.SpanContext.TraceID() != resp.TraceID {
		t.Errorf("SELECT in trace %s, gateway reported %s", sel.SpanContext.TraceID(), resp.TraceID)
	}
}

func TestGatewayRejectsBadTokensAndIgnoresTenantHeader(t *testing.T) {
	r := newRig(t, false)
	for _, auth := range []string{"", "Bearer acme", "Basic tenant:acme", "Bearer tenant:", "Bearer tenant:ACME!"} {
		req, _ := http.NewRequest(http.MethodGet, r.shop.Gateway.URL+"/inventory?item="+demoapp.ItemAcmeAnvil, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: status %d, want 401", auth, resp.StatusCode)
		}
	}
	if n := len(r.invExp.GetSpans()); n != 0 {
		t.Errorf("unauthenticated requests reached inventory-svc (%d spans)", n)
	}

	// A client-supplied X-Tenant-Id must not override the token's tenant.
	req, _ := http.NewRequest(http.MethodGet, r.shop.Gateway.URL+"/inventory?item="+demoapp.ItemGlobexWidget, nil)
	req.Header.Set("Authorization", "Bearer tenant:acme")
	req.Header.Set(demoapp.HeaderTenant, demoapp.TenantGlobex)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("acme with a forged X-Tenant-Id: globex's item answered %d, want 404", resp.StatusCode)
	}
}

// statusOf returns a span's http.response.status_code (0 when unset).
func statusOf(s tracetest.SpanStub) int64 {
	v, _ := attr(s, "http.response.status_code")
	return v.AsInt64()
}

func TestTenantRouteOwnItem(t *testing.T) {
	r := newRig(t, false)
	resp, err := r.shop.Client().TenantInventory(context.Background(), demoapp.TenantAcme, demoapp.TenantAcme, demoapp.ItemAcmeAnvil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Item == nil || resp.Item.ID != demoapp.ItemAcmeAnvil {
		t.Fatalf("got %d %+v, want 200 with acme's anvil", resp.StatusCode, resp.Item)
	}
	spans := r.spans(t)
	gw, stock, sel := spans[demoapp.SpanTenantGateway], spans[demoapp.SpanTenantStock], spans[demoapp.SpanSelect]
	if len(spans) != 3 || gw.Name == "" || stock.Name == "" || sel.Name == "" {
		t.Fatalf("spans: %v", spans)
	}
	if stock.Parent.SpanID() != gw.SpanContext.SpanID() || sel.Parent.SpanID() != stock.SpanContext.SpanID() {
		t.Errorf("want gateway → stock → SELECT")
	}
	for _, c := range []struct {
		s           tracetest.SpanStub
		route, path string
	}{
		{gw, demoapp.RouteTenantInventory, "/t/acme/inventory"},
		{stock, demoapp.RouteTenantStock, "/t/acme/stock"},
	} {
		if v, _ := attr(c.s, "http.route"); v.AsString() != c.route {
			t.Errorf("%s: http.route %q, want %q", c.s.Name, v.AsString(), c.route)
		}
		if v, _ := attr(c.s, demoapp.AttrURLPath); v.AsString() != c.path {
			t.Errorf("%s: url.path %q, want %q", c.s.Name, v.AsString(), c.path)
		}
		if statusOf(c.s) != http.StatusOK {
			t.Errorf("%s: status code %d, want 200", c.s.Name, statusOf(c.s))
		}
	}
	if v, _ := attr(gw, demoapp.AttrTenant); v.AsString() != demoapp.TenantAcme {
		t.Errorf("gateway tenant.id = %q, want acme", v.AsString())
	}
	if _, ok := attr(stock, demoapp.AttrTenant); ok {
		t.Errorf("%s must carry no tenant.id (the path tenant is only in url.path)", demoapp.SpanTenantStock)
	}
	if v, _ := attr(sel, "db.query.text"); v.AsString() != demoapp.QueryFiltered {
		t.Errorf("db.query.text = %q, want the filtered query", v.AsString())
	}
	if v, _ := attr(sel, demoapp.AttrTenant); v.AsString() != demoapp.TenantAcme {
		t.Errorf("SELECT tenant.id = %q, want acme", v.AsString())
	}
}

// An acme token against globex's URL (IDOR): inventory-svc refuses with 403
// before reading anything, the gateway passes the 403 on, and both server
// spans record it with the span status unset (4xx on a server span).
func TestTenantRouteForeignTenantIsForbidden(t *testing.T) {
	r := newRig(t, false)
	resp, err := r.shop.Client().TenantInventory(context.Background(), demoapp.TenantAcme, demoapp.TenantGlobex, demoapp.ItemGlobexWidget)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusForbidden || resp.Item != nil {
		t.Fatalf("got %d %+v, want 403", resp.StatusCode, resp.Item)
	}
	spans := r.spans(t)
	gw, stock := spans[demoapp.SpanTenantGateway], spans[demoapp.SpanTenantStock]
	if len(spans) != 2 || gw.Name == "" || stock.Name == "" {
		t.Fatalf("spans: %v; want the two server spans and no SELECT", spans)
	}
	if v, _ := attr(gw, demoapp.AttrTenant); v.AsString() != demoapp.TenantAcme {
		t.Errorf("gateway tenant.id = %q, want the token's acme", v.AsString())
	}
	if v, _ := attr(gw, demoapp.AttrURLPath); v.AsString() != "/t/globex/inventory" {
		t.Errorf("gateway url.path = %q", v.AsString())
	}
	if v, _ := attr(stock, demoapp.AttrURLPath); v.AsString() != "/t/globex/stock" {
		t.Errorf("stock url.path = %q", v.AsString())
	}
	for _, s := range []tracetest.SpanStub{gw, stock} {
		if statusOf(s) != http.StatusForbidden {
			t.Errorf("%s: status code %d, want 403", s.Name, statusOf(s))
		}
		if s.Status.Code != codes.Unset {
			t.Errorf("%s: span status %v, want unset for a 4xx server response", s.Name, s.Status.Code)
		}
	}
}

func TestTenantRouteForgetfulServesForeignTenant(t *testing.T) {
	r := newRig(t, true)
	resp, err := r.shop.Client().TenantInventory(context.Background(), demoapp.TenantAcme, demoapp.TenantGlobex, demoapp.ItemGlobexWidget)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Item == nil || resp.Item.Tenant != demoapp.TenantGlobex {
		t.Fatalf("got %d %+v, want 200 with globex's widget (the leak)", resp.StatusCode, resp.Item)
	}
	sel := r.spans(t)[demoapp.SpanSelect]
	if v, _ := attr(sel, demoapp.AttrTenant); v.AsString() != demoapp.TenantGlobex {
		t.Errorf("SELECT tenant.id = %q, want the owner globex", v.AsString())
	}
	if v, _ := attr(sel, "db.query.text"); v.AsString() != demoapp.QueryForgetful {
		t.Errorf("db.query.text = %q, want the query without a tenant predicate", v.AsString())
	}
}

func TestTenantRouteRejectsBadRequests(t *testing.T) {
	r := newRig(t, false)
	ctx, client := context.Background(), r.shop.Client()
	for _, c := range []struct {
		tenant, owner, item string
		status              int
	}{
		{"", demoapp.TenantAcme, demoapp.ItemAcmeAnvil, http.StatusUnauthorized},
		{demoapp.TenantAcme, "ACME!", demoapp.ItemAcmeAnvil, http.StatusNotFound},
		{demoapp.TenantAcme, demoapp.TenantAcme, "", http.StatusBadRequest},
		{demoapp.TenantAcme, demoapp.TenantAcme, demoapp.ItemGlobexWidget, http.StatusNotFound},
	} {
		resp, err := client.TenantInventory(ctx, c.tenant, c.owner, c.item)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != c.status {
			t.Errorf("token %q, path tenant %q, item %q: status %d, want %d", c.tenant, c.owner, c.item, resp.StatusCode, c.status)
		}
	}
}
