package processor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/alerts"
	"github.com/tenantguard/tenantguard/detector"
)

// Every tenantguard metric is declared here, once. All tenantguard
// processors in a process share one registry and, per endpoint, one HTTP
// server; the `processor` label (the component id) tells them apart.
const namespace = "tenantguard"

var (
	descSpans = prometheus.NewDesc(namespace+"_spans_total",
		"Spans the detector has read.", []string{"processor"}, nil)
	descSpansInvalid = prometheus.NewDesc(namespace+"_spans_invalid_total",
		"Spans with an all-zero trace id: forwarded, but not grouped or judged.", []string{"processor"}, nil)
	descServiceSpans = prometheus.NewDesc(namespace+"_service_spans_total",
		"Spans per service; service \"_other\" counts services beyond metrics.max_services, and a service idle for metrics.service_idle is dropped.", []string{"processor", "service"}, nil)
	descSpansWithoutTenant = prometheus.NewDesc(namespace+"_spans_without_tenant_total",
		"Spans per service that carried no tenant under any configured key: unattributed paths are where leaks hide.", []string{"processor", "service"}, nil)
	descSpansLate = prometheus.NewDesc(namespace+"_spans_late_total",
		"Spans that arrived for a trace the detector had most likely already closed (ended more than an idle window ago).", []string{"processor"}, nil)
	descTenantsRejected = prometheus.NewDesc(namespace+"_tenant_values_rejected_total",
		"Tenant attribute values rejected: too long, or of a type that cannot name a tenant.", []string{"processor"}, nil)
	descTraces = prometheus.NewDesc(namespace+"_traces_in_memory",
		"Traces held in memory.", []string{"processor"}, nil)
	descTracesExpired = prometheus.NewDesc(namespace+"_traces_expired_total",
		"Traces closed after their idle window.", []string{"processor"}, nil)
	descTracesEvicted = prometheus.NewDesc(namespace+"_traces_evicted_total",
		"Traces pushed out by max_traces before their idle window ended: crossings in them can be missed.", []string{"processor"}, nil)
	descQueueLength = prometheus.NewDesc(namespace+"_evidence_queue_length",
		"Findings waiting for the evidence store.", []string{"processor"}, nil)
	descQueueCapacity = prometheus.NewDesc(namespace+"_evidence_queue_capacity",
		"Capacity of the evidence queue (queue_size).", []string{"processor"}, nil)
	descDropped = prometheus.NewDesc(namespace+"_evidence_dropped_total",
		"Findings lost because the evidence queue was full.", []string{"processor"}, nil)
	descBacklog = prometheus.NewDesc(namespace+"_store_backlog_records",
		"Findings not yet durably stored (journal) or not yet shipped (clickhouse).", []string{"processor", "store"}, nil)
	descLastSuccess = prometheus.NewDesc(namespace+"_store_last_success_timestamp_seconds",
		"When the store last accepted a write, in unix seconds.", []string{"processor", "store"}, nil)
	descDeadLetters = prometheus.NewDesc(namespace+"_store_dead_letters_total",
		"Records a store refused for good and moved to its dead-letter file.", []string{"processor", "store"}, nil)
	descAlertPending = prometheus.NewDesc(namespace+"_alert_pending",
		"Alerts waiting for delivery.", []string{"processor", "notifier"}, nil)

	findingsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "findings_total",
		Help: "New findings, by rule and severity.",
	}, []string{"processor", "rule", "severity"})
	detectionLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "detection_latency_seconds",
		Help: "Time from the trace's first span reaching the detector to the finding.",
		// Up to 5m: a crossing found only when a slow trace's last span
		// arrives must still land in a bucket the alert rules can see.
		Buckets: []float64{0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300},
	}, []string{"processor"})
	storeWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "store_writes_total",
		Help: "Batches written to an evidence store, by result (ok, error).",
	}, []string{"processor", "store", "result"})
	alertDeliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "alert_deliveries_total",
		Help: "Alert delivery attempts, by notifier and result (delivered, retried, failed, grouped, skipped).",
	}, []string{"processor", "notifier", "result"})
)

// telemetry is the process-wide registry and its servers.
var telemetry = struct {
	sync.Mutex
	reg       *prometheus.Registry
	instances map[*tenantguard]struct{}
	servers   map[string]*metricsServer
}{instances: map[*tenantguard]struct{}{}, servers: map[string]*metricsServer{}}

func registry() *prometheus.Registry {
	// Called with telemetry locked.
	if telemetry.reg == nil {
		telemetry.reg = prometheus.NewRegistry()
		telemetry.reg.MustRegister(stateCollector{}, findingsTotal, detectionLatency, storeWrites, alertDeliveries)
	}
	return telemetry.reg
}

type metricsServer struct {
	srv  *http.Server
	refs int
}

// registerTelemetry adds p to the registry and starts (or shares) the
// server for its endpoint. An endpoint that cannot be bound fails the
// start, as a receiver's does: a collector that runs without the metrics
// its alerts watch looks healthy while nobody would hear of a leak.
func registerTelemetry(p *tenantguard) error {
	telemetry.Lock()
	defer telemetry.Unlock()
	reg := registry()
	telemetry.instances[p] = struct{}{}
	// Series exist at zero from the start, so increase() sees the first
	// finding and the first failure.
	for _, rule := range detector.Rules {
		for _, sev := range []detector.Severity{detector.SeverityCritical, detector.SeverityHigh, detector.SeverityMedium, detector.SeverityLow} {
			findingsTotal.WithLabelValues(p.id, string(rule), string(sev))
		}
	}
	detectionLatency.WithLabelValues(p.id)
	for _, result := range []string{"ok", "error"} {
		storeWrites.WithLabelValues(p.id, "journal", result)
	}
	for _, result := range []string{alerts.ResultDelivered, alerts.ResultRetried, alerts.ResultFailed, alerts.ResultGrouped, alerts.ResultSkipped} {
		alertDeliveries.WithLabelValues(p.id, "log", result)
		if p.cfg.Alerts.Slack.Enabled() {
			alertDeliveries.WithLabelValues(p.id, "slack", result)
		}
	}
	ep := p.cfg.Metrics.Endpoint
	if ep == "" {
		return nil
	}
	if s, ok := telemetry.servers[ep]; ok {
		s.refs++
		return nil
	}
	ln, err := net.Listen("tcp", ep)
	if err != nil {
		delete(telemetry.instances, p)
		// err reads "listen tcp 127.0.0.1:9464: bind: address already in use".
		return fmt.Errorf("metrics.endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: zap.NewStdLog(p.logger)}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	telemetry.servers[ep] = &metricsServer{srv: srv, refs: 1}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.logger.Error("metrics server stopped", zap.String("endpoint", ep), zap.Error(err))
		}
	}()
	p.logger.Info("serving Prometheus metrics", zap.String("endpoint", "http://"+ln.Addr().String()+"/metrics"))
	return nil
}

func unregisterTelemetry(ctx context.Context, p *tenantguard) {
	telemetry.Lock()
	defer telemetry.Unlock()
	delete(telemetry.instances, p)
	ep := p.cfg.Metrics.Endpoint
	s, ok := telemetry.servers[ep]
	if !ok {
		return
	}
	if s.refs--; s.refs > 0 {
		return
	}
	delete(telemetry.servers, ep)
	_ = s.srv.Shutdown(ctx)
}

// stateCollector reads each processor's counters at scrape time, so the
// span path pays nothing for metrics.
type stateCollector struct{}

func (stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSpans, descSpansInvalid, descServiceSpans, descSpansWithoutTenant, descSpansLate,
		descTenantsRejected, descTraces, descTracesExpired, descTracesEvicted, descQueueLength, descQueueCapacity,
		descDropped, descBacklog, descLastSuccess, descDeadLetters, descAlertPending} {
		ch <- d
	}
}

func (stateCollector) Collect(ch chan<- prometheus.Metric) {
	telemetry.Lock()
	instances := make([]*tenantguard, 0, len(telemetry.instances))
	for p := range telemetry.instances {
		instances = append(instances, p)
	}
	telemetry.Unlock()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labelValues(labels)...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labelValues(labels)...)
	}
	for _, p := range instances {
		id := p.id
		st := p.det.Stats()
		counter(descSpans, float64(st.Spans), id)
		counter(descSpansInvalid, float64(p.invalidSpans.Load()), id)
		counter(descSpansLate, float64(st.SpansLate), id)
		counter(descTenantsRejected, float64(st.TenantsRejected), id)
		gauge(descTraces, float64(st.TracesActive), id)
		counter(descTracesExpired, float64(st.TracesExpired), id)
		counter(descTracesEvicted, float64(st.TracesEvicted), id)
		for svc, c := range serviceSeries(p.det.Coverage()) {
			counter(descServiceSpans, float64(c.Spans), id, svc)
			counter(descSpansWithoutTenant, float64(c.WithoutTenant), id, svc)
		}
		qlen := p.queue.len()
		gauge(descQueueLength, float64(qlen), id)
		gauge(descQueueCapacity, float64(p.cfg.QueueSize), id)
		counter(descDropped, float64(p.queueFull.Load()), id)
		gauge(descBacklog, float64(qlen), id, "journal")
		// 0 until the first write succeeds, so "no success for 10m" fires
		// for a store that never worked.
		gauge(descLastSuccess, float64(p.lastStored.Load())/1e9, id, "journal")
		for _, b := range p.backlogs() {
			gauge(descBacklog, float64(b.records), id, b.store)
			var last float64
			if !b.lastSuccess.IsZero() {
				last = float64(b.lastSuccess.UnixNano()) / 1e9
			}
			gauge(descLastSuccess, last, id, b.store)
			counter(descDeadLetters, float64(b.deadLetters), id, b.store)
		}
		for _, n := range p.pendingAlerts() {
			gauge(descAlertPending, float64(n.pending), id, n.notifier)
		}
	}
}

// observeFinding counts a finding version; only the first counts as a
// finding, and its latency is the detection latency.
func (p *tenantguard) observeFinding(f *detector.Finding) {
	if !f.New {
		return
	}
	findingsTotal.WithLabelValues(labelValues([]string{p.id, string(f.Rule), string(f.Severity)})...).Inc()
	if !f.ArrivedAt.IsZero() {
		detectionLatency.WithLabelValues(p.id).Observe(f.DetectedAt.Sub(f.ArrivedAt).Seconds())
	}
}

// maxLabelValue bounds a label value, in bytes.
const maxLabelValue = detector.MaxNameLength

// labelValue makes s fit to be a Prometheus label value: valid UTF-8
// (client_golang refuses anything else, and one refused value fails every
// scrape) and at most maxLabelValue bytes. Every label value passes through
// here; service names come from whoever can send OTLP.
func labelValue(s string) string {
	return detector.CapString(strings.ToValidUTF8(s, "\uFFFD"), maxLabelValue)
}

// labelValues applies labelValue to each of vs, in place.
func labelValues(vs []string) []string {
	for i, v := range vs {
		vs[i] = labelValue(v)
	}
	return vs
}

// serviceSeries keys coverage by label value. Distinct service names can
// give one label value (two invalid byte sequences both become U+FFFD, a
// service that calls itself "_other"): their counts are added, since two
// samples with the same labels would fail the scrape.
func serviceSeries(cov map[string]detector.ServiceCoverage) map[string]detector.ServiceCoverage {
	out := make(map[string]detector.ServiceCoverage, len(cov))
	for svc, c := range cov {
		k := labelValue(svc)
		cur := out[k]
		cur.Spans += c.Spans
		cur.WithoutTenant += c.WithoutTenant
		out[k] = cur
	}
	return out
}
