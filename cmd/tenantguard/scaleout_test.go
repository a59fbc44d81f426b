package main

// Scale-out end to end (config/scaleout/README.md): one front collector with
// the contrib load_balancing exporter (internal/lbcollector, its own module)
// routing by trace id to two tenantguard collectors, all on loopback, each
// started from the shipped example configs plus a small test overlay. The
// spans of one leaking trace enter the front tier in three different
// requests over two connections, mixed with the spans of many clean traces;
// the leak must be recorded exactly once, by one collector.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tenantguard/tenantguard/store"
	"github.com/tenantguard/tenantguard/store/journal"
)

func TestScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the tenantguard and load-balancer binaries")
	}
	tgBin, tgTook := buildProgram(t, "tenantguard", ".")
	lbBin, lbTook := scaleOutLBBinary(t)
	t.Logf("binaries ready: tenantguard built in %s, load balancer built in %s",
		tgTook.Round(time.Millisecond), lbTook.Round(time.Millisecond))
	began := time.Now()
	t.Cleanup(func() { t.Logf("TestScaleOut after the builds: %s", time.Since(began).Round(time.Millisecond)) })

	// Second tier: two tenantguard collectors. The front collector stops
	// first at cleanup (cleanups run last-in first-out), so nothing is in
	// flight towards a backend that is going away.
	backends := []*scaleOutProc{
		startScaleOutTenantguard(t, tgBin, "tg-a"),
		startScaleOutTenantguard(t, tgBin, "tg-b"),
	}
	lb := startScaleOutLB(t, lbBin, backends)
	t.Logf("three collectors ready in %s", time.Since(began).Round(time.Millisecond))

	// Traffic: the leaking trace's three spans in three requests, the first
	// from the gateway's connection, the others from inventory-svc's, each
	// request also carrying one span of every clean trace.
	const cleanTraces = 40
	leak := newScaleOutTrace(0xee, 0, "acme", "", "globex")
	traces := []scaleOutTrace{leak}
	for i := 1; i <= cleanTraces; i++ {
		tenant := "acme"
		if i%2 == 0 {
			tenant = "globex"
		}
		traces = append(traces, newScaleOutTrace(0xc1, i, tenant, "", tenant))
	}
	gateway, inventory := dialScaleOut(t, lb.grpcAddr), dialScaleOut(t, lb.grpcAddr)
	sent := 0
	for step, client := range []ptraceotlp.GRPCClient{gateway, inventory, inventory} {
		td := ptrace.NewTraces()
		for _, tr := range traces {
			tr.appendSpan(td, step)
		}
		sent += td.SpanCount()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
		cancel()
		if err != nil {
			t.Fatalf("request %d to the front collector: %v", step+1, err)
		}
	}
	if want := 3 * len(traces); sent != want {
		t.Fatalf("sent %d spans, want %d", sent, want)
	}

	// Every span reached a detector, both detectors got traffic.
	var perBackend []float64
	eventually(t, 10*time.Second, "every span sent to reach a tenantguard collector", func() (bool, string) {
		perBackend = perBackend[:0]
		total := 0.0
		for _, b := range backends {
			n := b.metric(t, "tenantguard_spans_total")
			perBackend = append(perBackend, n)
			total += n
		}
		return total >= float64(sent), fmt.Sprintf("spans read per collector %v, sent %d", perBackend, sent)
	})
	t.Logf("spans read per collector: %v of %d sent", perBackend, sent)
	for i, n := range perBackend {
		if n == 0 {
			t.Errorf("%s read no span: the load balancer sent everything to one collector", backends[i].name)
		}
	}

	// The leak, closed after its idle window: its last version carries the
	// final span count, 3 only if one detector saw the whole trace.
	leakTrace := leak.id.String()
	eventually(t, 15*time.Second, "the leaking trace's finding to close", func() (bool, string) {
		var seen strings.Builder
		for _, b := range backends {
			latest := b.latestFindings(t)
			for _, f := range latest {
				if f.TraceID == leakTrace && f.Status == "closed" {
					return true, ""
				}
			}
			fmt.Fprintf(&seen, "\n%s journaled %d finding(s)\n%s", b.name, len(latest), scaleOutDescribe(latest))
		}
		return false, "no closed finding for trace " + leakTrace + " yet;" + seen.String()
	})
	// Every trace closed: each collector counts the traces it held, so the
	// sum is the number of traces only if no trace was split across them.
	eventually(t, 10*time.Second, "every trace to close on both collectors", func() (bool, string) {
		var held []float64
		for _, b := range backends {
			held = append(held, b.metric(t, "tenantguard_traces_in_memory"))
		}
		return held[0] == 0 && held[1] == 0, fmt.Sprintf("traces in memory per collector %v", held)
	})

	total, expired := 0.0, 0.0
	for _, b := range backends {
		total += b.metric(t, "tenantguard_spans_total")
		expired += b.metric(t, "tenantguard_traces_expired_total")
	}
	if total != float64(sent) {
		t.Errorf("the collectors read %v spans, %d were sent", total, sent)
	}
	if expired != float64(len(traces)) {
		t.Errorf("the collectors closed %v traces, %d were sent: a trace was split across collectors", expired, len(traces))
	}

	// Exactly one finding, once, in one journal: every record of every
	// version names the same leak id, and only one collector wrote any.
	var holders []*scaleOutProc
	var records []store.Evidence
	findings := 0.0
	for _, b := range backends {
		recs := b.journalRecords(t)
		if len(recs) > 0 {
			holders = append(holders, b)
			records = append(records, recs...)
		}
		findings += b.metric(t, "tenantguard_findings_total")
	}
	if findings != 1 {
		t.Errorf("tenantguard_findings_total across the collectors is %v, want 1", findings)
	}
	if len(holders) != 1 {
		var names []string
		for _, h := range holders {
			names = append(names, h.name)
		}
		t.Fatalf("findings journaled by %d collectors %v, want exactly 1:\n%s", len(holders), names, scaleOutDescribe(records))
	}
	holder := holders[0]
	latest := store.Latest(records)
	if len(latest) != 1 {
		t.Fatalf("%s journaled %d findings, want the leak only:\n%s", holder.name, len(latest), scaleOutDescribe(latest))
	}
	f := latest[0]
	t.Logf("leak %s recorded by %s in %d version(s)", f.LeakID, holder.name, len(records))
	for _, r := range records {
		if r.LeakID != f.LeakID {
			t.Errorf("journal record for leak %s (trace %s), want only %s", r.LeakID, r.TraceID, f.LeakID)
		}
	}
	if f.TraceID != leakTrace || f.Rule != ruleCross || f.Severity != "critical" || f.Status != "closed" {
		t.Errorf("finding: trace %s rule %s severity %s status %s, want %s %s critical closed",
			f.TraceID, f.Rule, f.Severity, f.Status, leakTrace, ruleCross)
	}
	if !slices.Equal(f.Tenants, []string{"acme", "globex"}) {
		t.Errorf("finding tenants %v, want [acme globex]", f.Tenants)
	}
	if f.SpanCount != 3 {
		t.Errorf("finding span_count %d, want 3: one collector must have seen the whole trace", f.SpanCount)
	}
	if f.Collector != holder.name {
		t.Errorf("finding collector %q, want %q", f.Collector, holder.name)
	}
	want := store.CrossingEdge{
		From: store.EdgeEnd{SpanID: leak.spanID(0).String(), Service: "gateway", Span: "GET /inventory", Tenant: "acme"},
		To:   store.EdgeEnd{SpanID: leak.spanID(2).String(), Service: "inventory-svc", Span: "SELECT stock", Tenant: "globex"},
		Hops: 1,
	}
	if len(f.CrossingEdges) != 1 {
		t.Fatalf("finding has %d crossing edges, want 1: %+v", len(f.CrossingEdges), f.CrossingEdges)
	}
	got := f.CrossingEdges[0]
	if got.Outcome != "" && got.Outcome != "succeeded" {
		t.Errorf("crossing edge outcome %q, want succeeded", got.Outcome)
	}
	got.Outcome = ""
	if got != want {
		t.Errorf("crossing edge\n got  %+v\n want %+v", got, want)
	}
}

// ---------------------------------------------------------------- traffic

// scaleOutTrace is a three-span trace: gateway `GET /inventory` (tenant
// from) → inventory-svc `GET /stock` (tenant mid, "" for none) →
// inventory-svc `SELECT stock` on a database (tenant to).
type scaleOutTrace struct {
	id            pcommon.TraceID
	from, mid, to string
}

func newScaleOutTrace(kind byte, n int, from, mid, to string) scaleOutTrace {
	id := pcommon.TraceID{kind, 0x5c, 0xa1, 0xe0}
	seed := time.Now().UnixNano()
	for i := 0; i < 8; i++ {
		id[4+i] = byte(seed >> (8 * i))
	}
	id[12], id[13], id[14], id[15] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return scaleOutTrace{id: id, from: from, mid: mid, to: to}
}

func (tr scaleOutTrace) spanID(step int) pcommon.SpanID {
	var s pcommon.SpanID
	copy(s[:], tr.id[8:])
	s[0] ^= byte(step + 1)
	return s
}

// appendSpan adds the trace's span for step (0 gateway, 1 inventory-svc's
// server span, 2 its query) to td, under the service's resource.
func (tr scaleOutTrace) appendSpan(td ptrace.Traces, step int) {
	service, name, tenant := "gateway", "GET /inventory", tr.from
	switch step {
	case 1:
		service, name, tenant = "inventory-svc", "GET /stock", tr.mid
	case 2:
		service, name, tenant = "inventory-svc", "SELECT stock", tr.to
	}
	rss := td.ResourceSpans()
	var spans ptrace.SpanSlice
	found := false
	for i := 0; i < rss.Len() && !found; i++ {
		if v, _ := rss.At(i).Resource().Attributes().Get("service.name"); v.Str() == service {
			spans, found = rss.At(i).ScopeSpans().At(0).Spans(), true
		}
	}
	if !found {
		rs := rss.AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", service)
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName("scaleout-test")
		spans = ss.Spans()
	}
	now := time.Now()
	sp := spans.AppendEmpty()
	sp.SetTraceID(tr.id)
	sp.SetSpanID(tr.spanID(step))
	if step > 0 {
		sp.SetParentSpanID(tr.spanID(step - 1))
	}
	sp.SetName(name)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Duration(step) * time.Millisecond)))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(10 * time.Millisecond)))
	if tenant != "" {
		sp.Attributes().PutStr("tenant.id", tenant)
	}
	switch step {
	case 0, 1:
		sp.SetKind(ptrace.SpanKindServer)
		sp.Attributes().PutInt("http.response.status_code", 200)
	case 2:
		sp.SetKind(ptrace.SpanKindClient)
		sp.Attributes().PutStr("db.system.name", "postgresql")
		sp.Attributes().PutStr("db.query.text", "SELECT qty FROM stock WHERE item = $1")
	}
}

// dialScaleOut opens one OTLP/gRPC client connection, as one instrumented
// service would.
func dialScaleOut(t *testing.T, addr string) ptraceotlp.GRPCClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return ptraceotlp.NewGRPCClient(conn)
}

func scaleOutDescribe(evs []store.Evidence) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %s v%d %s %s %s tenants=%v spans=%d collector=%s\n",
			e.LeakID, e.Version, e.Rule, e.Status, e.TraceID, e.Tenants, e.SpanCount, e.Collector)
	}
	return b.String()
}

// ---------------------------------------------------------------- processes

// scaleOutProc is one collector process of the test: a tenantguard
// collector (journal and metrics set) or the front load balancer.
type scaleOutProc struct {
	bin      string
	args     []string
	env      []string // added to the test's environment
	grpcAddr string
	httpAddr string
	metrics  string
	journal  string
	*proc
}

// scaleOutConfigs is where the shipped example configs live.
var scaleOutConfigs = filepath.Join("..", "..", "config", "scaleout")

// The test overlays: merged over the shipped examples (later --config files
// win; lists are replaced), they move every endpoint and file into the test
// and make delivery synchronous, so a request the front tier acknowledged
// has been read by a detector.
const scaleOutTenantguardOverlay = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %[1]s
      http:
        endpoint: %[2]s
processors:
  tenantguard:
    idle_window: 2s
    instance: %[3]s
    store:
      journal:
        path: %[4]s
      clickhouse:
        endpoints: []
    metrics:
      endpoint: %[5]s
exporters:
  debug:
    verbosity: basic
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      exporters: [debug]
`

const scaleOutLBOverlay = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %[1]s
      http:
        endpoint: %[2]s
exporters:
  load_balancing:
    sending_queue:
      enabled: false
    protocol:
      otlp:
        timeout: 5s
        compression: none
        sending_queue:
          enabled: false
    resolver:
      static:
        hostnames: [%[3]s]
service:
  telemetry:
    metrics:
      level: none
`

func startScaleOutTenantguard(t *testing.T, bin, name string) *scaleOutProc {
	t.Helper()
	dir := t.TempDir()
	journalPath := filepath.Join(dir, "data", "leaks.jsonl")
	return startScaleOutProc(t, name, bin, dir, func(p *scaleOutProc) string {
		// The example names the ClickHouse password's variable; the overlay
		// turns ClickHouse off, this keeps the log free of the warning.
		p.env = []string{"CLICKHOUSE_PASSWORD=unused"}
		p.journal = journalPath
		p.metrics = "127.0.0.1:" + strconv.Itoa(freePort(t))
		return fmt.Sprintf(scaleOutTenantguardOverlay, p.grpcAddr, p.httpAddr, name,
			strconv.Quote(journalPath), p.metrics)
	}, filepath.Join(scaleOutConfigs, "tenantguard.yaml"))
}

func startScaleOutLB(t *testing.T, bin string, backends []*scaleOutProc) *scaleOutProc {
	t.Helper()
	var hosts []string
	for _, b := range backends {
		hosts = append(hosts, b.grpcAddr)
	}
	return startScaleOutProc(t, "lb", bin, t.TempDir(), func(p *scaleOutProc) string {
		return fmt.Sprintf(scaleOutLBOverlay, p.grpcAddr, p.httpAddr, strings.Join(hosts, ", "))
	}, filepath.Join(scaleOutConfigs, "front.yaml"))
}

// startScaleOutProc runs bin with --config base --config overlay, where
// overlay is rendered for fresh loopback ports, and returns once its OTLP/HTTP
// receiver answers (receivers start after the rest of the pipeline) and, for
// a tenantguard collector, its /metrics. A lost port race is retried with new
// ports. At cleanup the process gets SIGTERM
// and must exit 0.
func startScaleOutProc(t *testing.T, name, bin, dir string, overlay func(*scaleOutProc) string, base string) *scaleOutProc {
	t.Helper()
	absBase, err := filepath.Abs(base)
	if err != nil {
		t.Fatal(err)
	}
	const attempts = 3
	for attempt := 1; ; attempt++ {
		p := &scaleOutProc{
			bin:      bin,
			grpcAddr: "127.0.0.1:" + strconv.Itoa(freePort(t)),
			httpAddr: "127.0.0.1:" + strconv.Itoa(freePort(t)),
			proc:     &proc{name: name},
		}
		cfgPath := filepath.Join(dir, fmt.Sprintf("%s-overlay-%d.yaml", name, attempt))
		if err := os.WriteFile(cfgPath, []byte(overlay(p)), 0o600); err != nil {
			t.Fatal(err)
		}
		p.args = []string{"--config", absBase, "--config", cfgPath}
		err := p.start(dir)
		if err == nil {
			t.Cleanup(func() { p.stop(t) })
			return p
		}
		if attempt == attempts || !strings.Contains(p.logs.String(), "address already in use") {
			t.Fatalf("%s did not start: %v\n--- %s output ---\n%s", name, err, name, p.logs.String())
		}
		t.Logf("%s lost a port race (attempt %d); retrying with new ports", name, attempt)
	}
}

func (p *scaleOutProc) start(dir string) error {
	var err error
	p.proc, err = launch(p.name, p.bin, dir, p.args, p.env)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	if err := p.waitHTTP(hc, p.httpAddr, deadline); err != nil {
		return err
	}
	return p.waitMetrics(hc, deadline)
}

// waitMetrics waits for a tenantguard collector's /metrics. (A collector
// whose metrics port was taken does not start: waitHTTP reports the exit,
// and "address already in use" in its log makes it a lost port race.)
func (p *scaleOutProc) waitMetrics(hc *http.Client, deadline time.Time) error {
	if p.metrics == "" {
		return nil
	}
	for {
		resp, err := hc.Get("http://" + p.metrics + "/metrics")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			p.kill()
			return fmt.Errorf("/metrics on %s not answering: %v", p.metrics, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// metric scrapes the collector's /metrics and sums every series of name.
func (p *scaleOutProc) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		t.Fatalf("scraping %s /metrics: %v", p.name, err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s /metrics: %v", p.name, err)
	}
	sum := 0.0
	if fam, ok := fams[name]; ok {
		for _, m := range fam.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// journalRecords reads every record the collector journaled (no journal
// yet is none). A torn last line (a read racing an append) is tolerated.
func (p *scaleOutProc) journalRecords(t *testing.T) []store.Evidence {
	t.Helper()
	if _, err := os.Stat(p.journal); os.IsNotExist(err) {
		return nil
	}
	recs, rep, err := journal.ReadFile(p.journal)
	if err != nil {
		t.Fatalf("reading %s journal: %v", p.name, err)
	}
	if len(rep.Corrupt) > 0 {
		t.Fatalf("%s journal has corrupt lines %v", p.name, rep.Corrupt)
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Version < recs[j].Version })
	return recs
}

func (p *scaleOutProc) latestFindings(t *testing.T) []store.Evidence {
	return store.Latest(p.journalRecords(t))
}

// ---------------------------------------------------------------- build

// scaleOutLBBinary builds internal/lbcollector, a module of its own (the
// load_balancing exporter resolves only at an older collector release than
// this module's), once per test process.
func scaleOutLBBinary(t *testing.T) (string, time.Duration) {
	t.Helper()
	return buildProgram(t, "tenantguard-lb", filepath.Join("..", "..", "internal", "lbcollector"))
}
