package main

// The end-to-end run of the deeper rules (TestE2E's detection_depth):
// derivations, bindings, unscoped queries and coverage through the built
// collector.

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/internal/demoapp"
	"github.com/tenantguard/tenantguard/store"
)

// detectionDepthYAML adds to the processor what the tenant-scoped routes
// need: the tenant in the URL path (inventory-svc's server span has no
// tenant.id, so only this derivation names its tenant) and the stock
// table's tenant column checked in every statement.
const detectionDepthYAML = `tenant_derivations:
  - attribute: url.path
    regex: '^/t/(?P<tenant>[^/]+)/'
unscoped_query:
  tables: [stock]
`

// testDetectionDepth drives the demo shop's tenant-scoped route
// (GET /t/{tenant}/inventory) through one collector with the url.path
// derivation and the unscoped_query rule on, from two shops: one whose
// inventory-svc filters by tenant and one that forgot to.
//
//	(a) acme's token against globex's URL, filtering inventory-svc: refused
//	    with 403. A low blocked_attempt, a low tenant_mismatch, no
//	    cross_tenant_trace and no Slack message.
//	(b) the same against the forgetful inventory-svc: globex's row served.
//	    A critical cross_tenant_trace, a high tenant_mismatch and a high
//	    unscoped_query on inventory-svc `SELECT stock`.
//	(c) tenants on their own URLs (one of them a 404): no finding.
func testDetectionDepth(t *testing.T) {
	t.Parallel()
	began := time.Now()
	c := startCollector(t, withProcessorYAML(detectionDepthYAML))
	t.Logf("collector ready in %s", c.started.Round(time.Millisecond))
	filtering := startDemo(t, c, false)
	forgetful := startDemo(t, c, true)
	ctx := context.Background()

	call := func(d *demo, tenant, owner, item string, status int) (string, *demoapp.Item) {
		t.Helper()
		resp, err := d.client.TenantInventory(ctx, tenant, owner, item)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != status {
			t.Fatalf("token %s on /t/%s/inventory?item=%s: status %d, want %d", tenant, owner, item, resp.StatusCode, status)
		}
		if !resp.TraceID.IsValid() {
			t.Fatalf("token %s on /t/%s/inventory: the gateway sent no trace id", tenant, owner)
		}
		return resp.TraceID.String(), resp.Item
	}

	// (c) Clean traffic with every feature on: the derived tenant agrees
	// with the token's, statements are scoped. acme asking its own URL for
	// globex's item is a 404 that touched no globex row.
	clean := map[string]bool{}
	for _, cl := range []struct {
		tenant, item string
		status       int
	}{
		{demoapp.TenantAcme, demoapp.ItemAcmeAnvil, http.StatusOK},
		{demoapp.TenantGlobex, demoapp.ItemGlobexGear, http.StatusOK},
		{demoapp.TenantAcme, demoapp.ItemGlobexWidget, http.StatusNotFound},
	} {
		trace, it := call(filtering, cl.tenant, cl.tenant, cl.item, cl.status)
		if it != nil && it.Tenant != cl.tenant {
			t.Fatalf("%s reading %s on its own URL got %s's row", cl.tenant, cl.item, it.Tenant)
		}
		clean[trace] = true
	}
	// (a) The IDOR attempt against the filtering inventory-svc.
	traceA, _ := call(filtering, demoapp.TenantAcme, demoapp.TenantGlobex, demoapp.ItemGlobexWidget, http.StatusForbidden)
	// Gateway first: the gateway span (with the 403 it passed on) is judged
	// before inventory-svc's refusal arrives.
	filtering.flush(t, true)
	// (b) The same request against the forgetful inventory-svc.
	traceB, it := call(forgetful, demoapp.TenantAcme, demoapp.TenantGlobex, demoapp.ItemGlobexWidget, http.StatusOK)
	if it == nil || it.Tenant != demoapp.TenantGlobex {
		t.Fatalf("forgetful inventory on /t/globex/: got %+v, want globex's row served to acme", it)
	}
	forgetful.flush(t, false)

	gwA := filtering.spanNamed(t, traceA, demoapp.SpanTenantGateway)
	stockA := filtering.spanNamed(t, traceA, demoapp.SpanTenantStock)
	gwB := forgetful.spanNamed(t, traceB, demoapp.SpanTenantGateway)
	stockB := forgetful.spanNamed(t, traceB, demoapp.SpanTenantStock)
	selB := forgetful.spanNamed(t, traceB, demoapp.SpanSelect)

	// Barrier: a flush returns once the collector has accepted the spans,
	// and the processor judges them before accepting; so every finding of
	// (a) and (c) was queued before (b) was even sent. The evidence queue is
	// first in, first out, so once (b)'s findings are in the journal, (a)'s
	// and (c)'s are too.
	byTrace := func(all []store.Evidence) map[string]map[string]store.Evidence {
		out := map[string]map[string]store.Evidence{}
		for _, f := range all {
			if out[f.TraceID] == nil {
				out[f.TraceID] = map[string]store.Evidence{}
			}
			if _, dup := out[f.TraceID][f.Rule]; dup {
				t.Errorf("two %s findings for trace %s", f.Rule, f.TraceID)
			}
			out[f.TraceID][f.Rule] = f
		}
		return out
	}
	var all []store.Evidence
	eventually(t, 10*time.Second, "the forgetful trace's findings in the journal", func() (bool, string) {
		all = c.findings(t)
		got := byTrace(all)[traceB]
		for _, r := range []string{ruleCross, ruleMismatch, ruleUnscoped} {
			if _, ok := got[r]; !ok {
				return false, fmt.Sprintf("no %s finding for %s yet (%d findings in all)", r, traceB, len(all))
			}
		}
		return true, ""
	})
	detected := time.Since(began)
	found := byTrace(all)
	rulesOf := func(trace string) []string {
		var rs []string
		for r := range found[trace] {
			rs = append(rs, r)
		}
		slices.Sort(rs)
		return rs
	}
	acmeGlobex := []string{demoapp.TenantAcme, demoapp.TenantGlobex}
	bothServices := []string{demoapp.ServiceGateway, demoapp.ServiceInventory}
	gwEnd := func(s canonSpan) store.EdgeEnd {
		return store.EdgeEnd{SpanID: s.SpanID, Service: demoapp.ServiceGateway, Span: demoapp.SpanTenantGateway, Tenant: demoapp.TenantAcme}
	}
	// inventory-svc's server span is globex only through the derivation.
	stockEnd := func(s canonSpan) store.EdgeEnd {
		return store.EdgeEnd{SpanID: s.SpanID, Service: demoapp.ServiceInventory, Span: demoapp.SpanTenantStock, Tenant: demoapp.TenantGlobex}
	}
	wantMismatch := func(gw canonSpan) []store.Mismatch {
		return []store.Mismatch{{SpanID: gw.SpanID, Service: demoapp.ServiceGateway, Span: demoapp.SpanTenantGateway,
			Values: []store.TenantSource{{Key: "tenant.id", Tenant: demoapp.TenantAcme}, {Key: "url.path", Tenant: demoapp.TenantGlobex}}}}
	}

	// (a) Refused: the crossing gateway (acme) → inventory-svc (globex,
	// derived) carries inventory-svc's 403, so it is a blocked attempt, and
	// with no succeeded crossing there is no cross_tenant_trace at all.
	if got := rulesOf(traceA); !slices.Equal(got, []string{ruleBlocked, ruleMismatch}) {
		t.Errorf("refused IDOR trace %s: findings %v, want [%s %s]", traceA, got, ruleBlocked, ruleMismatch)
	}
	if f, ok := found[traceA][ruleBlocked]; ok {
		if f.Severity != "low" || !slices.Equal(f.Tenants, acmeGlobex) || !slices.Equal(f.Services, bothServices) {
			t.Errorf("blocked_attempt: severity %q tenants %v services %v, want low %v %v", f.Severity, f.Tenants, f.Services, acmeGlobex, bothServices)
		}
		want := []store.CrossingEdge{{From: gwEnd(gwA), To: stockEnd(stockA), Hops: 0, Outcome: "blocked"}}
		if !slices.Equal(f.CrossingEdges, want) {
			t.Errorf("blocked_attempt edges %+v,\nwant %+v", f.CrossingEdges, want)
		}
	}
	// The gateway span itself holds both tenants: tenant.id from acme's
	// token, globex derived from its url.path (/t/globex/inventory). That is
	// a tenant_mismatch; its severity is judged on the offending span's own
	// outcome, and the gateway answered the client the 403 inventory-svc
	// gave it (recorded on its span), so it is low: the request was refused.
	if f, ok := found[traceA][ruleMismatch]; ok {
		if f.Severity != "low" || !slices.Equal(f.Tenants, acmeGlobex) {
			t.Errorf("refused trace's tenant_mismatch: severity %q tenants %v, want low %v (%s)", f.Severity, f.Tenants, acmeGlobex, f.Reason)
		}
		if !reflect.DeepEqual(f.Mismatches, wantMismatch(gwA)) {
			t.Errorf("tenant_mismatch mismatches %+v,\nwant %+v", f.Mismatches, wantMismatch(gwA))
		}
	}

	// (b) Served: the same crossing succeeded. Its far end is inventory-svc's
	// server span (globex by derivation), not the SELECT: the SELECT is
	// globex too, so it is no crossing from its parent. The severity is
	// critical because a data-bearing span of globex (the SELECT) succeeded.
	if got := rulesOf(traceB); !slices.Equal(got, []string{ruleCross, ruleMismatch, ruleUnscoped}) {
		t.Errorf("served IDOR trace %s: findings %v, want [%s %s %s]", traceB, got, ruleCross, ruleMismatch, ruleUnscoped)
	}
	cross := found[traceB][ruleCross]
	if cross.Severity != "critical" || !slices.Equal(cross.Tenants, acmeGlobex) || !slices.Equal(cross.Services, bothServices) {
		t.Errorf("cross_tenant_trace: severity %q tenants %v services %v, want critical %v %v", cross.Severity, cross.Tenants, cross.Services, acmeGlobex, bothServices)
	}
	if !strings.Contains(cross.Reason, demoapp.SpanSelect) {
		t.Errorf("cross_tenant_trace reason %q does not name the data-bearing %q", cross.Reason, demoapp.SpanSelect)
	}
	if want := []store.CrossingEdge{{From: gwEnd(gwB), To: stockEnd(stockB), Hops: 0, Outcome: "succeeded"}}; !slices.Equal(cross.CrossingEdges, want) {
		t.Errorf("cross_tenant_trace edges %+v,\nwant %+v", cross.CrossingEdges, want)
	}
	// The same mismatch on the gateway span, but the gateway answered 200:
	// high.
	if f := found[traceB][ruleMismatch]; f.Severity != "high" || !reflect.DeepEqual(f.Mismatches, wantMismatch(gwB)) {
		t.Errorf("served trace's tenant_mismatch: severity %q mismatches %+v, want high %+v", f.Severity, f.Mismatches, wantMismatch(gwB))
	}
	// The forgetful statement has no tenant_id predicate. inventory-svc's
	// spans reached the collector first (flush order), so when the SELECT
	// was judged the trace held globex only.
	unscoped := found[traceB][ruleUnscoped]
	wantQueries := []store.Query{{SpanID: selB.SpanID, Service: demoapp.ServiceInventory, Span: demoapp.SpanSelect, Tables: []string{"stock"}}}
	if unscoped.Severity != "high" || !slices.Equal(unscoped.Services, []string{demoapp.ServiceInventory}) ||
		!slices.Equal(unscoped.Tenants, []string{demoapp.TenantGlobex}) || !reflect.DeepEqual(unscoped.Queries, wantQueries) {
		t.Errorf("unscoped_query: severity %q services %v tenants %v queries %+v,\nwant high [inventory-svc] [globex] %+v",
			unscoped.Severity, unscoped.Services, unscoped.Tenants, unscoped.Queries, wantQueries)
	}

	// (c) and nothing else.
	for _, f := range all {
		if clean[f.TraceID] {
			t.Errorf("clean traffic produced a finding: %s %s %s tenants=%v edges=%+v", f.Severity, f.Rule, f.TraceID, f.Tenants, f.CrossingEdges)
		} else if f.TraceID != traceA && f.TraceID != traceB {
			t.Errorf("finding for an unknown trace: %s %s %s", f.Severity, f.Rule, f.TraceID)
		}
	}
	if len(all) != 5 {
		t.Errorf("journal holds %d findings, want 5", len(all))
	}

	// What an analyst sees, rule by rule.
	leaksByRule := func(rule string, want int) []leakJSON {
		t.Helper()
		lines := c.leaks(t, "--rule", rule)
		var out []leakJSON
		for _, l := range lines {
			out = append(out, parseLeakLine(t, l))
		}
		if len(out) != want {
			t.Errorf("leaks list --rule %s: %d lines, want %d:\n%s", rule, len(out), want, strings.Join(lines, "\n"))
			return nil
		}
		return out
	}
	jsonEnd := func(e store.EdgeEnd) edgeEndJSON { return edgeEndJSON{e.SpanID, e.Service, e.Span, e.Tenant} }
	if ls := leaksByRule(ruleBlocked, 1); ls != nil {
		l := ls[0]
		if l.TraceID != traceA || l.Severity != "low" || len(l.CrossingEdges) != 1 ||
			l.CrossingEdges[0].From != jsonEnd(gwEnd(gwA)) || l.CrossingEdges[0].To != jsonEnd(stockEnd(stockA)) ||
			l.CrossingEdges[0].Outcome != "blocked" {
			t.Errorf("leaks list --rule blocked_attempt: %+v", l)
		}
	}
	if ls := leaksByRule(ruleCross, 1); ls != nil {
		l := ls[0]
		if l.TraceID != traceB || l.Severity != "critical" || len(l.CrossingEdges) != 1 ||
			l.CrossingEdges[0].To != jsonEnd(stockEnd(stockB)) || l.CrossingEdges[0].Outcome != "succeeded" {
			t.Errorf("leaks list --rule cross_tenant_trace: %+v", l)
		}
	}
	if ls := leaksByRule(ruleUnscoped, 1); ls != nil {
		l := ls[0]
		if l.TraceID != traceB || l.Severity != "high" || len(l.Queries) != 1 || l.Queries[0].Span != demoapp.SpanSelect ||
			l.Queries[0].Service != demoapp.ServiceInventory || !slices.Equal(l.Queries[0].Tables, []string{"stock"}) {
			t.Errorf("leaks list --rule unscoped_query: %+v", l)
		}
	}
	if ls := leaksByRule(ruleMismatch, 2); ls != nil {
		sev := map[string]string{}
		for _, l := range ls {
			sev[l.TraceID] = l.Severity
			if len(l.Mismatches) != 1 || len(l.Mismatches[0].Values) != 2 || l.Mismatches[0].Values[1].Key != "url.path" {
				t.Errorf("leaks list --rule tenant_mismatch: mismatches %+v", l.Mismatches)
			}
		}
		if sev[traceA] != "low" || sev[traceB] != "high" {
			t.Errorf("leaks list --rule tenant_mismatch: severities %v, want %s low and %s high", sev, traceA, traceB)
		}
	}
	for _, r := range []string{"foreign_signing_key", "missing_tenant"} {
		leaksByRule(r, 0)
	}

	// On-call: (b)'s three findings page (min_severity high); (a)'s low
	// ones do not. The notifier drops a low finding when it is handed it,
	// before (b)'s are queued, so once (b)'s messages are in, none for (a)
	// can follow.
	paged := []string{cross.LeakID, found[traceB][ruleMismatch].LeakID, unscoped.LeakID}
	var msgs []string
	eventually(t, 10*time.Second, "Slack messages for the served trace's findings", func() (bool, string) {
		msgs = c.slack.messages()
		for _, id := range paged {
			if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, id) }) {
				return false, fmt.Sprintf("%d messages, none yet for leak %s", len(msgs), id)
			}
		}
		return true, ""
	})
	if len(msgs) != len(paged) {
		t.Errorf("Slack got %d messages, want %d (one per finding of high severity or more):\n%s", len(msgs), len(paged), strings.Join(msgs, "\n"))
	}
	quiet := []string{traceA, found[traceA][ruleBlocked].LeakID, found[traceA][ruleMismatch].LeakID}
	for _, m := range msgs {
		for _, q := range quiet {
			if q != "" && strings.Contains(m, q) {
				t.Errorf("Slack paged about the refused attempt (%s):\n%s", q, m)
			}
		}
	}

	// SREs: new findings by rule and severity.
	m := c.scrapeMetrics(t)
	total := 0.0
	for k, v := range m {
		if strings.HasPrefix(k, "tenantguard_findings_total{") {
			total += v
		}
	}
	if total != 5 {
		t.Errorf("/metrics tenantguard_findings_total adds up to %v, want 5", total)
	}
	sent := append(filtering.sentSpans(), forgetful.sentSpans()...)
	for key, want := range map[string]float64{
		"tenantguard_findings_total{processor=tenantguard,rule=blocked_attempt,severity=low}":         1,
		"tenantguard_findings_total{processor=tenantguard,rule=tenant_mismatch,severity=low}":         1,
		"tenantguard_findings_total{processor=tenantguard,rule=tenant_mismatch,severity=high}":        1,
		"tenantguard_findings_total{processor=tenantguard,rule=cross_tenant_trace,severity=critical}": 1,
		"tenantguard_findings_total{processor=tenantguard,rule=unscoped_query,severity=high}":         1,
		"tenantguard_spans_total{processor=tenantguard}":                                              float64(len(sent)),
		// Every inventory-svc span has a tenant now: the server spans' derived from url.path.
		"tenantguard_spans_without_tenant_total{processor=tenantguard,service=inventory-svc}":       0,
		"tenantguard_alert_deliveries_total{notifier=slack,processor=tenantguard,result=delivered}": float64(len(paged)),
	} {
		if got := m[key]; got != want {
			t.Errorf("/metrics %s = %v, want %v", key, got, want)
		}
	}

	assertDelivered(t, c.sink, sent)
	c.assertDebugSpans(t, len(sent))
	t.Logf("findings journaled %s after start, all assertions done in %s",
		detected.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// testRefusedAttemptsSplitByTheIdleWindow: 150 IDOR attempts against the
// filtering inventory-svc (acme's token on globex's URL, refused), whose
// traces the idle window (2s) splits: one service's exporter flushes its
// spans (inventory-svc's, or the gateway's if gatewayFirst), the traces
// close, and only then does the other's flush, late spans to every trace.
// Each is a blocked attempt with its refused edge, as it is when the trace
// arrives whole; before the closed part's spans came back with the late
// spans, every one of them was a cross_tenant_trace (a crossing that
// succeeded, no edge known).
func testRefusedAttemptsSplitByTheIdleWindow(t *testing.T, gatewayFirst bool) {
	t.Parallel()
	c := startCollector(t, withProcessorYAML(detectionDepthYAML))
	d := startDemo(t, c, false)
	ctx := context.Background()
	const attempts = 150
	traces := map[string]bool{}
	for range attempts {
		resp, err := d.client.TenantInventory(ctx, demoapp.TenantAcme, demoapp.TenantGlobex, demoapp.ItemGlobexWidget)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("acme's token on /t/globex/inventory: status %d, want 403", resp.StatusCode)
		}
		traces[resp.TraceID.String()] = true
	}
	flushed := func(tp interface{ ForceFlush(context.Context) error }) {
		t.Helper()
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := tp.ForceFlush(fctx); err != nil {
			t.Fatal(err)
		}
	}
	first, late := d.invTP, d.gwTP
	if gatewayFirst {
		first, late = late, first
	}
	flushed(first)
	c.awaitTracesClosed(t, attempts, "the first parts of the traces")
	flushed(late)

	var findings []store.Evidence
	eventually(t, 20*time.Second, "a closed blocked attempt for every trace", func() (bool, string) {
		findings = c.findings(t)
		n := 0
		for _, e := range findings {
			if traces[e.TraceID] && e.Rule == ruleBlocked && e.Status == "closed" {
				n++
			}
		}
		return n == attempts, fmt.Sprintf("%d of %d", n, attempts)
	})
	if n := c.metricSum(t, "tenantguard_spans_late_total"); n < attempts {
		t.Errorf("%v late spans, want at least one a trace (%d)", n, attempts)
	}
	// A trace's closing versions are written together: a crossing finding
	// raised for it is in the journal by now.
	crossings := 0
	for _, e := range findings {
		if !traces[e.TraceID] {
			continue
		}
		switch e.Rule {
		case ruleCross:
			crossings++
		case ruleBlocked:
			if len(e.CrossingEdges) != 1 || e.CrossingEdges[0].Outcome != "blocked" ||
				e.CrossingEdges[0].From.Tenant != demoapp.TenantAcme || e.CrossingEdges[0].To.Tenant != demoapp.TenantGlobex {
				t.Fatalf("blocked attempt %s: edges %+v, want acme → globex, blocked", e.TraceID, e.CrossingEdges)
			}
		}
	}
	if crossings != 0 {
		t.Errorf("%d of %d refused attempts reported as crossings that succeeded", crossings, attempts)
	}
}
