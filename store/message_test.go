package store

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tenantguard/tenantguard/detector"
)

const tid = "286f490d54c3a1b2c3d4e5f60718293a"

func edge(from, fsvc, fspan, to, tsvc, tspan, toSpanID, outcome string) CrossingEdge {
	return CrossingEdge{
		From:    EdgeEnd{SpanID: "a1", Tenant: from, Service: fsvc, Span: fspan},
		To:      EdgeEnd{SpanID: toSpanID, Tenant: to, Service: tsvc, Span: tspan},
		Hops:    0,
		Outcome: outcome,
	}
}

// messageCases is one record per rule and per shape the message changes
// with; every status is applied to each in TestMessageEveryRuleAndStatus.
func messageCases() []struct {
	name string
	ev   Evidence
	want string
} {
	crossed := edge("acme", "gateway", "GET /inventory", "globex", "inventory-svc", "SELECT stock", "b2", detector.OutcomeSucceeded)
	refused := edge("acme", "storefront", "POST /checkout", "globex", "inventory-svc", "GET /stock", "b3", detector.OutcomeBlocked)
	refusedSpan := Span{SpanID: "b3", Service: "inventory-svc", Name: "GET /stock", Tenant: "globex", Outcome: detector.OutcomeBlocked,
		Attributes: map[string]string{"http.response.status_code": "403"}}
	link := crossed
	link.Link, link.Hops = true, 2
	return []struct {
		name string
		ev   Evidence
		want string
	}{
		{"cross_tenant_trace with its edge", Evidence{Rule: string(detector.RuleCrossTenantTrace), TraceID: tid,
			Tenants: []string{"acme", "globex"}, CrossingEdges: []CrossingEdge{crossed}},
			"trace 286f490d… from tenant acme reached tenant globex at inventory-svc `SELECT stock`, from gateway `GET /inventory`"},
		{"cross_tenant_trace through a link, several edges", Evidence{Rule: string(detector.RuleCrossTenantTrace), TraceID: tid,
			Tenants: []string{"acme", "globex"}, CrossingEdges: []CrossingEdge{link, crossed, crossed}},
			"trace 286f490d… from tenant acme reached tenant globex at inventory-svc `SELECT stock`, through a span link from " +
				"gateway `GET /inventory` and 2 spans without a tenant; 2 more crossing edges"},
		{"cross_tenant_trace, edge not known", Evidence{Rule: string(detector.RuleCrossTenantTrace), TraceID: tid,
			Tenants: []string{"acme", "globex"}},
			"trace 286f490d… carries tenants acme and globex; no crossing edge was found between them"},
		{"blocked_attempt", Evidence{Rule: string(detector.RuleBlockedAttempt), TraceID: tid, Tenants: []string{"acme", "globex"},
			CrossingEdges: []CrossingEdge{crossed, refused}, Spans: []Span{refusedSpan}},
			"trace 286f490d… from tenant acme tried to reach tenant globex at inventory-svc `GET /stock`, from storefront `POST /checkout`, " +
				"and was refused (HTTP 403); 1 more crossing edge"},
		{"tenant_mismatch", Evidence{Rule: string(detector.RuleTenantMismatch), TraceID: tid, Tenants: []string{"acme", "globex"},
			Mismatches: []Mismatch{{SpanID: "c1", Service: "gateway", Span: "GET /documents/{id}", Values: []TenantSource{
				{Key: "tenant.id", Tenant: "acme"}, {Key: "x-tenant-id", Tenant: "globex", Resource: true}}}},
			Spans: []Span{{SpanID: "c1", Outcome: detector.OutcomeSucceeded}}},
			"gateway `GET /documents/{id}` in trace 286f490d… carried disagreeing tenants (tenant.id=acme, x-tenant-id=globex on the resource) and was served"},
		{"foreign_signing_key", Evidence{Rule: string(detector.RuleForeignSigningKey), TraceID: tid, Tenants: []string{"acme"},
			Keys: []KeyUse{{SpanID: "d1", Service: "payments-svc", Span: "POST /charge", Attribute: "auth.key_id",
				Identifier: "kid-secret-7", KeyTenant: "globex", SpanTenant: "acme"}},
			Spans: []Span{{SpanID: "d1", Outcome: detector.OutcomeBlocked, Attributes: map[string]string{"rpc.grpc.status_code": "7"}}}},
			"payments-svc `POST /charge` in trace 286f490d… took a token of tenant acme verified with tenant globex's key (auth.key_id) " +
				"and was refused (gRPC PERMISSION_DENIED)"},
		{"foreign_signing_key, global key", Evidence{Rule: string(detector.RuleForeignSigningKey), TraceID: tid,
			Keys: []KeyUse{{SpanID: "d1", Service: "payments-svc", Span: "POST /charge", Attribute: "auth.key_id", Identifier: "kid-global-9", Global: true}}},
			"payments-svc `POST /charge` in trace 286f490d… took a token verified with a global key (auth.key_id)"},
		{"unscoped_query, one tenant", Evidence{Rule: string(detector.RuleUnscopedQuery), TraceID: tid, Tenants: []string{"acme"},
			Services: []string{"checkout-svc"},
			Queries:  []Query{{SpanID: "e1", Service: "checkout-svc", Span: "SELECT shop.orders", Tables: []string{"orders"}}}},
			"checkout-svc ran `SELECT shop.orders` with no tenant predicate (table orders)"},
		{"missing_tenant", Evidence{Rule: string(detector.RuleMissingTenant), TraceID: tid, Services: []string{"billing-svc"},
			Spans: []Span{{SpanID: "f1", Service: "billing-svc", Name: "GET /invoices"}}},
			"billing-svc `GET /invoices` carried no tenant, though the service is listed as tenant-aware"},
		{"a rule of a newer build", Evidence{Rule: "future_rule", TraceID: tid, Tenants: []string{"acme"}},
			"trace 286f490d… raised future_rule touching tenant acme"},
	}
}

// TestMessageEveryRuleAndStatus: each rule reads as what happened, and
// allowed and reclassified say how the status changed it.
func TestMessageEveryRuleAndStatus(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range messageCases() {
		seen[tc.ev.Rule] = true
		for _, status := range detector.Statuses {
			tc.ev.Status = string(status)
			tc.ev.AllowedBy = ""
			want := tc.want
			switch status {
			case detector.StatusAllowed:
				tc.ev.AllowedBy = "admin-console"
				want += "; withdrawn: the trace passed through allowed path admin-console"
			case detector.StatusReclassified:
				want += "; reclassified, see the trace's blocked_attempt finding"
			case detector.StatusOpen:
				if len(tc.ev.CrossingEdges) == 0 && tc.ev.Rule == string(detector.RuleCrossTenantTrace) {
					want = "trace 286f490d… carries tenants acme and globex; the crossing edge is not known yet"
				}
			}
			if status == detector.StatusReclassified && tc.ev.Rule == string(detector.RuleCrossTenantTrace) {
				continue // TestMessageReclassifiedCrossing
			}
			if got := tc.ev.Message(Plain); got != want {
				t.Errorf("%s, %s:\ngot  %q\nwant %q", tc.name, status, got, want)
			}
		}
	}
	for _, r := range detector.Rules {
		if !seen[string(r)] {
			t.Errorf("no message case for rule %s", r)
		}
	}
}

// TestMessageReclassifiedCrossing: a cross_tenant_trace finding whose
// crossing turned out refused says so, not that a tenant was reached.
func TestMessageReclassifiedCrossing(t *testing.T) {
	ev := Evidence{Rule: string(detector.RuleCrossTenantTrace), Status: string(detector.StatusReclassified), TraceID: tid,
		CrossingEdges: []CrossingEdge{edge("acme", "storefront", "POST /checkout", "globex", "inventory-svc", "GET /stock", "b3", detector.OutcomeBlocked)},
		Spans:         []Span{{SpanID: "b3", Status: "error"}}}
	want := "trace 286f490d… from tenant acme tried to reach tenant globex at inventory-svc `GET /stock`, from storefront `POST /checkout`, " +
		"and was refused (error status); reclassified, see the trace's blocked_attempt finding"
	if got := ev.Message(Plain); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestMessageNeverCarriesAttributeValues: a key id, a digest or a status
// string never reaches the sentence; only names do.
func TestMessageNeverCarriesAttributeValues(t *testing.T) {
	for _, tc := range messageCases() {
		got := tc.ev.Message(Plain)
		for _, k := range tc.ev.Keys {
			if strings.Contains(got, k.Identifier) {
				t.Errorf("%s: message carries the key id %q: %s", tc.name, k.Identifier, got)
			}
		}
	}
}

// TestMessageStyle: Slack's style escapes every telemetry-derived word and
// shows tenants as its pseudonyms; the plain style keeps a hostile name on
// one line, valid UTF-8 and bounded.
func TestMessageStyle(t *testing.T) {
	ev := Evidence{Rule: string(detector.RuleCrossTenantTrace), TraceID: tid, Tenants: []string{"acme", "globex"},
		CrossingEdges: []CrossingEdge{edge("acme", "<!channel>", "a`b", "globex", "svc\nx", strings.Repeat("é", 500)+"\xff", "z", detector.OutcomeSucceeded)}}
	st := Style{
		Text:   func(s string) string { return strings.NewReplacer("<", "&lt;", ">", "&gt;").Replace(s) },
		Code:   func(s string) string { return "[" + s + "]" },
		Tenant: func(s string) string { return "t-" + s },
	}
	got := ev.Message(st)
	for _, want := range []string{"tenant t-acme reached tenant t-globex", ", from &lt;!channel&gt; [a`b]", "at svc x ["} {
		if !strings.Contains(got, want) {
			t.Errorf("styled message lacks %q: %s", want, got)
		}
	}
	plain := ev.Message(Plain)
	if strings.ContainsAny(plain, "\n\r") || !utf8.ValidString(plain) || len(plain) > 600 {
		t.Errorf("plain message not one bounded line of valid UTF-8 (%d bytes): %q", len(plain), plain)
	}
}

// TestNewEvidenceKeepsEveryField: the constructor carries each field of a
// finding into the record.
func TestNewEvidenceKeepsEveryField(t *testing.T) {
	f := detector.Finding{LeakID: "l", Version: 3, Rule: detector.RuleForeignSigningKey, Severity: detector.SeverityCritical,
		Status: detector.StatusClosed, AllowedBy: "x", Reason: "r", TraceID: detector.TraceID{1}, Tenants: []string{"a"},
		Services: []string{"s"}, SpanCount: 4,
		Edges: []detector.CrossingEdge{{From: detector.EdgeEnd{TraceID: detector.TraceID{2}, SpanID: detector.SpanID{3}, Service: "p",
			Name: "pub", Tenant: "a"}, To: detector.EdgeEnd{SpanID: detector.SpanID{4}, Service: "c", Name: "con", Tenant: "b"},
			Hops: 1, Link: true, Outcome: detector.OutcomeBlocked}},
		Mismatches: []detector.Mismatch{{SpanID: detector.SpanID{5}, Service: "m", Name: "n",
			Values: []detector.TenantSource{{Key: "k", Tenant: "a", Resource: true}}}},
		Keys: []detector.KeyUse{{SpanID: detector.SpanID{6}, Service: "k", Name: "n", Attribute: "kid", Identifier: "i",
			KeyTenant: "b", SpanTenant: "a", Global: true}},
		Queries: []detector.UnscopedQuery{{SpanID: detector.SpanID{7}, Service: "q", Name: "SELECT t", Tables: []string{"t"}}},
		Spans: []detector.EvidenceSpan{{SpanID: detector.SpanID{8}, ParentID: detector.SpanID{9}, Service: "s", Name: "n",
			Tenant: "a", TenantKey: "tenant.id", Outcome: detector.OutcomeBlocked, Data: true,
			Detail: &detector.SpanDetail{Kind: "server", StartUnixNano: 10, EndUnixNano: 25, Status: "error",
				Attributes: map[string]string{"k": "v"}}}},
	}
	ev := NewEvidence(&f, "c1")
	e, k, q, sp := ev.CrossingEdges[0], ev.Keys[0], ev.Queries[0], ev.Spans[0]
	for name, ok := range map[string]bool{
		"header":   ev.LeakID == "l" && ev.Version == 3 && ev.Rule == "foreign_signing_key" && ev.Severity == "critical" && ev.Status == "closed" && ev.AllowedBy == "x" && ev.Reason == "r" && ev.Collector == "c1" && ev.SpanCount == 4,
		"edge":     e.From.TraceID == detector.TraceID{2}.String() && e.To.TraceID == "" && e.Hops == 1 && e.Link && e.Outcome == "blocked" && e.From.Span == "pub",
		"mismatch": ev.Mismatches[0].Values[0].Resource && ev.Mismatches[0].Span == "n",
		"key":      k.Identifier == "i" && k.Attribute == "kid" && k.KeyTenant == "b" && k.SpanTenant == "a" && k.Global,
		"query":    q.Span == "SELECT t" && q.Tables[0] == "t",
		"span":     sp.ParentID != "" && sp.Outcome == "blocked" && sp.Data && sp.Kind == "server" && sp.DurationNs == 15 && sp.Status == "error" && sp.Attributes["k"] == "v" && !sp.StartTime.IsZero(),
	} {
		if !ok {
			t.Errorf("NewEvidence lost the %s: %+v", name, ev)
		}
	}
}
