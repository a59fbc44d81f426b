package tenantguardprocessor

// Key facts of the golden scenarios (scenarios_test.go), asserted
// independently of the goldens. Trace and span ids are the fixed ids in the
// scenario files.

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tenantguard/tenantguard/detector"
)

var scenarioFacts = map[string]func(t *testing.T, run *scenarioRun){
	"clean": func(t *testing.T, run *scenarioRun) {
		expectNoFinding(t, run)
		// The scenario must be clean because of the rules, not by accident:
		// without shared_tenants the catalog trace (acme reading the shared
		// "system" catalog) is a crossing, and 42 (int) and "42" (string)
		// are one tenant, so the numeric trace stays clean.
		cfg := scenarioConfig(t)
		cfg.Allow.SharedTenants = nil
		noShared := runScenario(t, cfg, readScenario(t, filepath.Join(scenarioDir, "clean.json")))
		if got := findingKeys(noShared.final); !slices.Equal(got, []string{
			"cross_tenant_trace 074660b92b717f84db7bf6dd71cf75a1 acme,system",
		}) {
			t.Errorf("clean.json without shared_tenants: want only the catalog trace acme/system, got %q", got)
		}
	},

	"shared_inventory": func(t *testing.T, run *scenarioRun) {
		// SELECT sku, quantity, tenant_id FROM stock WHERE warehouse_id
		// = $1 has no tenant predicate: the leak's cause, and an
		// unscoped_query finding of its own.
		expectUnscoped(t, run, "286f490d54c344f98350b1d0feeae75b", "d49692df12c81f95", "inventory-svc", "SELECT stock", []string{"acme", "globex"}, "stock")
		run = withoutRule(run, detector.RuleUnscopedQuery)
		f := expectOne(t, run, detector.RuleCrossTenantTrace, "286f490d54c344f98350b1d0feeae75b", "acme", "globex")
		// SELECT stock is a database span reading globex's rows.
		expectSeverity(t, f, detector.SeverityCritical)
		if len(f.Edges) == 0 {
			t.Fatal("no crossing edge")
		}
		expectEdge(t, f.Edges[0],
			edgeWant{"fa034f5180477414", "gateway", "GET /inventory", "acme"},
			edgeWant{"d49692df12c81f95", "inventory-svc", "SELECT stock", "globex"}, 1)
		if len(f.Edges) != 1 {
			t.Errorf("want one crossing edge, got %+v", f.Edges)
		}
		expectServices(t, f, "gateway", "inventory-svc")
		if f.SpanCount != 3 {
			t.Errorf("span_count = %d, want 3", f.SpanCount)
		}
	},

	"header_mismatch": func(t *testing.T, run *scenarioRun) {
		f := expectOne(t, run, detector.RuleTenantMismatch, "b3afb9f713fe5685a9eaf524790970fb", "acme", "globex")
		if f.Severity != detector.SeverityHigh {
			t.Errorf("severity = %s", f.Severity)
		}
		if len(f.Mismatches) != 1 {
			t.Fatalf("want one mismatching span, got %+v", f.Mismatches)
		}
		m := f.Mismatches[0]
		if m.SpanID.String() != "56892ad83a97a73c" || m.Service != "gateway" || m.Name != "GET /documents/{id}" {
			t.Errorf("mismatching span = %s %s %q, want the gateway's GET /documents/{id}", m.SpanID, m.Service, m.Name)
		}
		want := []detector.TenantSource{
			{Key: "tenant.id", Tenant: "acme"},
			{Key: "http.request.header.x-tenant-id", Tenant: "globex"},
		}
		if !slices.Equal(m.Values, want) {
			t.Errorf("mismatch values = %+v, want %+v", m.Values, want)
		}
		if len(f.Edges) != 0 {
			t.Errorf("a mismatch carries no crossing edge, got %+v", f.Edges)
		}
	},

	"admin_console": func(t *testing.T, run *scenarioRun) {
		expectNoFinding(t, run)
		// Without the allow rule the same trace is a crossing.
		cfg := scenarioConfig(t)
		cfg.Allow.Services = nil
		open := runScenario(t, cfg, readScenario(t, filepath.Join(scenarioDir, "admin_console.json")))
		if got := findingKeys(open.final); !slices.Equal(got, []string{
			"cross_tenant_trace 178f108fb4dc22089894c5dfd7ac24bf acme,globex",
		}) {
			t.Errorf("admin_console.json without allow.services: want one acme/globex crossing, got %q", got)
		}
	},

	"siloed_resource": func(t *testing.T, run *scenarioRun) {
		// Trace 3517a0b1… (acme through acme's silo) is clean; only the globex
		// request served by reports-acme is a crossing.
		f := expectOne(t, run, detector.RuleCrossTenantTrace, "cc26e216d9e3d75c4bd45b01c5801dcc", "acme", "globex")
		// The silo answered, but no span of it touched stored data: high.
		expectSeverity(t, f, detector.SeverityHigh)
		if len(f.Edges) != 1 {
			t.Fatalf("want one crossing edge, got %+v", f.Edges)
		}
		expectEdge(t, f.Edges[0],
			edgeWant{"5e855d29ef6df6a3", "gateway", "GET /reports/quarterly", "globex"},
			edgeWant{"faa535ca9fae176f", "reports-acme", "GET /reports/quarterly", "acme"}, 0)
		expectServices(t, f, "gateway", "reports-acme")
		// The silo's tenant comes from its resource.
		for _, s := range f.Spans {
			if s.Service == "reports-acme" && (s.Tenant != "acme" || s.TenantKey != "tenant.id") {
				t.Errorf("reports-acme evidence span %s: tenant %q under %q, want acme under tenant.id", s.SpanID, s.Tenant, s.TenantKey)
			}
		}
	},

	"split_requests": func(t *testing.T, run *scenarioRun) {
		const trace = "243369ce8a3ce6590a8cb372368d32a2"
		if len(run.afterLine) != 3 {
			t.Fatalf("want 3 requests, got %d", len(run.afterLine))
		}
		// Line 1: ledger-svc's globex span alone, its parent unknown.
		if len(run.afterLine[0]) != 0 {
			t.Errorf("after line 1 (one tenant so far): %q", findingKeys(run.afterLine[0]))
		}
		// Line 2: storefront's acme root. Two tenants: an open finding, but
		// ledger-svc's parent has not arrived, so no edge yet.
		if got := findingKeys(run.afterLine[1]); !slices.Equal(got, []string{"cross_tenant_trace " + trace + " acme,globex"}) {
			t.Fatalf("after line 2: %q", got)
		}
		v2 := run.afterLine[1][0]
		if v2.Status != detector.StatusOpen || len(v2.Edges) != 0 {
			t.Errorf("after line 2: status %s, edges %+v; want open without edges", v2.Status, v2.Edges)
		}
		if !hasEvidenceFor(v2.Spans, "acme") || !hasEvidenceFor(v2.Spans, "globex") {
			t.Errorf("after line 2: an edgeless crossing still needs evidence for both tenants, got %+v", v2.Spans)
		}
		// Line 3: payments-svc, the missing parent: the edge is filled in.
		if len(run.afterLine[2]) != 1 {
			t.Fatalf("after line 3: %q", findingKeys(run.afterLine[2]))
		}
		v3 := run.afterLine[2][0]
		if v3.LeakID != v2.LeakID || v3.Version <= v2.Version || v3.Status != detector.StatusOpen {
			t.Errorf("after line 3: want a newer open version of %s, got %s v%d %s", v2.LeakID, v3.LeakID, v3.Version, v3.Status)
		}
		payments := edgeWant{"d1661a73be9c83cb", "payments-svc", "POST /charges", "acme"}
		ledger := edgeWant{"8a7fb38742e8c12d", "ledger-svc", "INSERT ledger_entries", "globex"}
		if len(v3.Edges) != 1 {
			t.Fatalf("after line 3: want one edge, got %+v", v3.Edges)
		}
		expectEdge(t, v3.Edges[0], payments, ledger, 0)

		f := expectOne(t, run, detector.RuleCrossTenantTrace, trace, "acme", "globex")
		if len(f.Edges) != 1 {
			t.Fatalf("final: want one edge, got %+v", f.Edges)
		}
		expectEdge(t, f.Edges[0], payments, ledger, 0)
		expectServices(t, f, "ledger-svc", "payments-svc", "storefront")
		if f.SpanCount != 3 {
			t.Errorf("span_count = %d, want 3", f.SpanCount)
		}
	},
	// regex_derived: tenants found only by tenant_derivations.
	"regex_derived": func(t *testing.T, run *scenarioRun) {
		const acmeCart, globexCart = "8a69875e2269805803352ae44b851ed8", "0610a43046efc35f4b0ec85b2d7c6c42"
		expectFindingSet(t, run, "cross_tenant_trace "+acmeCart)
		f := findingFor(t, run.final, detector.RuleCrossTenantTrace, acmeCart)
		expectTenants(t, f, "acme", "globex")
		// The redis GET of globex:cart:17 is a cache read of globex's data.
		expectSeverity(t, f, detector.SeverityCritical)
		if len(f.Edges) != 1 {
			t.Fatalf("want one crossing edge, got %+v", f.Edges)
		}
		// storefront's acme page → storefront's client span and cart-svc's
		// server span (no tenant: two hops) → the redis read of globex's cart.
		expectEdge(t, f.Edges[0],
			edgeWant{"f4986721a5305b1a", "storefront", "GET /t/{tenant}/cart", "acme"},
			edgeWant{"abc2266d9fe358df", "cart-svc", "GET", "globex"}, 2)
		expectServices(t, f, "cart-svc", "storefront")
		expectEvidence(t, f, "f4986721a5305b1a", "acme", "url.path", false)
		expectEvidence(t, f, "abc2266d9fe358df", "globex", "cache.key", true)
		// globex's own cart page is clean, and its tenants were found: by
		// url.path on the page, cache.key on the redis read and db.namespace
		// on the SELECT. Only the two client spans and the two cart-svc
		// server spans carry no tenant.
		if got := run.stats.SpansWithoutTenant; got != 4 {
			t.Errorf("spans without tenant = %d, want 4 (a derivation did not apply)", got)
		}
		// Without the derivations nothing in this scenario has a tenant.
		cfg := scenarioConfig(t)
		cfg.TenantDerivations = nil
		plain := runScenario(t, cfg, readScenario(t, filepath.Join(scenarioDir, "regex_derived.json")))
		if len(plain.all) != 0 || plain.stats.SpansWithoutTenant != 9 {
			t.Errorf("without tenant_derivations: want no finding and 9 spans without tenant, got %q and %d",
				findingKeys(plain.final), plain.stats.SpansWithoutTenant)
		}
	},

	// foreign_signing_key: bindings of auth.jwt.kid.
	"foreign_signing_key": func(t *testing.T, run *scenarioRun) {
		const foreignKey, sharedKey, ownKey = "58eb8feb539f5189a73c79b996b73d1e", "36c87f822187ec0591abaa30c31a477e", "28e4c5eab3e8af99c8db739686f8f7f8"
		// acme's token verified with its own key (trace 28e4c5ea…) is nothing.
		expectFindingSet(t, run, "foreign_signing_key "+foreignKey, "foreign_signing_key "+sharedKey)

		f := findingFor(t, run.final, detector.RuleForeignSigningKey, foreignKey)
		expectLeakID(t, f, foreignKey)
		// The key's tenant is a tenant the request reached for.
		expectTenants(t, f, "acme", "globex")
		expectSeverity(t, f, detector.SeverityCritical)
		want := detector.KeyUse{Service: "gateway", Name: "GET /invoices", Attribute: "auth.jwt.kid",
			Identifier: "kid-globex-2026", KeyTenant: "globex", SpanTenant: "acme"}
		expectKeys(t, f, "22272ce17ef8b477", want)

		g := findingFor(t, run.final, detector.RuleForeignSigningKey, sharedKey)
		expectLeakID(t, g, sharedKey)
		expectTenants(t, g, "initech")
		expectSeverity(t, g, detector.SeverityCritical)
		want = detector.KeyUse{Service: "partner-api", Name: "POST /v1/sync", Attribute: "auth.jwt.kid",
			Identifier: "kid-legacy-shared", SpanTenant: "initech", Global: true}
		expectKeys(t, g, "96fd57086b7cc0b1", want)
		expectNoVersionFor(t, run, ownKey)
	},

	// blocked_vs_succeeded: the outcome of the crossing decides the rule.
	"blocked_vs_succeeded": func(t *testing.T, run *scenarioRun) {
		const http403, served, grpcDenied = "ac0637371532cda38f9be8b99c725c7f", "781dd66cfdd93d0ff8b8c7e99fec52e4", "95878a2e5c83a5551232d76e7960f0f3"
		expectFindingSet(t, run,
			"blocked_attempt "+http403, "cross_tenant_trace "+served, "blocked_attempt "+grpcDenied)
		// A refused crossing is never a cross_tenant_trace, not even for a
		// moment: no version of one was emitted for the refused traces.
		for _, f := range run.all {
			if f.Rule == detector.RuleCrossTenantTrace && f.TraceID.String() != served {
				t.Errorf("a cross_tenant_trace version was emitted for refused trace %s (%s)", f.TraceID, f.Status)
			}
		}

		// acme asks for globex's document: documents-svc answers 403.
		b1 := findingFor(t, run.final, detector.RuleBlockedAttempt, http403)
		expectLeakID(t, b1, http403)
		expectTenants(t, b1, "acme", "globex")
		expectSeverity(t, b1, detector.SeverityLow)
		if len(b1.Edges) != 1 {
			t.Fatalf("403: want one edge, got %+v", b1.Edges)
		}
		expectEdge(t, b1.Edges[0],
			edgeWant{"3b25dd927e1d455f", "gateway", "GET /documents/{id}", "acme"},
			edgeWant{"485046b15382fb64", "documents-svc", "GET /documents/{id}", "globex"}, 1)
		expectOutcome(t, b1.Edges[0], detector.OutcomeBlocked)

		// The same request served, globex's rows read: critical.
		b2 := findingFor(t, run.final, detector.RuleCrossTenantTrace, served)
		expectLeakID(t, b2, served)
		expectTenants(t, b2, "acme", "globex")
		expectSeverity(t, b2, detector.SeverityCritical)
		if !strings.Contains(b2.Reason, "SELECT documents") {
			t.Errorf("reason %q does not name the SELECT documents span", b2.Reason)
		}
		if len(b2.Edges) != 1 {
			t.Fatalf("served: want one edge, got %+v", b2.Edges)
		}
		expectEdge(t, b2.Edges[0],
			edgeWant{"39ccc5bc4e1450cd", "gateway", "GET /documents/{id}", "acme"},
			edgeWant{"f2fd4ecf297b3663", "documents-svc", "GET /documents/{id}", "globex"}, 1)
		expectOutcome(t, b2.Edges[0], detector.OutcomeSucceeded)

		// gRPC PERMISSION_DENIED on payments-svc's server span, whose status
		// is unset (semconv: an error on the client side only): the code
		// alone makes the crossing refused.
		b3 := findingFor(t, run.final, detector.RuleBlockedAttempt, grpcDenied)
		expectLeakID(t, b3, grpcDenied)
		expectTenants(t, b3, "acme", "globex")
		expectSeverity(t, b3, detector.SeverityLow)
		if len(b3.Edges) != 1 {
			t.Fatalf("gRPC: want one edge, got %+v", b3.Edges)
		}
		expectEdge(t, b3.Edges[0],
			edgeWant{"3d922be263e9fec5", "storefront", "POST /checkout", "acme"},
			edgeWant{"54fd72bc09ea98ef", "payments-svc", "payments.v1.PaymentMethods/Get", "globex"}, 1)
		expectOutcome(t, b3.Edges[0], detector.OutcomeBlocked)
	},

	// unscoped_query: the missing WHERE.
	"unscoped_query": func(t *testing.T, run *scenarioRun) {
		// Every trace holds one tenant: whatever the SQL analysis says,
		// no other rule may fire.
		for _, f := range run.all {
			if f.Rule != detector.RuleUnscopedQuery {
				t.Errorf("unexpected %s finding for trace %s", f.Rule, f.TraceID)
			}
		}
		// SELECT sku, qty FROM stock WHERE sku = $1: stock, unscoped.
		// The same with AND tenant_id = $2 (trace 0c96b5de…): nothing.
		// SELECT o.id FROM orders o JOIN invoices i ON i.order_id = o.id
		// WHERE o.tenant_id = ?: orders is scoped, invoices is not.
		// SELECT … FROM invoices WHERE tenant_id = ? AND … (trace 3c31262c…): nothing.
		expectFindingSet(t, run,
			"unscoped_query fbfaed31e2c1ee64519d1564254022aa", "unscoped_query 1238058f97fba5efaa7b9739f2a33c2f")
		expectUnscoped(t, run, "fbfaed31e2c1ee64519d1564254022aa", "a0963ee87583bc5c", "warehouse-svc", "SELECT stock", []string{"acme"}, "stock")
		expectUnscoped(t, run, "1238058f97fba5efaa7b9739f2a33c2f", "24b6508ba0e64183", "billing-svc", "SELECT orders", []string{"globex"}, "invoices")
	},

	// queue_link: a crossing along a span link, producer first.
	"queue_link": func(t *testing.T, run *scenarioRun) {
		const producer, consumer = "ded9dd2d80cab9364eb5eaaa3da55cf0", "e429dbad2d9799c98b5aefd36d060c2f"
		if len(run.afterLine) != 2 || len(run.afterLine[0]) != 0 {
			t.Fatalf("want 2 requests and no finding after the producer's, got %d requests", len(run.afterLine))
		}
		expectFindingSet(t, run, "cross_tenant_trace "+consumer)
		f := findingFor(t, run.final, detector.RuleCrossTenantTrace, consumer)
		expectLeakID(t, f, consumer)
		expectTenants(t, f, "acme", "globex")
		// fulfilment consumed the message and wrote shipments for globex.
		expectSeverity(t, f, detector.SeverityCritical)
		expectServices(t, f, "fulfilment")
		if len(f.Edges) != 1 {
			t.Fatalf("want one (link) edge, got %+v", f.Edges)
		}
		e := f.Edges[0]
		expectEdge(t, e,
			edgeWant{"6502e0ae2d37a200", "checkout", "publish orders", "acme"},
			edgeWant{"0ec64e7aa2334b0d", "fulfilment", "process orders", "globex"}, 0)
		if !e.Link || e.From.TraceID.String() != producer || !e.To.TraceID.IsEmpty() {
			t.Errorf("edge link=%v from.trace_id=%s to.trace_id=%s, want a link from the producer's trace %s",
				e.Link, e.From.TraceID, e.To.TraceID, producer)
		}
		expectOutcome(t, e, detector.OutcomeSucceeded)
		if run.stats.LinksUnresolved != 0 {
			t.Errorf("links unresolved = %d", run.stats.LinksUnresolved)
		}
	},

	// ottl_allow: an allow rule written in OTTL.
	"ottl_allow": func(t *testing.T, run *scenarioRun) {
		const ticket, export = "84f542e3c5877fc8d889a8e5451951de", "a75474608eee9c0f01db6a35cd8e1bea"
		// GET /support/tickets/{id} matches allow.conditions[0]: nothing,
		// not even a withdrawn version. POST /exports/tickets does not.
		expectFindingSet(t, run, "cross_tenant_trace "+export)
		expectNoVersionFor(t, run, ticket)
		f := findingFor(t, run.final, detector.RuleCrossTenantTrace, export)
		expectLeakID(t, f, export)
		expectTenants(t, f, "acme", "globex")
		expectServices(t, f, "accounts-svc", "support-console", "tickets-svc")
		// The console's root has no tenant: two tenants under it, no edge.
		expectSeverity(t, f, detector.SeverityHigh)
		// It is the condition that exempts the ticket trace: without it,
		// both traces are crossings.
		cfg := scenarioConfig(t)
		cfg.Allow.Conditions = nil
		open := runScenario(t, cfg, readScenario(t, filepath.Join(scenarioDir, "ottl_allow.json")))
		if got := findingKeys(open.final); !slices.Equal(got, []string{
			"cross_tenant_trace " + ticket + " acme,globex",
			"cross_tenant_trace " + export + " acme,globex",
		}) {
			t.Errorf("ottl_allow.json without allow.conditions: want both traces as crossings, got %q", got)
		}
	},

	// missing_tenant: coverage of tenant-aware services, one finding per
	// service and span name per window.
	"missing_tenant": func(t *testing.T, run *scenarioRun) {
		const acmeOrder, globexOrder, reconcile = "0d39cc4f2ec325ea3dc9c622373186ac", "27a56e466c01fc6074d712ca1dfe1d26", "01e0910d6e7a41e7fc4ebd5daf3ee8ac"
		// orders-svc's GET /orders/{id} without tenant in acme's request,
		// then again in globex's (suppressed: same route, same window), and
		// its reconcile job: two findings.
		expectFindingSet(t, run, "missing_tenant "+acmeOrder, "missing_tenant "+reconcile)
		if run.stats.Suppressed != 1 {
			t.Errorf("suppressed = %d, want 1 (globex's GET /orders/{id})", run.stats.Suppressed)
		}
		for _, w := range []struct{ trace, span, name string }{
			{acmeOrder, "ebfd72308cccc583", "GET /orders/{id}"},
			{reconcile, "938e9edfbd76de32", "reconcile payments"},
		} {
			f := findingFor(t, run.final, detector.RuleMissingTenant, w.trace)
			expectSeverity(t, f, detector.SeverityMedium)
			if f.Status != detector.StatusClosed {
				t.Errorf("%s: status %s, want closed (a per-service finding has one version)", w.name, f.Status)
			}
			expectServices(t, f, "orders-svc")
			if len(f.Spans) != 1 || f.Spans[0].SpanID.String() != w.span || f.Spans[0].Name != w.name || f.Spans[0].Tenant != "" {
				t.Errorf("%s: evidence %+v, want span %s without tenant", w.name, f.Spans, w.span)
			}
			// Named by service, span name and window, not by trace.
			if f.LeakID == detector.LeakID(f.TraceID, detector.RuleMissingTenant) {
				t.Errorf("%s: leak id is the trace's; want one per service, span name and window", w.name)
			}
		}
		if c := run.coverage["orders-svc"]; c.Spans != 5 || c.WithoutTenant != 3 {
			t.Errorf("orders-svc coverage = %+v, want 5 spans, 3 without tenant", c)
		}
		expectNoVersionFor(t, run, globexOrder)
	},

	// late_span: spans arriving after their trace closed.
	"late_span": func(t *testing.T, run *scenarioRun) {
		const report, payment = "7cfa6453b4872860d085cf695069e049", "1935e459b51d5342338c6597b7035895"
		if len(run.afterLine) != 3 {
			t.Fatalf("want 3 steps (request, advance, late request), got %d", len(run.afterLine))
		}
		// Line 1: acme's report served by reports-svc for globex: a crossing, open.
		if got := findingKeys(run.afterLine[0]); !slices.Equal(got, []string{"cross_tenant_trace " + report + " acme,globex"}) {
			t.Fatalf("after line 1: %q", got)
		}
		first := run.afterLine[0][0]
		expectLeakID(t, first, report)
		// Line 2 ({"advance":"90s"}): the idle window passed, the sweep closed it.
		if len(run.afterLine[1]) != 1 || run.afterLine[1][0].LeakID != first.LeakID || run.afterLine[1][0].Status != detector.StatusClosed {
			t.Fatalf("after the advance: want %s closed, got %q", first.LeakID, findingKeys(run.afterLine[1]))
		}
		closed := run.afterLine[1][0]
		// Line 3: the late SELECT of initech's rows reopens the same finding:
		// same leak id, a newer version, not new, with the tenants and the
		// edge said before the close.
		var reopened detector.Finding
		for _, f := range run.afterLine[2] {
			if f.TraceID.String() == report {
				reopened = f
			}
		}
		if reopened.LeakID != first.LeakID || reopened.Version <= closed.Version || reopened.Status != detector.StatusOpen || reopened.New {
			t.Errorf("late span: want a newer open version of %s continuing it (New=false), got %s v%d %s New=%v",
				first.LeakID, reopened.LeakID, reopened.Version, reopened.Status, reopened.New)
		}
		if !reopened.DetectedAt.Equal(first.DetectedAt) {
			t.Errorf("late version detected_at %s, want the first version's %s", reopened.DetectedAt, first.DetectedAt)
		}
		// Every version of the report's finding, in order.
		var statuses []detector.Status
		for _, f := range run.all {
			if f.LeakID == first.LeakID {
				statuses = append(statuses, f.Status)
			}
		}
		if want := []detector.Status{detector.StatusOpen, detector.StatusClosed, detector.StatusOpen, detector.StatusClosed}; !slices.Equal(statuses, want) {
			t.Errorf("versions of %s: %q, want %q", first.LeakID, statuses, want)
		}

		expectFindingSet(t, run, "cross_tenant_trace "+payment, "cross_tenant_trace "+report)
		f := findingFor(t, run.final, detector.RuleCrossTenantTrace, report)
		if f.LeakID != first.LeakID {
			t.Errorf("final leak id %s, want %s (the finding before the close)", f.LeakID, first.LeakID)
		}
		expectTenants(t, f, "acme", "globex", "initech")
		expectServices(t, f, "gateway", "reports-svc")
		if f.SpanCount != 4 {
			t.Errorf("span_count = %d, want 4 (3 before the close, 1 late)", f.SpanCount)
		}
		// The edge said before the close is kept, and the late span finds
		// its own: its parent (reports-svc's globex span) is one of the
		// spans the closed trace kept, which come back with the late span.
		// So the late version says what the trace seen whole says: globex →
		// initech too, critical (SELECT report_rows reads initech's rows).
		// The same holds for the payment trace below.
		if len(f.Edges) != 2 {
			t.Fatalf("want the edge found before the close and the late span's, got %d edges", len(f.Edges))
		}
		expectEdge(t, f.Edges[0],
			edgeWant{"d71544edba40f308", "gateway", "GET /reports/{id}", "acme"},
			edgeWant{"231a2065d42e117c", "reports-svc", "GET /reports/{id}", "globex"}, 1)
		expectEdge(t, f.Edges[1],
			edgeWant{"231a2065d42e117c", "reports-svc", "GET /reports/{id}", "globex"},
			edgeWant{"01108498113b6e52", "reports-svc", "SELECT report_rows", "initech"}, 0)
		if f.Severity != detector.SeverityCritical {
			t.Errorf("severity %s, want critical, as seen whole", f.Severity)
		}

		// acme's payment was clean when it closed; ledger-svc's late write
		// for globex makes it a crossing, under the leak id any collector
		// (or this one, seeing the trace whole) gives it.
		p := findingFor(t, run.final, detector.RuleCrossTenantTrace, payment)
		expectLeakID(t, p, payment)
		expectTenants(t, p, "acme", "globex")
		whole := runScenario(t, scenarioConfig(t), withoutAdvances(readScenario(t, filepath.Join(scenarioDir, "late_span.jsonl"))))
		w := findingFor(t, whole.final, detector.RuleCrossTenantTrace, payment)
		if w.LeakID != p.LeakID || !slices.Equal(w.Tenants, p.Tenants) || w.Severity != p.Severity || len(p.Edges) != 1 || len(w.Edges) != 1 {
			t.Errorf("seen whole: %s %q %s %d edges; late: %s %q %s %d edges; want the same leak id, tenants, severity and one edge",
				w.LeakID, w.Tenants, w.Severity, len(w.Edges), p.LeakID, p.Tenants, p.Severity, len(p.Edges))
		} else {
			expectEdge(t, p.Edges[0],
				edgeWant{"9acee72db94d5e76", "billing-api", "POST /invoices/{id}/pay", "acme"},
				edgeWant{"5a7b496b95f82440", "ledger-svc", "INSERT ledger_entries", "globex"}, 0)
		}
		if wr := findingFor(t, whole.final, detector.RuleCrossTenantTrace, report); wr.LeakID != f.LeakID || wr.Severity != f.Severity {
			t.Errorf("report seen whole: leak id %s %s, late: %s %s", wr.LeakID, wr.Severity, f.LeakID, f.Severity)
		}

		if run.stats.SpansLate != 2 {
			t.Errorf("spans late = %d, want 2", run.stats.SpansLate)
		}
	},
}

func expectNoFinding(t *testing.T, run *scenarioRun) {
	t.Helper()
	if len(run.all) != 0 {
		t.Errorf("want no finding at all, got %d versions: %q", len(run.all), findingKeys(latestFindings(run.all)))
	}
}

// expectOne checks that the scenario ends with exactly one finding, closed,
// with the given rule, trace and (sorted) tenants, and returns it.
func expectOne(t *testing.T, run *scenarioRun, rule detector.Rule, trace string, tenants ...string) detector.Finding {
	t.Helper()
	if len(run.final) != 1 {
		t.Fatalf("want exactly one finding, got %d: %q", len(run.final), findingKeys(run.final))
	}
	f := run.final[0]
	if f.Rule != rule || f.TraceID.String() != trace || !slices.Equal(f.Tenants, tenants) {
		t.Fatalf("finding = %s %s %q, want %s %s %q", f.Rule, f.TraceID, f.Tenants, rule, trace, tenants)
	}
	var tid detector.TraceID
	copy(tid[:], mustHex(t, trace))
	if f.LeakID != detector.LeakID(tid, rule) {
		t.Errorf("leak id %s is not LeakID(trace, rule)", f.LeakID)
	}
	if f.Status != detector.StatusClosed {
		t.Errorf("status after flush = %s, want closed", f.Status)
	}
	// A crossing into the foreign tenant's stored data is critical, other
	// served crossings high; the scenarios say which they expect.
	if f.Severity != detector.SeverityCritical && f.Severity != detector.SeverityHigh {
		t.Errorf("severity = %s, want critical or high for a served %s", f.Severity, rule)
	}
	return f
}

func expectSeverity(t *testing.T, f detector.Finding, want detector.Severity) {
	t.Helper()
	if f.Severity != want {
		t.Errorf("severity = %s (%s), want %s", f.Severity, f.Reason, want)
	}
}

type edgeWant struct{ spanID, service, name, tenant string }

func expectEdge(t *testing.T, e detector.CrossingEdge, from, to edgeWant, hops int) {
	t.Helper()
	got := func(x detector.EdgeEnd) edgeWant { return edgeWant{x.SpanID.String(), x.Service, x.Name, x.Tenant} }
	if got(e.From) != from || got(e.To) != to || e.Hops != hops {
		t.Errorf("edge = %+v → %+v hops %d, want %+v → %+v hops %d", got(e.From), got(e.To), e.Hops, from, to, hops)
	}
}

func expectServices(t *testing.T, f detector.Finding, services ...string) {
	t.Helper()
	if !slices.Equal(f.Services, services) {
		t.Errorf("services = %q, want %q", f.Services, services)
	}
}

func hasEvidenceFor(spans []detector.EvidenceSpan, tenant string) bool {
	return slices.ContainsFunc(spans, func(s detector.EvidenceSpan) bool { return s.Tenant == tenant })
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	var b []byte
	if _, err := fmt.Sscanf(s, "%x", &b); err != nil {
		t.Fatal(err)
	}
	return b
}

// withoutRule is run with the final findings of one rule left out.
func withoutRule(run *scenarioRun, rule detector.Rule) *scenarioRun {
	out := *run
	out.final = slices.DeleteFunc(slices.Clone(run.final), func(f detector.Finding) bool { return f.Rule == rule })
	return &out
}

// withoutAdvances drops a scenario's clock advances: its requests seen
// within one idle window.
func withoutAdvances(steps []scenarioStep) []scenarioStep {
	return slices.DeleteFunc(slices.Clone(steps), func(s scenarioStep) bool { return s.advance > 0 })
}

// expectFindingSet checks the final findings, as "rule trace", exactly.
func expectFindingSet(t *testing.T, run *scenarioRun, want ...string) {
	t.Helper()
	var got []string
	for _, f := range run.final {
		got = append(got, fmt.Sprintf("%s %s", f.Rule, f.TraceID))
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Fatalf("findings = %q, want %q", got, want)
	}
	for _, f := range run.final {
		if f.Status != detector.StatusClosed {
			t.Errorf("%s %s: status after flush = %s, want closed", f.Rule, f.TraceID, f.Status)
		}
	}
}

// expectNoVersionFor checks that no version of any finding, not even one
// later withdrawn, named the trace.
func expectNoVersionFor(t *testing.T, run *scenarioRun, trace string) {
	t.Helper()
	for _, f := range run.all {
		if f.TraceID.String() == trace {
			t.Errorf("trace %s: a %s version (%s) was emitted, want none", trace, f.Rule, f.Status)
		}
	}
}

// findingFor returns the one finding of fs with the rule and trace.
func findingFor(t *testing.T, fs []detector.Finding, rule detector.Rule, trace string) detector.Finding {
	t.Helper()
	var out []detector.Finding
	for _, f := range fs {
		if f.Rule == rule && f.TraceID.String() == trace {
			out = append(out, f)
		}
	}
	if len(out) != 1 {
		t.Fatalf("want one %s finding for trace %s, got %d", rule, trace, len(out))
	}
	return out[0]
}

func expectLeakID(t *testing.T, f detector.Finding, trace string) {
	t.Helper()
	var tid detector.TraceID
	copy(tid[:], mustHex(t, trace))
	if f.LeakID != detector.LeakID(tid, f.Rule) {
		t.Errorf("%s %s: leak id %s is not LeakID(trace, rule)", f.Rule, trace, f.LeakID)
	}
}

func expectTenants(t *testing.T, f detector.Finding, tenants ...string) {
	t.Helper()
	if !slices.Equal(f.Tenants, tenants) {
		t.Errorf("%s %s: tenants = %q, want %q", f.Rule, f.TraceID, f.Tenants, tenants)
	}
}

func expectOutcome(t *testing.T, e detector.CrossingEdge, want string) {
	t.Helper()
	if e.Outcome != want {
		t.Errorf("edge %s → %s: outcome %q, want %q", e.From.SpanID, e.To.SpanID, e.Outcome, want)
	}
}

// expectEvidence checks one evidence span's tenant, the key it came from
// and whether it touched stored data.
func expectEvidence(t *testing.T, f detector.Finding, span, tenant, key string, data bool) {
	t.Helper()
	for _, s := range f.Spans {
		if s.SpanID.String() == span {
			if s.Tenant != tenant || s.TenantKey != key || s.Data != data {
				t.Errorf("evidence span %s: tenant %q under %q, data %v; want %q under %q, data %v",
					span, s.Tenant, s.TenantKey, s.Data, tenant, key, data)
			}
			return
		}
	}
	t.Errorf("no evidence span %s in %+v", span, f.Spans)
}

// expectKeys checks that f lists exactly one key use, on the span.
func expectKeys(t *testing.T, f detector.Finding, span string, want detector.KeyUse) {
	t.Helper()
	if len(f.Keys) != 1 {
		t.Fatalf("%s: want one key use, got %+v", f.TraceID, f.Keys)
	}
	got := f.Keys[0]
	if got.SpanID.String() != span {
		t.Errorf("key use on span %s, want %s", got.SpanID, span)
	}
	got.SpanID = detector.SpanID{}
	if got != want {
		t.Errorf("key use = %+v, want %+v", got, want)
	}
}

// expectUnscoped checks the unscoped_query finding of a trace.
// tenants are the trace's tenants known when the statement was judged.
func expectUnscoped(t *testing.T, run *scenarioRun, trace, span, service, name string, tenants []string, tables ...string) {
	t.Helper()
	f := findingFor(t, run.final, detector.RuleUnscopedQuery, trace)
	expectSeverity(t, f, detector.SeverityHigh)
	expectTenants(t, f, tenants...)
	expectServices(t, f, service)
	if len(f.Queries) != 1 {
		t.Fatalf("%s: want one unscoped statement, got %+v", trace, f.Queries)
	}
	q := f.Queries[0]
	if q.SpanID.String() != span || q.Service != service || q.Name != name || !slices.Equal(q.Tables, tables) {
		t.Errorf("unscoped statement = %s %s %q %q, want %s %s %q %q", q.SpanID, q.Service, q.Name, q.Tables, span, service, name, tables)
	}
	if f.LeakID == detector.LeakID(f.TraceID, detector.RuleUnscopedQuery) {
		t.Errorf("%s: leak id is the trace's; want one per service, statement and window", trace)
	}
}
