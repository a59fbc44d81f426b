package main

// End-to-end: the real tenantguard binary, the instrumented demo shop
// exporting to it over OTLP/gRPC and OTLP/HTTP, the evidence journal, the
// `leaks list` command, and an OTLP sink proving spans pass through
// unchanged. Each subtest runs its own collector, in parallel.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tenantguard/tenantguard/internal/demoapp"
	"github.com/tenantguard/tenantguard/processor"
	"github.com/tenantguard/tenantguard/store"
)

const (
	ruleCross    = "cross_tenant_trace"
	ruleBlocked  = "blocked_attempt"
	ruleMismatch = "tenant_mismatch"
	ruleUnscoped = "unscoped_query"
)

func TestE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the collector binary")
	}
	start := time.Now()
	tenantguardBinary(t) // build before the parallel subtests start their clocks
	t.Logf("built %s in %s", build.bin, build.took.Round(time.Millisecond))
	t.Run("clean_traffic", testCleanTraffic)
	// The leaking trace's halves reach the collector in separate requests
	// over different protocols; either may arrive first.
	t.Run("forgetful_inventory/inventory_first", func(t *testing.T) { testForgetfulInventory(t, false) })
	t.Run("forgetful_inventory/gateway_first", func(t *testing.T) { testForgetfulInventory(t, true) })
	t.Run("testdata_scenario", testTestdataScenario)
	t.Run("detection_depth", testDetectionDepth)
	t.Cleanup(func() { t.Logf("TestE2E total %s", time.Since(start).Round(time.Millisecond)) })
}

// testCleanTraffic: tenants reading their own items, and a tenant asking for
// a foreign item with the filter on (404, no foreign rows touched), yield no
// finding; every span reaches downstream unchanged.
func testCleanTraffic(t *testing.T) {
	t.Parallel()
	began := time.Now()
	c := startCollector(t)
	t.Logf("collector ready in %s", c.started.Round(time.Millisecond))
	d := startDemo(t, c, false)
	ctx := context.Background()

	calls := []struct {
		tenant, item string
		status       int
	}{
		{demoapp.TenantAcme, demoapp.ItemAcmeAnvil, http.StatusOK},
		{demoapp.TenantGlobex, demoapp.ItemGlobexWidget, http.StatusOK},
		{demoapp.TenantAcme, demoapp.ItemGlobexWidget, http.StatusNotFound},
		{demoapp.TenantGlobex, demoapp.ItemAcmeRocket, http.StatusNotFound},
	}
	for _, call := range calls {
		resp, err := d.client.Inventory(ctx, call.tenant, call.item)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != call.status {
			t.Fatalf("%s reading %s: status %d, want %d", call.tenant, call.item, resp.StatusCode, call.status)
		}
		if resp.Item != nil && resp.Item.Tenant != call.tenant {
			t.Fatalf("%s reading %s got %s's row", call.tenant, call.item, resp.Item.Tenant)
		}
	}
	d.flush(t, false)
	sent := d.sentSpans()
	if len(sent) != 3*len(calls) {
		t.Fatalf("demo app ended %d spans, want %d", len(sent), 3*len(calls))
	}
	// The spans reaching the sink proves the processor has seen them all:
	// detection runs inline, before the request moves downstream.
	assertDelivered(t, c.sink, sent)

	// Barrier: a deliberately leaking canary trace sent after the demo
	// traffic. Its finding is queued after any finding the demo traffic
	// caused, and the evidence worker writes queued findings in one append,
	// so once the canary is in the journal, anything else would be too.
	canary := canaryTraces()
	canaryID := canary.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).TraceID().String()
	c.postOTLP(t, canary)
	eventually(t, 10*time.Second, "the canary finding in the journal", func() (bool, string) {
		for _, f := range c.findings(t) {
			if f.TraceID == canaryID {
				return true, ""
			}
		}
		return false, "canary not journaled yet"
	})
	for _, f := range c.findings(t) {
		if f.TraceID != canaryID {
			t.Errorf("clean traffic produced a finding: %s %s tenants=%v edges=%+v", f.Rule, f.TraceID, f.Tenants, f.CrossingEdges)
		}
	}
	for _, l := range c.leaks(t, "--tenant", demoapp.TenantAcme) {
		t.Errorf("leaks list --tenant acme lists %s", l)
	}
	c.assertDebugSpans(t, len(sent)+canary.SpanCount())
	t.Logf("clean_traffic assertions done in %s", time.Since(began).Round(time.Millisecond))
}

// canaryTraces is one parent→child trace crossing from tenant canary-a to
// canary-b, sent with plain net/http.
func canaryTraces() ptrace.Traces {
	tid := pcommon.TraceID([16]byte{0xca, 0x4a, 0x21, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, byte(time.Now().UnixNano()), 0, 0, 1})
	return crossingTrace(tid)
}

// crossingTrace is one request holding a whole leaking trace: a parent span
// of tenant canary-a and its child of tenant canary-b, service "canary".
func crossingTrace(tid pcommon.TraceID) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "canary")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	now := time.Now()
	parent := spans.AppendEmpty()
	parent.SetTraceID(tid)
	parent.SetSpanID(pcommon.SpanID([8]byte{1, 1, 1, 1, 1, 1, 1, 1}))
	parent.SetName("canary parent")
	parent.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
	parent.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
	parent.Attributes().PutStr("tenant.id", "canary-a")
	child := spans.AppendEmpty()
	child.SetTraceID(tid)
	child.SetSpanID(pcommon.SpanID([8]byte{2, 2, 2, 2, 2, 2, 2, 2}))
	child.SetParentSpanID(parent.SpanID())
	child.SetName("canary child")
	child.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
	child.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
	child.Attributes().PutStr("tenant.id", "canary-b")
	return td
}

// leakJSON is `leaks list --json` as analysts' tooling reads it; declared
// here rather than reusing store.Evidence so a renamed field breaks the test.
type leakJSON struct {
	LeakID        string    `json:"leak_id"`
	TraceID       string    `json:"trace_id"`
	Rule          string    `json:"rule"`
	Severity      string    `json:"severity"`
	Status        string    `json:"status"`
	Tenants       []string  `json:"tenants"`
	Services      []string  `json:"services"`
	SpanCount     int       `json:"span_count"`
	FirstSeen     time.Time `json:"first_seen"`
	LastSeen      time.Time `json:"last_seen"`
	Collector     string    `json:"collector"`
	CrossingEdges []struct {
		From    edgeEndJSON `json:"from"`
		To      edgeEndJSON `json:"to"`
		Hops    int         `json:"hops"`
		Outcome string      `json:"outcome"`
	} `json:"crossing_edges"`
	Mismatches []struct {
		SpanID  string `json:"span_id"`
		Service string `json:"service"`
		Span    string `json:"span"`
		Values  []struct {
			Key    string `json:"key"`
			Tenant string `json:"tenant"`
		} `json:"values"`
	} `json:"mismatches"`
	Queries []struct {
		SpanID  string   `json:"span_id"`
		Service string   `json:"service"`
		Span    string   `json:"span"`
		Tables  []string `json:"tables"`
	} `json:"queries"`
}

type edgeEndJSON struct {
	SpanID  string `json:"span_id"`
	Service string `json:"service"`
	Span    string `json:"span"`
	Tenant  string `json:"tenant"`
}

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

func parseLeakLine(t *testing.T, line string) leakJSON {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &raw); err != nil {
		t.Fatalf("leaks list printed a line that is not a JSON object: %v\n%s", err, line)
	}
	for _, k := range []string{"leak_id", "trace_id", "rule", "tenants", "crossing_edges", "first_seen", "last_seen", "status"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("leaks list --json: field %q missing in %s", k, line)
		}
	}
	var l leakJSON
	if err := json.Unmarshal([]byte(line), &l); err != nil {
		t.Fatalf("leaks list --json: %v\n%s", err, line)
	}
	return l
}

// testForgetfulInventory: acme reads globex's item through a forgetful
// inventory-svc. The gateway's span (acme) reaches the collector over gRPC,
// inventory-svc's spans (the SELECT reading globex's row) over HTTP, in
// separate requests; the processor must join them into one finding.
func testForgetfulInventory(t *testing.T, gatewayFirst bool) {
	t.Parallel()
	began := time.Now()
	c := startCollector(t)
	t.Logf("collector ready in %s", c.started.Round(time.Millisecond))
	d := startDemo(t, c, true)

	// The test decides the trace id: a caller span (never exported) whose
	// context the demo client propagates to the gateway.
	callerTP := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = callerTP.Shutdown(context.Background()) })
	ctx, caller := callerTP.Tracer("e2e").Start(context.Background(), "analyst browser")
	resp, err := d.client.Inventory(ctx, demoapp.TenantAcme, demoapp.ItemGlobexWidget)
	caller.End()
	if err != nil {
		t.Fatal(err)
	}
	traceID := caller.SpanContext().TraceID().String()
	if resp.StatusCode != http.StatusOK || resp.Item == nil || resp.Item.Tenant != demoapp.TenantGlobex {
		t.Fatalf("forgetful inventory: got %d %+v, want globex's row served to acme", resp.StatusCode, resp.Item)
	}
	if resp.TraceID.String() != traceID {
		t.Fatalf("gateway recorded trace %s, the caller's is %s", resp.TraceID, traceID)
	}
	d.flush(t, gatewayFirst)
	gw := d.spanNamed(t, traceID, demoapp.SpanGateway)
	sel := d.spanNamed(t, traceID, demoapp.SpanSelect)
	stock := d.spanNamed(t, traceID, demoapp.SpanStock)

	var f store.Evidence
	eventually(t, 10*time.Second, "a cross_tenant_trace finding for "+traceID, func() (bool, string) {
		for _, e := range c.findings(t) {
			if e.TraceID == traceID && e.Rule == ruleCross {
				f = e
				return true, ""
			}
		}
		return false, "not in the journal yet"
	})
	detected := time.Since(began)

	checkFinding := func(f store.Evidence) {
		t.Helper()
		if !slices.Equal(f.Tenants, []string{demoapp.TenantAcme, demoapp.TenantGlobex}) {
			t.Errorf("tenants %v, want [acme globex]", f.Tenants)
		}
		if !slices.Equal(f.Services, []string{demoapp.ServiceGateway, demoapp.ServiceInventory}) {
			t.Errorf("services %v, want [gateway inventory-svc]", f.Services)
		}
		if f.Severity != "critical" || f.Collector != c.instance {
			t.Errorf("severity %q collector %q, want critical %q", f.Severity, f.Collector, c.instance)
		}
		if len(f.CrossingEdges) != 1 {
			t.Fatalf("crossing edges %+v, want exactly one", f.CrossingEdges)
		}
		e := f.CrossingEdges[0]
		wantFrom := store.EdgeEnd{SpanID: gw.SpanID, Service: demoapp.ServiceGateway, Span: demoapp.SpanGateway, Tenant: demoapp.TenantAcme}
		wantTo := store.EdgeEnd{SpanID: sel.SpanID, Service: demoapp.ServiceInventory, Span: demoapp.SpanSelect, Tenant: demoapp.TenantGlobex}
		if e.From != wantFrom || e.To != wantTo || e.Hops != 1 {
			t.Errorf("crossing edge %+v,\nwant from %+v to %+v with 1 hop (%s %s)", e, wantFrom, wantTo, demoapp.SpanStock, stock.SpanID)
		}
	}
	checkFinding(f)

	// The trace goes idle (idle_window 2s): the finding's closing version
	// carries all three spans.
	eventually(t, 10*time.Second, "the finding to close after the idle window", func() (bool, string) {
		for _, e := range c.findings(t) {
			if e.LeakID == f.LeakID {
				f = e
			}
		}
		return f.Status == "closed", "status " + f.Status
	})
	checkFinding(f)
	if f.SpanCount != 3 {
		t.Errorf("closed finding span_count %d, want 3", f.SpanCount)
	}
	// first_seen is when the trace started: the earliest span start (the
	// gateway's, although its span may arrive last); last_seen is no earlier
	// than the latest span end and not in the future.
	gwStart := time.Unix(0, int64(gw.Start))
	var lastEnd time.Time
	for _, s := range []canonSpan{gw, stock, sel} {
		if e := time.Unix(0, int64(s.End)); e.After(lastEnd) {
			lastEnd = e
		}
	}
	if !f.FirstSeen.Equal(gwStart) {
		t.Errorf("first_seen %s, want the trace's earliest span start %s (gateway)",
			f.FirstSeen.Format(time.RFC3339Nano), gwStart.UTC().Format(time.RFC3339Nano))
	}
	if f.LastSeen.Before(lastEnd) || f.LastSeen.After(time.Now()) {
		t.Errorf("last_seen %s, want between the latest span end %s and now",
			f.LastSeen.Format(time.RFC3339Nano), lastEnd.UTC().Format(time.RFC3339Nano))
	}
	all := c.findings(t)
	if len(all) != 1 {
		t.Errorf("journal holds %d findings, want exactly the one cross_tenant_trace finding: %+v", len(all), all)
	}
	checkEvidenceDetails(t, f, gatewayFirst, gw.SpanID, sel.SpanID)

	// What an analyst sees.
	lines := c.leaks(t)
	if len(lines) != 1 {
		t.Fatalf("leaks list --json printed %d lines, want 1:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	l := parseLeakLine(t, lines[0])
	if l.LeakID != f.LeakID || l.TraceID != traceID || !hex32.MatchString(l.TraceID) || l.Rule != ruleCross || l.Status != "closed" {
		t.Errorf("leaks list: leak %s trace %s rule %s status %s; want %s %s %s closed",
			l.LeakID, l.TraceID, l.Rule, l.Status, f.LeakID, traceID, ruleCross)
	}
	if !slices.Equal(l.Tenants, []string{demoapp.TenantAcme, demoapp.TenantGlobex}) {
		t.Errorf("leaks list: tenants %v", l.Tenants)
	}
	if len(l.CrossingEdges) != 1 ||
		l.CrossingEdges[0].From != (edgeEndJSON{gw.SpanID, demoapp.ServiceGateway, demoapp.SpanGateway, demoapp.TenantAcme}) ||
		l.CrossingEdges[0].To != (edgeEndJSON{sel.SpanID, demoapp.ServiceInventory, demoapp.SpanSelect, demoapp.TenantGlobex}) ||
		l.CrossingEdges[0].Hops != 1 {
		t.Errorf("leaks list: crossing_edges %+v", l.CrossingEdges)
	}
	if !l.FirstSeen.Equal(f.FirstSeen) || !l.LastSeen.Equal(f.LastSeen) {
		t.Errorf("leaks list: first/last seen %s/%s, journal %s/%s", l.FirstSeen, l.LastSeen, f.FirstSeen, f.LastSeen)
	}
	for _, fc := range []struct {
		args []string
		want int
	}{
		{[]string{"--tenant", demoapp.TenantAcme}, 1},
		{[]string{"--tenant", demoapp.TenantGlobex}, 1},
		{[]string{"--tenant", "initech"}, 0},
		{[]string{"--since", "24h"}, 1},
		{[]string{"--service", demoapp.ServiceInventory}, 1},
		{[]string{"--rule", "tenant_mismatch"}, 0},
	} {
		got := c.leaks(t, fc.args...)
		if len(got) != fc.want {
			t.Errorf("leaks list %v: %d lines, want %d", fc.args, len(got), fc.want)
			continue
		}
		if fc.want == 1 && parseLeakLine(t, got[0]).TraceID != traceID {
			t.Errorf("leaks list %v: wrong finding %s", fc.args, got[0])
		}
	}

	// The collector's own log tells the on-call (alerts.log is on by default).
	if logs := c.logs.String(); !strings.Contains(logs, traceID) {
		t.Errorf("collector log never mentions the leaking trace %s", traceID)
	}
	// On-call: exactly one Slack message for the finding (its later
	// versions, including the closing one, add none), carrying both
	// tenants, the crossing edge and a trace link.
	var msgs []string
	eventually(t, 10*time.Second, "the Slack webhook message", func() (bool, string) {
		msgs = c.slack.messages()
		return len(msgs) >= 1, fmt.Sprintf("%d messages", len(msgs))
	})
	if len(msgs) != 1 {
		t.Fatalf("Slack got %d messages for one finding, want 1:\n%s", len(msgs), strings.Join(msgs, "\n"))
	}
	for _, want := range []string{demoapp.TenantAcme, demoapp.TenantGlobex, demoapp.ServiceGateway, demoapp.SpanGateway,
		demoapp.ServiceInventory, demoapp.SpanSelect, "http://jaeger.local:16686/trace/" + traceID, f.LeakID} {
		if !strings.Contains(msgs[0], want) {
			t.Errorf("Slack message lacks %q:\n%s", want, msgs[0])
		}
	}

	// SREs: /metrics shows the traffic and the finding.
	m := c.scrapeMetrics(t)
	for key, want := range map[string]float64{
		"tenantguard_findings_total{processor=tenantguard,rule=cross_tenant_trace,severity=critical}": 1,
		"tenantguard_spans_total{processor=tenantguard}":                                              3,
		"tenantguard_service_spans_total{processor=tenantguard,service=inventory-svc}":                2,
		"tenantguard_spans_without_tenant_total{processor=tenantguard,service=inventory-svc}":         1,
		"tenantguard_alert_deliveries_total{notifier=slack,processor=tenantguard,result=delivered}":   1,
		"tenantguard_detection_latency_seconds{processor=tenantguard}":                                1,
		"tenantguard_store_backlog_records{processor=tenantguard,store=journal}":                      0,
		"tenantguard_alert_pending{notifier=slack,processor=tenantguard}":                             0,
	} {
		if got, ok := m[key]; !ok || got != want {
			t.Errorf("/metrics %s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	if m["tenantguard_store_writes_total{processor=tenantguard,result=ok,store=journal}"] < 1 {
		t.Errorf("/metrics shows no successful journal write")
	}

	assertDelivered(t, c.sink, d.sentSpans())
	c.assertDebugSpans(t, len(d.sentSpans()))
	t.Logf("finding journaled %s after start, all assertions done in %s",
		detected.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// testTestdataScenario posts the shared OTLP JSON scenario with plain
// net/http and expects a finding for it.
func testTestdataScenario(t *testing.T) {
	t.Parallel()
	path := filepath.Join("..", "..", "testdata", "scenarios", "shared_inventory.json")
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(body)
	if err != nil {
		t.Fatalf("%s is not OTLP JSON: %v", path, err)
	}
	sent := canonFromPdata(td)
	traces := map[string]bool{}
	for _, s := range sent {
		traces[s.TraceID] = true
	}
	if len(traces) == 0 {
		t.Fatalf("%s holds no spans", path)
	}
	c := startCollector(t)
	c.post(t, "application/json", body)
	eventually(t, 10*time.Second, "a finding for "+path, func() (bool, string) {
		for _, f := range c.findings(t) {
			if traces[f.TraceID] && f.Rule == ruleCross {
				return true, ""
			}
		}
		return false, "no cross_tenant_trace finding for the scenario's traces yet"
	})
	for _, f := range c.findings(t) {
		t.Logf("scenario finding: %s %s tenants=%v edges=%d", f.Rule, f.TraceID, f.Tenants, len(f.CrossingEdges))
	}
	assertDelivered(t, c.sink, sent)
	c.assertDebugSpans(t, len(sent))
}

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

// checkEvidenceDetails: the evidence spans that came in the request that
// raised the finding carry their kind and attributes, tenant and operation
// values in clear and every other value as a digest under the collector's
// key; the query text itself is nowhere.
func checkEvidenceDetails(t *testing.T, f store.Evidence, gatewayFirst bool, gwID, selID string) {
	t.Helper()
	var gwSpan, selSpan store.Span
	for _, s := range f.Spans {
		switch s.SpanID {
		case gwID:
			gwSpan = s
		case selID:
			selSpan = s
		}
	}
	if gatewayFirst {
		// The select span raised the finding.
		want := map[string]string{
			"tenant.id":          demoapp.TenantGlobex,
			"db.system.name":     "postgresql",
			"db.collection.name": "stock",
			"db.operation.name":  "SELECT",
			"db.namespace":       processor.Digest([]byte(e2eEvidenceKey), "shop"),
			"db.query.text":      processor.Digest([]byte(e2eEvidenceKey), demoapp.QueryForgetful),
		}
		for k, v := range want {
			if selSpan.Attributes[k] != v {
				t.Errorf("evidence span %s attribute %s = %q, want %q", demoapp.SpanSelect, k, selSpan.Attributes[k], v)
			}
		}
		if selSpan.Kind != "client" || selSpan.StartTime.IsZero() || selSpan.DurationNs == 0 {
			t.Errorf("evidence span %s details: kind %q start %s duration %d", demoapp.SpanSelect, selSpan.Kind, selSpan.StartTime, selSpan.DurationNs)
		}
		return
	}
	// The gateway span raised the finding: its path is a digest, its route in clear.
	if gwSpan.Attributes["http.route"] == "" || gwSpan.Kind != "server" ||
		!strings.HasPrefix(gwSpan.Attributes[demoapp.AttrURLPath], "hmac-sha256:") {
		t.Errorf("evidence span %s details: kind %q attributes %v", demoapp.SpanGateway, gwSpan.Kind, gwSpan.Attributes)
	}
	if b, _ := json.Marshal(f); strings.Contains(string(b), demoapp.QueryForgetful) {
		t.Error("the stored finding holds the query text")
	}
}
