package benchkit

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Shape is the traffic a benchmark feeds: the same parameters drive every
// processor, so they all see identical requests.
type Shape struct {
	// SpansPerTrace is the number of spans in each trace (10 by default).
	SpansPerTrace int
	// TracesPerRequest is how many traces' worth of spans one request
	// carries: a request holds TracesPerRequest*SpansPerTrace spans.
	TracesPerRequest int
	// Tenants is the number of distinct tenants traces are spread over.
	Tenants int
	// LeakRate is the fraction of traces with a crossing: one database span
	// of the trace runs for another tenant. Leaking traces are spread evenly.
	LeakRate float64
	// Interleave spreads each trace's spans over this many consecutive
	// requests (round robin), as a collector behind several SDK exporters
	// sees them. 1: every trace arrives whole in one request.
	Interleave int
	// Requests is the size of the pre-generated ring; it is rounded up to a
	// multiple of Interleave so that no trace straddles the ring's wrap.
	Requests int
	// Worker makes trace ids unique between generators that run at once.
	Worker uint16
	// Bare leaves out every attribute but service.name and tenant.id (the
	// scale at which the issue quotes the peers' costs); by default spans
	// carry what OpenTelemetry instrumentation puts on them (HTTP, database
	// and code attributes, eight resource attributes).
	Bare bool
	// RouteOnly: every span, whatever its position in the trace, carries
	// tenant.id and http.route and nothing else; resources carry only
	// service.name (the fresh-state load). Overrides Bare.
	RouteOnly bool
	// Services is how many services the spans are spread over (each a
	// ResourceSpans in every request); 0 means all four of the templates.
	// With fewer, the templates' services fold onto the first ones.
	Services int
}

// DefaultShape is the reference load: 10-span traces in requests of
// 100 traces, 1,000 tenants, 1% of traces leaking, each trace split over two
// requests.
func DefaultShape() Shape {
	return Shape{SpansPerTrace: 10, TracesPerRequest: 100, Tenants: 1000, LeakRate: 0.01, Interleave: 2, Requests: 16}
}

// FreshShape is the fresh-state load: 20,000 new 10-span traces in
// 200 requests of 100 traces, each trace whole in one request, across 3
// services, every span carrying tenant.id and http.route, 1% of traces
// crossing to a second tenant (1,000 tenants, as the reference load). Fed
// once, in order, into a processor that starts empty.
func FreshShape() Shape {
	return Shape{SpansPerTrace: 10, TracesPerRequest: 100, Tenants: 1000, LeakRate: 0.01, Interleave: 1, Requests: 200,
		RouteOnly: true, Services: 3}
}

// SpansPerRequest is the number of spans in one request.
func (s Shape) SpansPerRequest() int { return s.SpansPerTrace * s.TracesPerRequest }

// String names the shape in benchmark names (benchstat splits on '/').
func (s Shape) String() string {
	attrs := "semconv"
	switch {
	case s.RouteOnly:
		attrs = "route"
	case s.Bare:
		attrs = "bare"
	}
	svc := ""
	if s.Services > 0 {
		svc = fmt.Sprintf("/svc=%d", s.Services)
	}
	return fmt.Sprintf("spt=%d/req=%d/tenants=%d/leak=%g/il=%d%s/attrs=%s", s.SpansPerTrace, s.TracesPerRequest, s.Tenants, s.LeakRate, s.Interleave, svc, attrs)
}

// Ring is a set of pre-generated requests fed round robin. Renew gives every
// trace a fresh id between passes, so a processor never sees a trace id
// twice (as in production) while the requests themselves are built once.
type Ring struct {
	Shape    Shape
	Requests []ptrace.Traces
	spans    [][]ptrace.Span
	// Leaks[i] holds the ids of the traces whose crossing span is in request i.
	Leaks [][]pcommon.TraceID
	pass  uint64
}

// span template: what one position in a trace looks like.
type spanTmpl struct {
	parent  int // index of the parent span; -1 for the root
	service int
	name    string
	kind    ptrace.SpanKind
	tenant  bool // carries tenant.id
	db      string
	query   string
	path    bool // carries url.path with the tenant in it
}

var services = []struct {
	name, scope string
}{
	{"gateway", "io.opentelemetry.netty-4.1"},
	{"orders-svc", "io.opentelemetry.spring-webmvc-6.0"},
	{"inventory-svc", "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"},
	{"billing-svc", "opentelemetry.instrumentation.flask"},
}

// A 10-span request through a small shop: gateway → orders → inventory,
// billing; four of the ten spans (internal work, cache) carry no tenant.
var tmpls = []spanTmpl{
	{parent: -1, service: 0, name: "GET /t/{tenant}/orders/{id}", kind: ptrace.SpanKindServer, tenant: true, path: true},
	{parent: 0, service: 0, name: "auth.verify", kind: ptrace.SpanKindInternal},
	{parent: 0, service: 1, name: "GET /orders/{id}", kind: ptrace.SpanKindServer, tenant: true, path: true},
	{parent: 2, service: 1, name: "orders.load", kind: ptrace.SpanKindInternal},
	{parent: 3, service: 1, name: "SELECT orders", kind: ptrace.SpanKindClient, tenant: true, db: "postgresql",
		query: "SELECT o.id, o.total, o.status FROM orders o WHERE o.tenant_id = $1 AND o.id = $2"},
	{parent: 2, service: 2, name: "GET /inventory", kind: ptrace.SpanKindServer, tenant: true, path: true},
	{parent: 5, service: 2, name: "GET", kind: ptrace.SpanKindClient, db: "redis"},
	{parent: 5, service: 2, name: "SELECT stock", kind: ptrace.SpanKindClient, tenant: true, db: "postgresql",
		query: "SELECT sku, qty FROM stock WHERE tenant_id = $1 AND sku = ANY($2)"},
	{parent: 0, service: 3, name: "POST /charge", kind: ptrace.SpanKindServer, tenant: true},
	{parent: 8, service: 3, name: "charge.compute", kind: ptrace.SpanKindInternal},
}

// leakSpan is the template index that runs for the wrong tenant in a
// leaking trace: the inventory query (parent: inventory-svc, tenant A).
const leakSpan = 7

func tmplFor(i int) spanTmpl {
	if i < len(tmpls) {
		return tmpls[i]
	}
	// Longer traces: more internal spans under the orders service.
	t := tmpls[3]
	t.parent = 2
	return t
}

// TenantName is the tenant.id value of tenant i.
func TenantName(i int) string { return "t-" + strconv.Itoa(1000+i) }

// NewRing builds the requests. Construction is not timed by any benchmark.
func NewRing(s Shape) *Ring {
	if s.Interleave < 1 {
		s.Interleave = 1
	}
	if s.Requests < s.Interleave {
		s.Requests = s.Interleave
	}
	s.Requests = (s.Requests + s.Interleave - 1) / s.Interleave * s.Interleave
	nsvc := len(services)
	if s.Services > 0 && s.Services < nsvc {
		nsvc = s.Services
	}
	semconv := !s.Bare && !s.RouteOnly
	r := &Ring{Shape: s, Requests: make([]ptrace.Traces, s.Requests), spans: make([][]ptrace.Span, s.Requests), Leaks: make([][]pcommon.TraceID, s.Requests)}
	base := time.Now().Add(-time.Second)
	tenantNames := make([]string, s.Tenants)
	paths := make([]string, s.Tenants)
	for i := range tenantNames {
		tenantNames[i] = TenantName(i)
		paths[i] = "/t/" + tenantNames[i] + "/orders/4711"
	}
	traceSeq := 0
	for g := 0; g < s.Requests; g += s.Interleave {
		// One group: Interleave requests carrying TracesPerRequest*Interleave
		// traces, span j of each trace in request g + j%Interleave.
		reqs := make([]ptrace.Traces, s.Interleave)
		byService := make([][]ptrace.ScopeSpans, s.Interleave)
		for k := range reqs {
			reqs[k] = ptrace.NewTraces()
			byService[k] = make([]ptrace.ScopeSpans, nsvc)
			for si, svc := range services[:nsvc] {
				rs := reqs[k].ResourceSpans().AppendEmpty()
				ra := rs.Resource().Attributes()
				ra.PutStr("service.name", svc.name)
				if s.Bare || s.RouteOnly {
					rs.ScopeSpans().AppendEmpty()
					byService[k][si] = rs.ScopeSpans().At(0)
					continue
				}
				ra.PutStr("service.version", "1.42.0")
				ra.PutStr("service.instance.id", svc.name+"-7d9f8c-x2k4")
				ra.PutStr("host.name", "node-17.eu-west-1")
				ra.PutStr("deployment.environment.name", "production")
				ra.PutStr("telemetry.sdk.language", "go")
				ra.PutStr("telemetry.sdk.name", "opentelemetry")
				ra.PutStr("telemetry.sdk.version", "1.47.0")
				ss := rs.ScopeSpans().AppendEmpty()
				ss.Scope().SetName(svc.scope)
				ss.Scope().SetVersion("0.72.0")
				byService[k][si] = ss
			}
		}
		for t := 0; t < s.TracesPerRequest*s.Interleave; t++ {
			seq := traceSeq
			traceSeq++
			tenant := seq % s.Tenants
			leaks := s.LeakRate > 0 && int(float64(seq+1)*s.LeakRate) > int(float64(seq)*s.LeakRate)
			var tid [16]byte
			binary.BigEndian.PutUint64(tid[0:8], mix(0))
			binary.BigEndian.PutUint64(tid[8:16], uint64(s.Worker)<<48|uint64(seq))
			spanIDs := make([][8]byte, s.SpansPerTrace)
			for j := range spanIDs {
				binary.BigEndian.PutUint64(spanIDs[j][:], mix(uint64(seq)<<16|uint64(j)+1)|1)
			}
			for j := 0; j < s.SpansPerTrace; j++ {
				tm := tmplFor(j)
				k := j % s.Interleave
				sp := byService[k][tm.service%nsvc].Spans().AppendEmpty()
				sp.SetTraceID(tid)
				sp.SetSpanID(spanIDs[j])
				if tm.parent >= 0 && tm.parent < s.SpansPerTrace {
					sp.SetParentSpanID(spanIDs[tm.parent])
				}
				sp.SetName(tm.name)
				sp.SetKind(tm.kind)
				start := base.Add(time.Duration(j) * 150 * time.Microsecond)
				sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
				sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Duration(10-min(j, 9)) * time.Millisecond)))
				a := sp.Attributes()
				switch {
				case s.RouteOnly:
					a.PutStr("http.route", tm.name)
				case s.Bare:
				case tm.kind == ptrace.SpanKindServer:
					a.PutStr("http.request.method", "GET")
					a.PutStr("http.route", tm.name)
					a.PutInt("http.response.status_code", 200)
					a.PutStr("server.address", services[tm.service].name)
					a.PutStr("network.protocol.version", "1.1")
					a.PutStr("user_agent.original", "shop-web/3.1 (+https://example.com)")
				case tm.kind == ptrace.SpanKindClient:
					a.PutStr("server.address", "db-primary.internal")
					a.PutInt("server.port", 5432)
				default:
					a.PutStr("code.function.name", tm.name)
				}
				if tm.path && semconv {
					a.PutStr("url.path", paths[tenant])
				}
				if tm.db != "" && semconv {
					a.PutStr("db.system.name", tm.db)
					a.PutStr("db.namespace", "shop")
					if tm.query != "" {
						a.PutStr("db.query.text", tm.query)
						a.PutStr("db.operation.name", "SELECT")
					}
				}
				if tm.tenant || s.RouteOnly {
					ten := tenant
					if leaks && j == leakSpan {
						ten = (tenant + 1) % s.Tenants
					}
					a.PutStr("tenant.id", tenantNames[ten])
				}
				if leaks && j == leakSpan {
					r.Leaks[g+k] = append(r.Leaks[g+k], pcommon.TraceID(tid))
				}
			}
		}
		for k := range reqs {
			r.Requests[g+k] = reqs[k]
			r.spans[g+k] = allSpans(reqs[k])
		}
	}
	return r
}

func allSpans(td ptrace.Traces) []ptrace.Span {
	var out []ptrace.Span
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				out = append(out, sp)
			}
		}
	}
	return out
}

// Renew gives every trace in the ring a new id (the same new id for all
// spans of a trace, so interleaved traces stay whole). Call it between
// passes, outside the timed region where possible.
func (r *Ring) Renew() {
	r.pass++
	hi := mix(r.pass)
	for _, spans := range r.spans {
		for _, sp := range spans {
			id := sp.TraceID()
			binary.BigEndian.PutUint64(id[0:8], hi)
			sp.SetTraceID(id)
		}
	}
	for _, ids := range r.Leaks {
		for i := range ids {
			binary.BigEndian.PutUint64(ids[i][0:8], hi)
		}
	}
}

// Spans is the number of spans in the ring.
func (r *Ring) Spans() int { return len(r.Requests) * r.Shape.SpansPerRequest() }

// mix is splitmix64's finalizer: ids look random, as real ones do.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
