package tenantguardprocessor

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
	"github.com/tenantguard/tenantguard/internal/sharedcomponent"
)

// Every tenantguard metric is declared here, once. The tenantguard
// processors of one factory (a collector has one) share one registry and,
// per endpoint, one HTTP server (telemetry); the `processor` label (the
// component id) tells them apart.
const namespace = "tenantguard"

var (
	descSpans = newDesc(prometheus.CounterValue, "spans_total",
		"Spans the detector has read.", "processor")
	descSpansInvalid = newDesc(prometheus.CounterValue, "spans_invalid_total",
		"Spans with an all-zero trace id: forwarded, but not grouped or judged.", "processor")
	descServiceSpans = newDesc(prometheus.CounterValue, "service_spans_total",
		"Spans per service; service \"_other\" counts services beyond metrics.max_services, and a service idle for metrics.service_idle is dropped.", "processor", "service")
	descSpansWithoutTenant = newDesc(prometheus.CounterValue, "spans_without_tenant_total",
		"Spans per service that carried no tenant under any configured key: unattributed paths are where leaks hide.", "processor", "service")
	descSpansLate = newDesc(prometheus.CounterValue, "spans_late_total",
		"Spans that arrived for a trace the detector had most likely already closed (ended more than an idle window ago).", "processor")
	descTenantsRejected = newDesc(prometheus.CounterValue, "tenant_values_rejected_total",
		"Tenant attribute values rejected: too long, of a type that cannot name a tenant, or a derivation match at the 4 KiB cut.", "processor")
	descTraces = newDesc(prometheus.GaugeValue, "traces_in_memory",
		"Traces held in memory.", "processor")
	descTracesExpired = newDesc(prometheus.CounterValue, "traces_expired_total",
		"Traces closed after their idle window.", "processor")
	descTracesEvicted = newDesc(prometheus.CounterValue, "traces_evicted_total",
		"Traces pushed out by max_traces before their idle window ended: crossings in them can be missed.", "processor")
	descQueueLength = newDesc(prometheus.GaugeValue, "evidence_queue_length",
		"Findings waiting for the evidence store.", "processor")
	descQueueCapacity = newDesc(prometheus.GaugeValue, "evidence_queue_capacity",
		"Capacity of the evidence queue (queue_size).", "processor")
	descDropped = newDesc(prometheus.CounterValue, "evidence_dropped_total",
		"Findings lost because the evidence queue was full.", "processor")
	descHeldForOthers = newDesc(prometheus.CounterValue, "requests_held_for_others_total",
		"Requests acknowledged only once the requests in flight with them had landed, because one of those judged some of their spans.", "processor")
	descBacklog = newDesc(prometheus.GaugeValue, "store_backlog_records",
		"Findings not yet durably stored (journal) or not yet shipped (clickhouse).", "processor", "store")
	descLastSuccess = newDesc(prometheus.GaugeValue, "store_last_success_timestamp_seconds",
		"When the store last accepted a write, in unix seconds.", "processor", "store")
	descStoreWrites = newDesc(prometheus.CounterValue, "store_writes_total",
		"Batches written to an evidence store, by result: ok, or error for each failed attempt (retries count).", "processor", "store", "result")
	descDeadLetters = newDesc(prometheus.CounterValue, "store_dead_letters_total",
		"Records a store refused for good and moved to its dead-letter file.", "processor", "store")
	descUnknownFailures = newDesc(prometheus.CounterValue, "store_unknown_failures_total",
		"Store failures of a cause the shipper cannot tell (a server error code it does not know): retried with backoff, never dead-lettered.", "processor", "store")
	descAlertPending = newDesc(prometheus.GaugeValue, "alert_pending",
		"Alerts waiting for delivery.", "processor", "notifier")

	findingsTotal = newCounterVec("findings_total",
		"New findings, by rule and severity.", "processor", "rule", "severity")
	// Up to 5m: a crossing found only when a slow trace's last span arrives
	// must still land in a bucket the alert rules can see.
	detectionLatency = newHistogramVec("detection_latency_seconds",
		"Time from the trace's first span reaching the detector to the finding.",
		[]float64{0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300}, "processor")
	alertDeliveries = newCounterVec("alert_deliveries_total",
		"Alert delivery attempts, by notifier and result (delivered, retried, failed, grouped, skipped).", "processor", "notifier", "result")
)

// metricDesc is a metric read at scrape time (stateCollector) and its type.
type metricDesc struct {
	*prometheus.Desc
	valueType prometheus.ValueType
}

var (
	// exported maps every metric name to its type (counter, gauge,
	// histogram); ExportedMetrics hands out copies.
	exported = map[string]string{}
	// scraped are the metricDescs stateCollector describes.
	scraped []metricDesc
)

func newDesc(vt prometheus.ValueType, name, help string, labels ...string) metricDesc {
	d := metricDesc{prometheus.NewDesc(namespace+"_"+name, help, labels, nil), vt}
	exported[namespace+"_"+name] = map[prometheus.ValueType]string{prometheus.CounterValue: "counter", prometheus.GaugeValue: "gauge"}[vt]
	scraped = append(scraped, d)
	return d
}

func newCounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	exported[namespace+"_"+name] = "counter"
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
}

func newHistogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	exported[namespace+"_"+name] = "histogram"
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, labels)
}

// ExportedMetrics returns the name and type (counter, gauge, histogram) of
// every metric /metrics serves, so that alert rules can be checked against
// what is really exported.
func ExportedMetrics() map[string]string { return maps.Clone(exported) }

// telemetry is what the processors of one factory share for /metrics: one
// registry, the instances it reads at scrape time, and one server per
// endpoint, held by reference count.
type telemetry struct {
	reg       *prometheus.Registry
	mu        sync.Mutex
	instances map[*tenantguard]struct{}
	servers   sharedcomponent.Map[string, *http.Server]
}

func newTelemetry() *telemetry {
	t := &telemetry{reg: prometheus.NewRegistry(), instances: map[*tenantguard]struct{}{}}
	t.reg.MustRegister(stateCollector{t}, findingsTotal, detectionLatency, alertDeliveries)
	return t
}

// register adds p to the registry and starts (or shares) the server for
// its endpoint. An endpoint that cannot be bound fails the start, as a
// receiver's does: a collector that runs without the metrics its alerts
// watch looks healthy while nobody would hear of a leak.
func (t *telemetry) register(p *tenantguard) error {
	// Series exist at zero from the start, so increase() sees the first
	// finding and the first failure.
	for _, rule := range detector.Rules {
		for _, sev := range []detector.Severity{detector.SeverityCritical, detector.SeverityHigh, detector.SeverityMedium, detector.SeverityLow} {
			findingsTotal.WithLabelValues(p.id, string(rule), string(sev))
		}
	}
	detectionLatency.WithLabelValues(p.id)
	for _, result := range []string{alerts.ResultDelivered, alerts.ResultRetried, alerts.ResultFailed, alerts.ResultGrouped, alerts.ResultSkipped} {
		alertDeliveries.WithLabelValues(p.id, "log", result)
		if p.cfg.Alerts.Slack.Enabled() {
			alertDeliveries.WithLabelValues(p.id, "slack", result)
		}
	}
	if ep := p.cfg.Metrics.Endpoint; ep != "" {
		if _, err := t.servers.Acquire(ep, func() (*http.Server, error) { return t.serve(ep, p.logger) }); err != nil {
			return err
		}
	}
	t.mu.Lock()
	t.instances[p] = struct{}{}
	t.mu.Unlock()
	return nil
}

// serve starts the metrics server for ep.
func (t *telemetry) serve(ep string, logger *zap.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", ep)
	if err != nil {
		// err reads "listen tcp 127.0.0.1:9464: bind: address already in use".
		return nil, fmt.Errorf("metrics.endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(t.reg, promhttp.HandlerOpts{ErrorLog: zap.NewStdLog(logger)}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", zap.String("endpoint", ep), zap.Error(err))
		}
	}()
	logger.Info("serving Prometheus metrics", zap.String("endpoint", "http://"+ln.Addr().String()+"/metrics"))
	return srv, nil
}

// unregister takes p out of the registry and lets go of its server: the
// last processor on an endpoint shuts it down.
func (t *telemetry) unregister(ctx context.Context, p *tenantguard) {
	t.mu.Lock()
	_, registered := t.instances[p]
	delete(t.instances, p)
	t.mu.Unlock()
	if ep := p.cfg.Metrics.Endpoint; registered && ep != "" {
		_ = t.servers.Release(ep, func(srv *http.Server) error { return srv.Shutdown(ctx) })
	}
}

// stateCollector reads each processor's counters at scrape time, so the
// span path pays nothing for metrics.
type stateCollector struct{ t *telemetry }

func (stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range scraped {
		ch <- d.Desc
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.t.mu.Lock()
	instances := make([]*tenantguard, 0, len(c.t.instances))
	for p := range c.t.instances {
		instances = append(instances, p)
	}
	c.t.mu.Unlock()
	emit := func(d metricDesc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d.Desc, d.valueType, v, labelValues(labels)...)
	}
	for _, p := range instances {
		id := p.id
		st := p.det.Stats()
		emit(descSpans, float64(st.Spans), id)
		emit(descSpansInvalid, float64(p.invalidSpans.Load()), id)
		emit(descSpansLate, float64(st.SpansLate), id)
		emit(descTenantsRejected, float64(st.TenantsRejected), id)
		emit(descTraces, float64(st.TracesActive), id)
		emit(descTracesExpired, float64(st.TracesExpired), id)
		emit(descTracesEvicted, float64(st.TracesEvicted), id)
		for svc, c := range serviceSeries(p.det.Coverage()) {
			emit(descServiceSpans, float64(c.Spans), id, svc)
			emit(descSpansWithoutTenant, float64(c.WithoutTenant), id, svc)
		}
		qlen := p.queue.len()
		emit(descQueueLength, float64(qlen), id)
		emit(descQueueCapacity, float64(p.cfg.QueueSize), id)
		emit(descDropped, float64(p.queueFull.Load()), id)
		emit(descHeldForOthers, float64(p.heldForOthers.Load()), id)
		emit(descBacklog, float64(qlen), id, "journal")
		// 0 until the first write succeeds, so "no success for 10m" fires
		// for a store that never worked.
		emit(descLastSuccess, float64(p.lastStored.Load())/1e9, id, "journal")
		emit(descStoreWrites, float64(p.journalWrites.Load()), id, "journal", "ok")
		emit(descStoreWrites, float64(p.storeFailures.Load()), id, "journal", "error")
		for _, b := range p.backlogs() {
			emit(descBacklog, float64(b.records), id, b.store)
			var last float64
			if !b.lastSuccess.IsZero() {
				last = float64(b.lastSuccess.UnixNano()) / 1e9
			}
			emit(descLastSuccess, last, id, b.store)
			emit(descDeadLetters, float64(b.deadLetters), id, b.store)
			emit(descUnknownFailures, float64(b.unknownFailures), id, b.store)
			emit(descStoreWrites, float64(b.writes), id, b.store, "ok")
			emit(descStoreWrites, float64(b.writeFailures), id, b.store, "error")
		}
		for _, n := range p.pendingAlerts() {
			emit(descAlertPending, float64(n.pending), id, n.notifier)
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
