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
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tenantguard/tenantguard/internal/demoapp"
	"github.com/tenantguard/tenantguard/processor/tenantguardprocessor"
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
	bin, took := buildProgram(t, "tenantguard", ".") // before the parallel subtests start their clocks
	t.Logf("built %s in %s", bin, took.Round(time.Millisecond))
	t.Run("clean_traffic", testCleanTraffic)
	// The leaking trace's halves reach the collector in separate requests
	// over different protocols; either may arrive first.
	t.Run("forgetful_inventory/inventory_first", func(t *testing.T) { testForgetfulInventory(t, false) })
	t.Run("forgetful_inventory/gateway_first", func(t *testing.T) { testForgetfulInventory(t, true) })
	t.Run("testdata_scenario", testTestdataScenario)
	t.Run("detection_depth", testDetectionDepth)
	t.Run("refused_attempts_split_by_the_idle_window/inventory_first", func(t *testing.T) { testRefusedAttemptsSplitByTheIdleWindow(t, false) })
	t.Run("refused_attempts_split_by_the_idle_window/gateway_first", func(t *testing.T) { testRefusedAttemptsSplitByTheIdleWindow(t, true) })
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
			"db.namespace":       tenantguardprocessor.Digest([]byte(e2eEvidenceKey), "shop"),
			"db.query.text":      tenantguardprocessor.Digest([]byte(e2eEvidenceKey), demoapp.QueryForgetful),
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
