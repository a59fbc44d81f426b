package tenantguardprocessor

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/processor/processortest"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrape fetches /metrics over HTTP and parses it as Prometheus does.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value finds the sample of family name whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	fam, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// metricsRun numbers the runs of TestMetricsMoveWithTraffic: the counter
// vectors are declared once per process (metrics.go), and counters of a
// processor id carry over to a new instance with the same id (as across a
// collector's in-process reload), so each run (-count N) uses ids of its own.
var metricsRun atomic.Int64

func TestMetricsMoveWithTraffic(t *testing.T) {
	addr := freeAddr(t)
	run := metricsRun.Add(1)
	sh := newShared() // as one factory's processors share
	newProc := func(name string) *tenantguard {
		cfg := testConfig(t)
		cfg.Metrics.Endpoint = addr
		set := processortest.NewNopSettings(Type)
		set.ID = component.MustNewIDWithName("tenantguard", fmt.Sprintf("%s%d", name, run))
		p, err := newTenantguard(set, cfg, sh)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.start(context.Background(), componenttest.NewNopHost()); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Two instances share one registry and one server.
	a, b := newProc("a"), newProc("b")
	consume(t, a, leakingTrace(1))
	consume(t, a, request(spanSpec{2, 1, 0, "cart-svc", "GET /cart", nil}))
	consume(t, b, request(spanSpec{3, 1, 0, "gateway", "GET /", map[string]any{"tenant.id": "acme"}}))

	fams := scrape(t, addr)
	procA, procB := fmt.Sprintf("tenantguard/a%d", run), fmt.Sprintf("tenantguard/b%d", run)
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"tenantguard_spans_total", map[string]string{"processor": procA}, 4},
		{"tenantguard_spans_total", map[string]string{"processor": procB}, 1},
		{"tenantguard_findings_total", map[string]string{"processor": procA, "rule": "cross_tenant_trace", "severity": "critical"}, 1},
		{"tenantguard_service_spans_total", map[string]string{"processor": procA, "service": "inventory-svc"}, 2},
		{"tenantguard_spans_without_tenant_total", map[string]string{"processor": procA, "service": "inventory-svc"}, 1},
		{"tenantguard_spans_without_tenant_total", map[string]string{"processor": procA, "service": "cart-svc"}, 1},
		{"tenantguard_traces_in_memory", map[string]string{"processor": procA}, 2},
		{"tenantguard_detection_latency_seconds", map[string]string{"processor": procA}, 1},
		{"tenantguard_evidence_queue_capacity", map[string]string{"processor": procA}, 10_000},
		// The leaking request returned once its finding was written.
		{"tenantguard_store_writes_total", map[string]string{"processor": procA, "store": "journal", "result": "ok"}, 1},
		{"tenantguard_store_writes_total", map[string]string{"processor": procA, "store": "journal", "result": "error"}, 0},
	}
	for _, c := range checks {
		got, ok := value(fams, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// ExportedMetrics, which the alert rules are checked against, is what
	// /metrics really serves.
	exp := ExportedMetrics()
	for name, fam := range fams {
		if fam.GetHelp() == "" {
			t.Errorf("%s has no HELP text", name)
		}
		if !strings.HasPrefix(name, namespace+"_") {
			continue
		}
		if want, got := exp[name], strings.ToLower(fam.GetType().String()); want != got {
			t.Errorf("%s is served as a %s, ExportedMetrics says %q", name, got, want)
		}
	}
	// Every other metric is served from the first scrape; dead letters and
	// unknown failures need ClickHouse, pending alerts a notifier that
	// queues (Slack).
	for name := range exp {
		switch name {
		case namespace + "_store_dead_letters_total", namespace + "_store_unknown_failures_total", namespace + "_alert_pending":
			continue
		}
		if _, ok := fams[name]; !ok {
			t.Errorf("ExportedMetrics lists %s, which /metrics does not serve", name)
		}
	}

	if err := a.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The server stays up for b.
	fams = scrape(t, addr)
	for _, name := range []string{"tenantguard_spans_total", "tenantguard_store_writes_total"} {
		if _, ok := value(fams, name, map[string]string{"processor": procA}); ok {
			t.Errorf("a shut-down processor must leave the registry: %s is still served", name)
		}
	}
	if _, ok := value(fams, "tenantguard_store_writes_total", map[string]string{"processor": procB, "store": "journal"}); !ok {
		t.Error("the running processor's store_writes_total is gone")
	}
	if err := b.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(fmt.Sprintf("http://%s/metrics", addr)); err == nil {
		t.Error("the metrics server must stop with its last processor")
	}
}

// Service names are whatever a client sends. Invalid UTF-8 used to fail
// every later scrape (client_golang refuses such label values); names that
// clean up to the same label value must become one series, since two
// samples with equal labels fail the scrape as well.
func TestMetricsSurviveHostileServiceNames(t *testing.T) {
	addr := freeAddr(t)
	cfg := testConfig(t)
	cfg.Metrics.Endpoint = addr
	set := processortest.NewNopSettings(Type)
	set.ID = component.MustNewIDWithName("tenantguard", fmt.Sprintf("hostile%d", metricsRun.Add(1)))
	p, err := newTenantguard(set, cfg, newShared())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	huge := strings.Repeat("é", 1<<19) // 1 MiB
	for i, svc := range []string{"bad\xff", "bad\xfe\xfe", "_other", "ok-svc", huge} {
		consume(t, p, request(spanSpec{byte(100 + i), 1, 0, svc, "op", nil}))
	}
	fams := scrape(t, addr)
	id := set.ID.String()
	for svc, want := range map[string]float64{"bad\uFFFD": 2, "_other": 1, "ok-svc": 1, labelValue(huge): 1} {
		if got, ok := value(fams, "tenantguard_service_spans_total", map[string]string{"processor": id, "service": svc}); !ok || got != want {
			t.Errorf("service %.20q: %v spans (found %v), want %v", svc, got, ok, want)
		}
	}
	for _, m := range fams["tenantguard_service_spans_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if !utf8.ValidString(l.GetValue()) || len(l.GetValue()) > maxLabelValue {
				t.Errorf("label %s=%.40q: not valid UTF-8 or longer than %d bytes", l.GetName(), l.GetValue(), maxLabelValue)
			}
		}
	}
}
