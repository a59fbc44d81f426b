package alerts

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenantguard/tenantguard/alerts/slacktest"
	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

// TestSlackHeadlineIsTheMessageOfEveryRule: through a local Slack API, each
// rule's message heads its message and is its notification text, as the
// log and `leaks` print it; no rule reads like another (a single-tenant
// unscoped_query is not a "cross-tenant trace"; a missing_tenant finding
// with no tenant names no empty list).
func TestSlackHeadlineIsTheMessageOfEveryRule(t *testing.T) {
	srv := slacktest.NewServer(t)
	cfg := botConfig(t, srv, filepath.Join(t.TempDir(), "outbox.jsonl"))
	cfg.MinSeverity = string(detector.SeverityLow)
	n, _ := startSlack(t, cfg)
	defer closeSlack(t, n)

	base := func(id string, rule detector.Rule, tenants ...string) *store.Evidence {
		ev := leak(id, "286f490d54c344f98350b1d0feeae75b", "acme", "globex")
		ev.Rule, ev.Tenants, ev.Status = string(rule), tenants, string(detector.StatusClosed)
		return ev
	}
	cross := base("l-cross", detector.RuleCrossTenantTrace, "acme", "globex")
	blocked := base("l-blocked", detector.RuleBlockedAttempt, "acme", "globex")
	blocked.Severity = string(detector.SeverityLow)
	blocked.CrossingEdges[0].Outcome = detector.OutcomeBlocked
	blocked.Spans = []store.Span{{SpanID: "b2", Outcome: detector.OutcomeBlocked, Attributes: map[string]string{"http.response.status_code": "403"}}}
	mismatch := base("l-mismatch", detector.RuleTenantMismatch, "acme", "globex")
	mismatch.CrossingEdges = nil
	mismatch.Mismatches = []store.Mismatch{{SpanID: "c1", Service: "gateway", Span: "GET /documents/{id}",
		Values: []store.TenantSource{{Key: "tenant.id", Tenant: "acme"}, {Key: "x-tenant-id", Tenant: "globex"}}}}
	key := base("l-key", detector.RuleForeignSigningKey, "acme")
	key.CrossingEdges = nil
	key.Keys = []store.KeyUse{{SpanID: "d1", Service: "gateway", Span: "GET /invoices", Attribute: "auth.jwt.kid",
		Identifier: "kid-42", KeyTenant: "globex", SpanTenant: "acme"}}
	unscoped := base("l-unscoped", detector.RuleUnscopedQuery, "acme")
	unscoped.Severity, unscoped.CrossingEdges = string(detector.SeverityHigh), nil
	unscoped.Queries = []store.Query{{SpanID: "e1", Service: "checkout-svc", Span: "SELECT orders", Tables: []string{"orders"}}}
	missing := base("l-missing", detector.RuleMissingTenant)
	missing.Severity, missing.CrossingEdges = string(detector.SeverityMedium), nil
	missing.Spans = []store.Span{{SpanID: "f1", Service: "billing-svc", Name: "GET /invoices"}}

	evs := []*store.Evidence{cross, blocked, mismatch, key, unscoped, missing}
	for _, ev := range evs {
		notify(t, n, ev)
	}
	waitFor(t, "a message per rule", func() bool { return len(srv.TopLevel()) == len(evs) })
	byText := map[string]slacktest.Post{}
	for _, p := range srv.TopLevel() {
		byText[p.Text] = p
	}
	for _, ev := range evs {
		want := ev.Message(store.Plain)
		p, ok := byText[want]
		if !ok {
			t.Errorf("%s: no message with the text %q", ev.Rule, want)
			continue
		}
		if !strings.Contains(p.Blocks, want) {
			t.Errorf("%s: the blocks do not head with the message %q:\n%s", ev.Rule, want, p.Blocks)
		}
		if strings.Contains(p.Text, "Cross-tenant") || strings.Contains(p.Text, "touched tenants") || strings.Contains(p.Text, "kid-42") {
			t.Errorf("%s: message %q reads like another rule, or carries a key id", ev.Rule, p.Text)
		}
	}
}
