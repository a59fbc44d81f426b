package alerts

import (
	"context"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tenantguard/tenantguard/store"
)

func TestSummary(t *testing.T) {
	edge := func(from, fsvc, fspan, to, tsvc, tspan string) store.CrossingEdge {
		return store.CrossingEdge{
			From: store.EdgeEnd{Tenant: from, Service: fsvc, Span: fspan},
			To:   store.EdgeEnd{Tenant: to, Service: tsvc, Span: tspan},
		}
	}
	for _, tc := range []struct {
		name string
		ev   store.Evidence
		want string
	}{
		{"crossing edge", store.Evidence{Rule: "cross_tenant_trace", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			CrossingEdges: []store.CrossingEdge{edge("acme", "gateway", "GET /inventory", "globex", "inventory-svc", "SELECT stock")}},
			"trace 4bf92f35… went from tenant acme (gateway `GET /inventory`) into tenant globex (inventory-svc `SELECT stock`)"},
		{"several edges", store.Evidence{Rule: "cross_tenant_trace", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			CrossingEdges: []store.CrossingEdge{edge("acme", "a", "x", "globex", "b", "y"), edge("acme", "a", "x", "initech", "c", "z")}},
			"trace 4bf92f35… went from tenant acme (a `x`) into tenant globex (b `y`) and 1 more crossing edge(s)"},
		{"no edge known", store.Evidence{Rule: "cross_tenant_trace", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Tenants: []string{"acme", "globex"}},
			"trace 4bf92f35… touched tenants acme, globex"},
		{"mismatch", store.Evidence{Rule: "tenant_mismatch", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			Mismatches: []store.Mismatch{{Service: "gateway", Span: "GET /documents/{id}", Values: []store.TenantSource{
				{Key: "tenant.id", Tenant: "acme"}, {Key: "http.request.header.x-tenant-id", Tenant: "globex"}}}}},
			"trace 4bf92f35…: span gateway `GET /documents/{id}` carries disagreeing tenants (tenant.id=acme, http.request.header.x-tenant-id=globex)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Summary(&tc.ev); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestLogNotifierLevels(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	n := NewLogNotifier(zap.New(core))
	ev := store.Evidence{LeakID: "l1", Rule: "cross_tenant_trace", Status: "open", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Tenants: []string{"acme", "globex"}}
	for _, status := range []string{"open", "open", "closed", "allowed"} {
		ev.Status = status
		if err := n.Notify(context.Background(), &ev); err != nil {
			t.Fatal(err)
		}
	}
	got := logs.All()
	if len(got) != 4 {
		t.Fatalf("want 4 log lines, got %d", len(got))
	}
	wantLevels := []zapcore.Level{zapcore.WarnLevel, zapcore.InfoLevel, zapcore.InfoLevel, zapcore.InfoLevel}
	for i, e := range got {
		if e.Level != wantLevels[i] {
			t.Errorf("line %d (%s) at %s, want %s", i, e.Message, e.Level, wantLevels[i])
		}
		if e.ContextMap()["leak_id"] != "l1" {
			t.Errorf("line %d lacks leak_id", i)
		}
	}
}
