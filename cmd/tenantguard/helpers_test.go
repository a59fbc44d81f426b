package main

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tenantguard/tenantguard/internal/demoapp"
	"github.com/tenantguard/tenantguard/store"
	"github.com/tenantguard/tenantguard/store/journal"
)

// ---------------------------------------------------------------- polling

// eventually polls cond every 50ms until it reports true or timeout passes;
// then it fails the test with cond's last explanation.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---------------------------------------------------------------- collector

type collector struct {
	bin      string
	cfgPath  string
	journal  string
	grpcAddr string
	httpAddr string
	instance string
	sink     *otlpSink
	metrics  string      // host:port of /metrics
	slack    *slackHooks // the incoming-webhook endpoint the collector posts to
	env      []string    // more of the collector's environment (withEnv)

	*proc
	started time.Duration // from exec to the HTTP receiver answering
}

// syncBuffer collects the collector's output; exec copies into it from its
// own goroutines while tests read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort asks the kernel for a free loopback port and releases it. Another
// process may take it before the collector binds it; startCollector retries.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// restartPort is a free loopback port for a collector that is killed and
// started again on the same address while clients keep calling it. It lies
// below the kernel's ephemeral range: a port in that range, free while the
// collector is down, can be handed to a client's own connection to it (TCP
// connects to itself when the local port the kernel picks equals the
// destination), and the restarted collector then fails with "address already
// in use". Below the range only an explicit bind of that number can take it.
func restartPort(t *testing.T) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				low = n
			}
		}
	}
	for range 100 {
		port := 10000 + rand.IntN(low-10000)
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			l.Close()
			return port
		}
	}
	t.Fatalf("no free loopback port between 10000 and %d", low)
	return 0
}

// e2eEvidenceKey keys the evidence digests of every test collector.
const e2eEvidenceKey = "e2e-evidence-key-0123456789abcdef"

const collectorConfig = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %[1]s
      http:
        endpoint: %[2]s

processors:
  tenantguard:
    idle_window: %[10]s
    instance: %[3]s
    store:
      journal:
        path: %[4]s
%[11]s    metrics:
      endpoint: %[6]s
%[9]s    evidence_attributes:
      hmac_key: ${env:TG_E2E_EVIDENCE_KEY}
    alerts:
      slack:
        # The secret comes from the environment, as in production.
        webhook_url: ${env:TG_E2E_SLACK_WEBHOOK}
        trace_url_template: http://jaeger.local:16686/trace/{trace_id}
        runbook_url: https://runbooks.example.com/tenant-leak
        outbox_path: %[7]s
%[8]s
exporters:
  debug:
    verbosity: basic
  otlp_http/sink:
    endpoint: %[5]s
    compression: none
    retry_on_failure:
      enabled: false

service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tenantguard]
      exporters: [debug, otlp_http/sink]
`

// startCollector runs the built binary with a fresh config: OTLP gRPC and
// HTTP on free loopback ports, the tenantguard processor (default tenant
// attributes, idle_window 2s unless withIdleWindow, plus whatever
// withProcessorYAML adds)
// journaling into t.TempDir(), and two exporters, debug and otlphttp to an
// in-test sink. It returns once the HTTP receiver answers (receivers start
// after the rest of the pipeline) and stops the collector with SIGTERM at
// cleanup.
func startCollector(t *testing.T, opts ...collectorOption) *collector {
	t.Helper()
	var settings collectorSettings
	for _, o := range opts {
		o(&settings)
	}
	bin := tenantguardBinary(t)
	sink := newOTLPSink(t)
	hooks := newSlackHooks(t)
	dir := t.TempDir()
	const attempts = 3
	for attempt := 1; ; attempt++ {
		c := &collector{
			bin:      bin,
			cfgPath:  filepath.Join(dir, fmt.Sprintf("collector-%d.yaml", attempt)),
			journal:  filepath.Join(dir, "data", "leaks.jsonl"),
			grpcAddr: "127.0.0.1:" + strconv.Itoa(freePort(t)),
			httpAddr: "127.0.0.1:" + strconv.Itoa(freePort(t)),
			instance: "e2e-" + strings.ReplaceAll(t.Name(), "/", "-"),
			sink:     sink,
			metrics:  "127.0.0.1:" + strconv.Itoa(freePort(t)),
			slack:    hooks,
			env:      settings.env,
		}
		cfg := fmt.Sprintf(collectorConfig, c.grpcAddr, c.httpAddr, c.instance,
			strconv.Quote(c.journal), sink.srv.URL, c.metrics, strconv.Quote(filepath.Join(dir, "data", "slack-outbox.jsonl")),
			settings.processorBlock(), settings.metricsBlock(), cmp.Or(settings.idleWindow, "2s"), settings.storeBlock())
		if err := os.WriteFile(c.cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		err := c.start(dir)
		if err == nil {
			t.Cleanup(func() { c.stop(t) })
			return c
		}
		if attempt == attempts || !strings.Contains(c.logs.String(), "address already in use") {
			t.Fatalf("collector did not start: %v\n--- collector output ---\n%s", err, c.logs.String())
		}
		t.Logf("collector lost a port race (attempt %d); retrying with new ports", attempt)
	}
}

func (c *collector) start(workDir string) error {
	begin := time.Now()
	var err error
	c.proc, err = launch("collector ("+c.cfgPath+")", c.bin, workDir, []string{"--config", c.cfgPath},
		append([]string{"TG_E2E_SLACK_WEBHOOK=" + c.slack.srv.URL + "/services/T0/B0/secret", "TG_E2E_EVIDENCE_KEY=" + e2eEvidenceKey}, c.env...))
	if err != nil {
		return err
	}
	if err := c.waitHTTP(&http.Client{Timeout: time.Second}, c.httpAddr, time.Now().Add(20*time.Second)); err != nil {
		return err
	}
	c.started = time.Since(begin)
	return nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

var debugTraces = regexp.MustCompile(`\tTraces\t.*"otelcol\.component\.id": "debug".*"spans": (\d+)`)

// debugSpans adds up the span counts the debug exporter logged
// (verbosity basic: one "Traces" line per request it received).
func (c *collector) debugSpans() int {
	n := 0
	for _, m := range debugTraces.FindAllStringSubmatch(c.logs.String(), -1) {
		k, _ := strconv.Atoi(m[1])
		n += k
	}
	return n
}

// assertDebugSpans waits until the debug exporter has logged want spans,
// and checks it logs no more.
func (c *collector) assertDebugSpans(t *testing.T, want int) {
	t.Helper()
	eventually(t, 10*time.Second, "the debug exporter to log every span", func() (bool, string) {
		got := c.debugSpans()
		return got >= want, fmt.Sprintf("debug exporter logged %d of %d spans", got, want)
	})
	if got := c.debugSpans(); got != want {
		t.Errorf("debug exporter logged %d spans, want %d", got, want)
	}
}

// leaks runs `tenantguard leaks list --config <cfg> --json [args...]` and
// returns its stdout lines.
func (c *collector) leaks(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command(c.bin, append([]string{"leaks", "list", "--config", c.cfgPath, "--json"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("leaks list %v: %v\nstderr: %s", args, err, stderr.String())
	}
	var lines []string
	for _, l := range strings.Split(stdout.String(), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// awaitClosedInClickHouse waits until every one of the n findings `leaks
// list args...` gives is closed (its traces passed idle_window, so no
// version is still to come) and ClickHouse reads line for line what the
// journal reads, and returns those lines.
func (c *collector) awaitClosedInClickHouse(t *testing.T, n int, args ...string) []string {
	t.Helper()
	var lines []string
	eventually(t, 60*time.Second, "every finding closed, and ClickHouse holding what the journal holds", func() (bool, string) {
		lines = c.leaks(t, append([]string{"--journal"}, args...)...)
		closed := 0
		for _, l := range lines {
			if parseLeakLine(t, l).Status == "closed" {
				closed++
			}
		}
		fromCH := c.leaks(t, args...)
		same := 0
		for i := range min(len(fromCH), len(lines)) {
			if fromCH[i] == lines[i] {
				same++
			}
		}
		return len(lines) == n && closed == n && len(fromCH) == n && same == n,
			fmt.Sprintf("journal %d findings (%d closed), ClickHouse %d, %d lines the same, want %d", len(lines), closed, len(fromCH), same, n)
	})
	return lines
}

// findings reads the journal and returns the latest version of each finding.
// A torn last line (a read racing an append) is tolerated: the caller polls.
func (c *collector) findings(t *testing.T) []store.Evidence {
	t.Helper()
	recs, rep, err := journal.ReadFile(c.journal)
	if err != nil {
		t.Fatalf("reading journal: %v", err)
	}
	if len(rep.Corrupt) > 0 {
		t.Fatalf("journal %s has corrupt lines %v", c.journal, rep.Corrupt)
	}
	return store.Latest(recs)
}

// postOTLP sends td to the collector's OTLP/HTTP receiver as protobuf.
func (c *collector) postOTLP(t *testing.T, td ptrace.Traces) {
	t.Helper()
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	c.post(t, "application/x-protobuf", body)
}

func (c *collector) post(t *testing.T, contentType string, body []byte) {
	t.Helper()
	resp, err := http.Post("http://"+c.httpAddr+"/v1/traces", contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/traces: %s: %s", resp.Status, msg)
	}
}

// ---------------------------------------------------------------- OTLP sink

// otlpSink is a minimal OTLP/HTTP traces receiver: what the collector
// exports downstream lands here.
type otlpSink struct {
	srv      *httptest.Server
	mu       sync.Mutex
	requests int
	spans    []canonSpan
}

func newOTLPSink(t *testing.T) *otlpSink {
	s := &otlpSink{}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *otlpSink) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.Error(w, "only POST /v1/traces", http.StatusNotFound)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req := ptraceotlp.NewExportRequest()
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		err = req.UnmarshalJSON(raw)
	} else {
		err = req.UnmarshalProto(raw)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	got := canonFromPdata(req.Traces())
	s.mu.Lock()
	s.requests++
	s.spans = append(s.spans, got...)
	s.mu.Unlock()
	out, _ := ptraceotlp.NewExportResponse().MarshalProto()
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// received returns the spans received so far whose trace is in traces.
func (s *otlpSink) received(traces map[string]bool) []canonSpan {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []canonSpan
	for _, sp := range s.spans {
		if traces[sp.TraceID] {
			out = append(out, sp)
		}
	}
	return out
}

// ---------------------------------------------------------------- span comparison

// canonSpan is a span as both the SDK and pdata can describe it, so that a
// span the demo app ended and the span the collector exported compare equal
// exactly when nothing was changed on the way.
type canonSpan struct {
	TraceID, SpanID, ParentID string
	Name, Kind                string
	Start, End                uint64
	StatusCode, StatusMessage string
	Attributes                map[string]any
	Resource                  map[string]any
	Scope, ScopeVersion       string
	Events, Links             int
}

func (c canonSpan) key() string { return c.TraceID + "/" + c.SpanID }

func canonFromPdata(td ptrace.Traces) []canonSpan {
	var out []canonSpan
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		res := rs.Resource().Attributes().AsRaw()
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j)
			spans := ss.Spans()
			for k := 0; k < spans.Len(); k++ {
				sp := spans.At(k)
				c := canonSpan{
					TraceID:       sp.TraceID().String(),
					SpanID:        sp.SpanID().String(),
					Name:          sp.Name(),
					Kind:          sp.Kind().String(),
					Start:         uint64(sp.StartTimestamp()),
					End:           uint64(sp.EndTimestamp()),
					StatusCode:    sp.Status().Code().String(),
					StatusMessage: sp.Status().Message(),
					Attributes:    sp.Attributes().AsRaw(),
					Resource:      res,
					Scope:         ss.Scope().Name(),
					ScopeVersion:  ss.Scope().Version(),
					Events:        sp.Events().Len(),
					Links:         sp.Links().Len(),
				}
				if !sp.ParentSpanID().IsEmpty() {
					c.ParentID = sp.ParentSpanID().String()
				}
				out = append(out, c)
			}
		}
	}
	return out
}

func canonFromSDK(s tracetest.SpanStub) canonSpan {
	c := canonSpan{
		TraceID:       s.SpanContext.TraceID().String(),
		SpanID:        s.SpanContext.SpanID().String(),
		Name:          s.Name,
		Kind:          ptrace.SpanKind(s.SpanKind).String(), // both follow the OTLP enum
		Start:         uint64(s.StartTime.UnixNano()),
		End:           uint64(s.EndTime.UnixNano()),
		StatusMessage: s.Status.Description,
		Attributes:    attrMap(s.Attributes),
		Resource:      attrMap(s.Resource.Attributes()),
		Scope:         s.InstrumentationScope.Name,
		ScopeVersion:  s.InstrumentationScope.Version,
		Events:        len(s.Events),
		Links:         len(s.Links),
	}
	switch s.Status.Code { // the SDK and OTLP number status codes differently
	case codes.Ok:
		c.StatusCode = ptrace.StatusCodeOk.String()
	case codes.Error:
		c.StatusCode = ptrace.StatusCodeError.String()
	default:
		c.StatusCode = ptrace.StatusCodeUnset.String()
	}
	if s.Parent.SpanID().IsValid() {
		c.ParentID = s.Parent.SpanID().String()
	}
	return c
}

// attrMap renders SDK attributes the way pcommon.Map.AsRaw does.
func attrMap(kvs []attribute.KeyValue) map[string]any {
	m := pcommon.NewMap()
	for _, kv := range kvs {
		k := string(kv.Key)
		switch kv.Value.Type() {
		case attribute.BOOL:
			m.PutBool(k, kv.Value.AsBool())
		case attribute.INT64:
			m.PutInt(k, kv.Value.AsInt64())
		case attribute.FLOAT64:
			m.PutDouble(k, kv.Value.AsFloat64())
		case attribute.STRING:
			m.PutStr(k, kv.Value.AsString())
		default:
			_ = m.PutEmptySlice(k).FromRaw(toAnySlice(kv.Value.AsInterface()))
		}
	}
	return m.AsRaw()
}

func toAnySlice(v any) []any {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice {
		return []any{fmt.Sprint(v)}
	}
	out := make([]any, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Interface()
	}
	return out
}

// assertDelivered waits until the sink holds a span for every span the demo
// app sent (and no more for those traces), then checks each arrived
// unchanged: same ids, parent, name, kind, times, status, attributes,
// resource and scope.
func assertDelivered(t *testing.T, sink *otlpSink, sent []canonSpan) {
	t.Helper()
	traces := map[string]bool{}
	for _, s := range sent {
		traces[s.TraceID] = true
	}
	eventually(t, 10*time.Second, "every sent span to reach the downstream sink", func() (bool, string) {
		got := sink.received(traces)
		return len(got) >= len(sent), fmt.Sprintf("%d of %d spans arrived", len(got), len(sent))
	})
	got := sink.received(traces)
	byKey := map[string]canonSpan{}
	for _, g := range got {
		if _, dup := byKey[g.key()]; dup {
			t.Errorf("span %s delivered twice", g.key())
		}
		byKey[g.key()] = g
	}
	if len(got) != len(sent) {
		t.Errorf("downstream received %d spans for the demo traces, the demo app sent %d", len(got), len(sent))
	}
	for _, want := range sent {
		g, ok := byKey[want.key()]
		if !ok {
			t.Errorf("span %s (%s) never arrived downstream", want.key(), want.Name)
			continue
		}
		if !reflect.DeepEqual(g, want) {
			t.Errorf("span %s (%s) changed on its way through the collector:\n sent %+v\n got  %+v",
				want.key(), want.Name, want, g)
		}
	}
}

// ---------------------------------------------------------------- demo app

// demo is the demo shop exporting to the collector: the gateway over
// OTLP/gRPC, inventory-svc over OTLP/HTTP, so one trace's spans reach the
// collector in different requests over different protocols. Every span is
// also recorded in memory, as sent.
type demo struct {
	shop   *demoapp.Shop
	client *demoapp.Client
	gwTP   *sdktrace.TracerProvider
	invTP  *sdktrace.TracerProvider
	sent   *tracetest.InMemoryExporter
}

func startDemo(t *testing.T, c *collector, forgetful bool) *demo {
	t.Helper()
	ctx := context.Background()
	gwExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(c.grpcAddr), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	invExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(c.httpAddr), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	d := &demo{sent: tracetest.NewInMemoryExporter()}
	if d.gwTP, err = demoapp.NewTracerProvider(demoapp.ServiceGateway,
		sdktrace.WithBatcher(gwExp), sdktrace.WithSyncer(d.sent)); err != nil {
		t.Fatal(err)
	}
	if d.invTP, err = demoapp.NewTracerProvider(demoapp.ServiceInventory,
		sdktrace.WithBatcher(invExp), sdktrace.WithSyncer(d.sent)); err != nil {
		t.Fatal(err)
	}
	d.shop = demoapp.Start(demoapp.Options{Gateway: d.gwTP, Inventory: d.invTP, Forgetful: forgetful})
	d.client = d.shop.Client()
	t.Cleanup(func() {
		d.shop.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.gwTP.Shutdown(ctx)
		_ = d.invTP.Shutdown(ctx)
	})
	return d
}

// flush exports every ended span, inventory-svc's (OTLP/HTTP) first unless
// gatewayFirst, in which case the gateway's (OTLP/gRPC) go first.
func (d *demo) flush(t *testing.T, gatewayFirst bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type provider struct {
		name string
		tp   *sdktrace.TracerProvider
	}
	order := []provider{{"inventory-svc (OTLP/HTTP)", d.invTP}, {"gateway (OTLP/gRPC)", d.gwTP}}
	if gatewayFirst {
		order[0], order[1] = order[1], order[0]
	}
	for _, p := range order {
		if err := p.tp.ForceFlush(ctx); err != nil {
			t.Fatalf("flushing %s: %v", p.name, err)
		}
	}
}

// sentSpans is every span the demo app ended, as sent.
func (d *demo) sentSpans() []canonSpan {
	var out []canonSpan
	for _, s := range d.sent.GetSpans() {
		out = append(out, canonFromSDK(s))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key() < out[j].key() })
	return out
}

// spanNamed finds the one sent span of trace with this name.
func (d *demo) spanNamed(t *testing.T, trace, name string) canonSpan {
	t.Helper()
	var found []canonSpan
	for _, s := range d.sentSpans() {
		if s.TraceID == trace && s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("trace %s has %d spans named %q, want 1", trace, len(found), name)
	}
	return found[0]
}

// ---------------------------------------------------------------- slack

// slackHooks is a local HTTP server standing where Slack's incoming webhook
// would be; it records every message body.
type slackHooks struct {
	srv  *httptest.Server
	mu   sync.Mutex
	msgs []string
}

func newSlackHooks(t *testing.T) *slackHooks {
	h := &slackHooks{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.msgs = append(h.msgs, string(body))
		h.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *slackHooks) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs...)
}

// ---------------------------------------------------------------- metrics

// scrapeText reads /metrics over HTTP; anything but 200 fails the test.
func (c *collector) scrapeText(t *testing.T) []byte {
	t.Helper()
	resp, err := http.Get("http://" + c.metrics + "/metrics")
	if err != nil {
		t.Fatalf("scraping /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scraping /metrics: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping /metrics: %s: %s", resp.Status, tail(string(body), 2<<10))
	}
	return body
}

// scrapeMetrics reads /metrics over HTTP and parses it with the Prometheus
// text parser, returning sample values keyed by name{sorted labels}.
func (c *collector) scrapeMetrics(t *testing.T) map[string]float64 {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(c.scrapeText(t)))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// ---------------------------------------------------------------- the CLI

// cliRun is what one run of the built binary printed and returned.
type cliRun struct {
	stdout, stderr string
	code           int
}

// runCLI runs the built binary with args in dir ("" for the test's own
// directory) and returns its output and exit status.
func runCLI(t *testing.T, dir string, args ...string) cliRun {
	t.Helper()
	cmd := exec.Command(tenantguardBinary(t), args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return cliRun{stdout: stdout.String(), stderr: stderr.String(), code: exit.ExitCode()}
	case err != nil:
		t.Fatalf("tenantguard %q: %v", args, err)
	}
	return cliRun{stdout: stdout.String(), stderr: stderr.String()}
}

// writeJournal writes recs to a new journal in dir and a collector config
// that names it; it returns the config's path.
func writeJournal(t *testing.T, dir string, recs []store.Evidence) (cfgPath, journalPath string) {
	t.Helper()
	journalPath = filepath.Join(dir, "leaks.jsonl")
	j, err := journal.Open(journalPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	cfgPath = filepath.Join(dir, "collector.yaml")
	body := "processors:\n  tenantguard:\n    store:\n      journal: {path: " + strconv.Quote(journalPath) + "}\n"
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, journalPath
}
