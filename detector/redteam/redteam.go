package redteam

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

// maxRecordedSpans bounds the per-span detail a Guard keeps for
// AssertBlocked. Spans beyond it are still judged by the detector.
const maxRecordedSpans = 100_000

// Option configures a Guard.
type Option func(*settings)

type settings struct {
	cfg      detector.Config
	refusals []int
	check    bool
}

// TenantKeys sets the attribute keys that carry a tenant, most trusted
// first, as the processor's tenant_attributes. Default: tenant.id, tenant_id.
func TenantKeys(keys ...string) Option {
	return func(s *settings) { s.cfg.TenantKeys = slices.Clone(keys) }
}

// AllowServices exempts traces that pass through these services (by
// service.name), as the processor's allow.services.
func AllowServices(services ...string) Option {
	return func(s *settings) { s.cfg.AllowServices = slices.Clone(services) }
}

// SharedTenants names values that never count as a tenant (e.g. "system"),
// as the processor's allow.shared_tenants.
func SharedTenants(tenants ...string) Option {
	return func(s *settings) { s.cfg.SharedTenants = slices.Clone(tenants) }
}

// DetectorConfig judges with exactly the rules production runs, e.g. the
// DetectorConfig() of the collector's tenantguard processor config. Options
// after it still apply.
func DetectorConfig(cfg detector.Config) Option {
	return func(s *settings) { s.cfg = cfg }
}

// RefusalCodes sets the HTTP status codes AssertBlocked accepts as a
// refusal. Default: 401, 403, 404. (gRPC: UNAUTHENTICATED, PERMISSION_DENIED
// and NOT_FOUND always count.)
func RefusalCodes(codes ...int) Option {
	return func(s *settings) { s.refusals = slices.Clone(codes) }
}

// NoCheckAtCleanup stops the Guard from failing the test at cleanup for
// findings no assertion reported; for tests that examine Findings
// themselves.
func NoCheckAtCleanup() Option {
	return func(s *settings) { s.check = false }
}

// Guard judges the spans of a test with the tenantguard detector. It is safe
// for concurrent use: services end spans from their own goroutines.
//
// Of the testing.TB values it is given, a Guard calls only Helper, Errorf,
// Cleanup and (in New, for invalid options) Fatalf, so a recording fake that
// embeds testing.TB and overrides Errorf can check what it reports.
type Guard struct {
	tb       testing.TB
	d        *detector.Detector
	keys     []string
	shared   map[string]bool
	refusals []int
	check    bool

	mu       sync.Mutex
	closed   bool
	spans    int // spans observed
	recorded int // spans kept in traces
	findings map[string]detector.Finding
	reported map[string]bool // leak ids an assertion has reported
	traces   map[detector.TraceID]*traceRecord
}

type traceRecord struct {
	spans      []spanRecord
	incomplete bool // spans arrived after maxRecordedSpans
}

type tenantValue struct {
	key, tenant string
	resource    bool
}

type spanRecord struct {
	id, parent    detector.SpanID
	service, name string
	tenants       []tenantValue // every tenant value, in key order, span before resource
	httpStatus    int           // 0: none recorded
	grpcStatus    int           // -1: none recorded
}

// New returns a Guard for the test tb: hand g.SpanProcessor() to every
// TracerProvider of the services under test. At tb's cleanup the Guard stops
// observing and fails tb for every finding no assertion has reported (unless
// NoCheckAtCleanup). Create it before the services, so that its cleanup runs
// after theirs and sees the spans their shutdown flushes.
func New(tb testing.TB, opts ...Option) *Guard {
	tb.Helper()
	st := settings{cfg: detector.DefaultConfig(), refusals: []int{401, 403, 404}, check: true}
	for _, o := range opts {
		o(&st)
	}
	cfg := st.cfg
	// Nothing expires on a clock in a test: a trace is judged with all the
	// spans it has when an assertion asks.
	cfg.IdleWindow = 24 * time.Hour
	if cfg.MaxTraces <= 0 {
		cfg.MaxTraces = detector.DefaultMaxTraces
	}
	if cfg.MaxSpansPerTrace <= 0 {
		cfg.MaxSpansPerTrace = detector.DefaultMaxSpansPerTrace
	}
	if cfg.MaxEvidenceSpans <= 0 {
		cfg.MaxEvidenceSpans = detector.DefaultMaxEvidenceSpans
	}
	g := &Guard{
		tb:       tb,
		keys:     slices.Clone(cfg.TenantKeys),
		shared:   map[string]bool{},
		refusals: st.refusals,
		check:    st.check,
		findings: map[string]detector.Finding{},
		reported: map[string]bool{},
		traces:   map[detector.TraceID]*traceRecord{},
	}
	for _, s := range cfg.SharedTenants {
		g.shared[strings.TrimSpace(s)] = true
	}
	d, err := detector.New(cfg, g.sink)
	if err != nil {
		tb.Fatalf("redteam.New: %v", err)
		return nil
	}
	g.d = d
	// Tenant key indexes run over the direct keys, then the derivations.
	g.keys = d.Keys()
	tb.Cleanup(g.cleanup)
	return g
}

// sink keeps the latest version of each finding. The detector calls it with
// a shard locked; g.mu is never held while calling the detector.
func (g *Guard) sink(f detector.Finding) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if prev, ok := g.findings[f.LeakID]; !ok || f.Version > prev.Version {
		g.findings[f.LeakID] = f
	}
}

// SpanProcessor returns the processor to register on the services'
// TracerProviders, e.g. sdktrace.WithSpanProcessor(g.SpanProcessor()). It
// judges each span as it ends, synchronously, so a span ended before an
// assertion is always seen by it. Registering it on several providers is
// fine; their Shutdown does not stop the Guard.
func (g *Guard) SpanProcessor() sdktrace.SpanProcessor { return spanProcessor{g} }

type spanProcessor struct{ g *Guard }

func (spanProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (p spanProcessor) OnEnd(s sdktrace.ReadOnlySpan)                 { p.g.observe(s) }
func (spanProcessor) Shutdown(context.Context) error                  { return nil }
func (spanProcessor) ForceFlush(context.Context) error                { return nil }

// observe reads one ended span the way the collector's extractor reads its
// OTLP form: the values under each tenant key on the span's attributes, then
// on its resource's; a string (or int, double) array contributes each
// element.
func (g *Guard) observe(s sdktrace.ReadOnlySpan) {
	sc := s.SpanContext()
	if !sc.TraceID().IsValid() {
		return
	}
	span := detector.Span{
		TraceID:       detector.TraceID(sc.TraceID()),
		SpanID:        detector.SpanID(sc.SpanID()),
		Name:          s.Name(),
		StartUnixNano: unixNano(s.StartTime()),
		EndUnixNano:   unixNano(s.EndTime()),
	}
	if p := s.Parent(); p.SpanID().IsValid() {
		span.ParentID = detector.SpanID(p.SpanID())
	}
	resAttrs := attribute.EmptySet()
	if res := s.Resource(); res != nil {
		resAttrs = res.Set()
		if v, ok := resAttrs.Value("service.name"); ok && v.Type() == attribute.STRING {
			span.Service = v.AsString()
		}
	}
	attrs := s.Attributes()
	spanValue := func(key string) (attribute.Value, bool) {
		for _, kv := range attrs {
			if string(kv.Key) == key {
				return kv.Value, true
			}
		}
		return attribute.Value{}, false
	}
	// As the collector's extractor: the span's keys and derivations, then
	// the resource's.
	for _, src := range []struct {
		get      func(string) (attribute.Value, bool)
		resource bool
	}{
		{spanValue, false},
		{func(k string) (attribute.Value, bool) { return resAttrs.Value(attribute.Key(k)) }, true},
	} {
		for ki, key := range g.d.TenantAttributes() {
			if v, ok := src.get(key); ok {
				span.Tenants = appendRaw(span.Tenants, uint8(ki), src.resource, v)
			}
		}
		for _, dv := range g.d.Derivations() {
			if v, ok := src.get(dv.Attribute); ok && v.Type() == attribute.STRING {
				if t, ok := dv.Derive(v.AsString()); ok {
					span.Tenants = append(span.Tenants, detector.RawTenant{KeyIndex: dv.KeyIndex, Resource: src.resource, Value: detector.StringValue(t)})
				}
			}
		}
	}
	for bi, key := range g.d.BindingAttributes() {
		v, ok := spanValue(key)
		if !ok {
			v, ok = resAttrs.Value(attribute.Key(key))
		}
		if ok && v.Type() == attribute.STRING && v.AsString() != "" {
			span.Identifiers = append(span.Identifiers, detector.Identifier{Binding: uint8(bi), Value: v.AsString()})
		}
	}
	if g.d.WantsQueries() {
		if v, ok := spanValue("db.query.text"); ok && v.Type() == attribute.STRING {
			span.Query = v.AsString()
		} else if v, ok := spanValue("db.statement"); ok && v.Type() == attribute.STRING {
			span.Query = v.AsString()
		}
	}

	rec := spanRecord{id: span.SpanID, parent: span.ParentID, service: span.Service, name: span.Name, grpcStatus: -1}
	for _, rt := range span.Tenants {
		if t, ok := detector.NormalizeTenant(rt.Value); ok {
			rec.tenants = append(rec.tenants, tenantValue{key: g.keys[rt.KeyIndex], tenant: t, resource: rt.Resource})
		}
	}
	span.GRPCStatus = -1
	span.StatusError = s.Status().Code == codes.Error
	for _, kv := range attrs {
		switch kv.Key {
		case "http.response.status_code", "http.status_code":
			if c, ok := intValue(kv.Value); ok {
				rec.httpStatus = c
				span.HTTPStatus = int32(c)
			}
		case "rpc.grpc.status_code":
			if c, ok := intValue(kv.Value); ok {
				rec.grpcStatus = c
				span.GRPCStatus = int32(c)
			}
		case "db.system.name", "db.system":
			span.Data = detector.DataDatabase
			if sys := strings.ToLower(kv.Value.AsString()); sys == "redis" || sys == "memcached" || sys == "valkey" {
				span.Data = detector.DataCache
			}
		case "messaging.system":
			span.Data = detector.DataMessaging
		case "aws.s3.bucket":
			span.Data = detector.DataObjectStorage
		}
	}
	for _, l := range s.Links() {
		if l.SpanContext.TraceID().IsValid() {
			span.Links = append(span.Links, detector.Link{TraceID: detector.TraceID(l.SpanContext.TraceID()), SpanID: detector.SpanID(l.SpanContext.SpanID())})
		}
	}

	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.spans++
	tr := g.traces[span.TraceID]
	if tr == nil {
		tr = &traceRecord{}
		g.traces[span.TraceID] = tr
	}
	if g.recorded < maxRecordedSpans {
		tr.spans = append(tr.spans, rec)
		g.recorded++
	} else {
		tr.incomplete = true
	}
	g.mu.Unlock()

	// One batch per span: the SDK hands spans over one at a time. Rules are
	// judged on everything the trace holds so far.
	b := g.d.NewBatch()
	defer b.Close() // the batch holds a shard's lock after Add
	b.Add(&span)
}

func unixNano(t time.Time) uint64 {
	if t.IsZero() || t.UnixNano() <= 0 {
		return 0
	}
	return uint64(t.UnixNano())
}

func intValue(v attribute.Value) (int, bool) {
	switch v.Type() {
	case attribute.INT64:
		return int(v.AsInt64()), true
	case attribute.STRING:
		c, err := strconv.Atoi(strings.TrimSpace(v.AsString()))
		return c, err == nil
	}
	return 0, false
}

// appendRaw turns one attribute value into raw tenant values, as the
// collector's extractor turns its OTLP form: types that cannot name a
// tenant are passed with no kind, so that the detector counts them as
// rejected.
func appendRaw(dst []detector.RawTenant, key uint8, resource bool, v attribute.Value) []detector.RawTenant {
	add := func(val detector.Value) {
		dst = append(dst, detector.RawTenant{KeyIndex: key, Resource: resource, Value: val})
	}
	switch v.Type() {
	case attribute.STRING:
		add(detector.StringValue(v.AsString()))
	case attribute.INT64:
		add(detector.IntValue(v.AsInt64()))
	case attribute.FLOAT64:
		add(detector.DoubleValue(v.AsFloat64()))
	case attribute.STRINGSLICE:
		for _, s := range v.AsStringSlice() {
			add(detector.StringValue(s))
		}
	case attribute.INT64SLICE:
		for _, i := range v.AsInt64Slice() {
			add(detector.IntValue(i))
		}
	case attribute.FLOAT64SLICE:
		for _, f := range v.AsFloat64Slice() {
			add(detector.DoubleValue(f))
		}
	case attribute.BOOLSLICE:
		for range v.AsBoolSlice() {
			add(detector.Value{})
		}
	default:
		add(detector.Value{})
	}
	return dst
}

// Findings returns the latest version of every finding so far, those
// withdrawn by an allow rule left out, ordered by trace id then rule. They
// are open: the Guard never closes a trace while the test runs.
func (g *Guard) Findings() []detector.Finding {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.current(func(*detector.Finding) bool { return true })
}

// current lists the live findings that keep; g.mu must be held.
func (g *Guard) current(keep func(*detector.Finding) bool) []detector.Finding {
	var out []detector.Finding
	for _, f := range g.findings {
		if f.Status != detector.StatusAllowed && keep(&f) {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b detector.Finding) int {
		if c := strings.Compare(a.TraceID.String(), b.TraceID.String()); c != 0 {
			return c
		}
		return strings.Compare(string(a.Rule), string(b.Rule))
	})
	return out
}

// AssertNoLeaks fails t, listing every finding with its alert sentence, when
// any trace so far crossed a tenant boundary or carried disagreeing tenants.
// It also fails when no span at all reached the Guard: a red-team test that
// checked nothing must not pass.
func (g *Guard) AssertNoLeaks(t testing.TB) {
	t.Helper()
	g.mu.Lock()
	spans := g.spans
	fs := g.current(func(*detector.Finding) bool { return true })
	for _, f := range fs {
		g.reported[f.LeakID] = true
	}
	g.mu.Unlock()
	if spans == 0 {
		t.Errorf("redteam: no span reached the guard, so nothing was checked: register g.SpanProcessor() " +
			"on every service's TracerProvider (sdktrace.WithSpanProcessor) before the services start")
		return
	}
	if len(fs) > 0 {
		t.Errorf("redteam: %s in %s:\n%s", plural(len(fs), "tenant isolation finding", "tenant isolation findings"),
			plural(spans, "span", "spans"), describe(fs))
	}
}

// AssertBlocked fails t unless the request traced as traceID was refused and
// touched none of tenant foreign's data:
//
//   - spans of the trace reached the Guard;
//   - the outermost span that records a response status
//     (http.response.status_code, http.status_code or rpc.grpc.status_code)
//     answered a refusal: 401, 403 or 404 (see RefusalCodes), or gRPC
//     UNAUTHENTICATED, PERMISSION_DENIED or NOT_FOUND;
//   - some span carries a tenant, so the trace shows whose data it read;
//   - no span carries foreign, under any tenant key, on the span or its
//     resource (a span that records a forged tenant header under a tenant
//     key carries it too);
//   - no finding names the trace.
//
// Spans must have ended: with the usual HTTP instrumentation a server span
// ends before the response reaches the client.
func (g *Guard) AssertBlocked(t testing.TB, traceID trace.TraceID, foreign string) {
	t.Helper()
	foreign = strings.TrimSpace(foreign)
	if foreign == "" {
		t.Errorf("redteam: AssertBlocked(%s): name the foreign tenant whose data must stay untouched", traceID)
		return
	}
	id := detector.TraceID(traceID)
	g.mu.Lock()
	var spans []spanRecord
	incomplete := false
	if tr := g.traces[id]; tr != nil {
		spans = slices.Clone(tr.spans)
		incomplete = tr.incomplete
	}
	fs := g.current(func(f *detector.Finding) bool { return f.TraceID == id })
	for _, f := range fs {
		g.reported[f.LeakID] = true
	}
	g.mu.Unlock()

	if len(spans) == 0 && !incomplete {
		t.Errorf("redteam: trace %s: no span of it reached the guard: is the trace id right, have its spans ended, "+
			"and is g.SpanProcessor() registered on every service's TracerProvider?", traceID)
		return
	}
	var problems []string
	if incomplete {
		problems = append(problems, fmt.Sprintf("the guard kept the details of only the first %d spans of the test; "+
			"this trace has spans beyond them", maxRecordedSpans))
	}
	problems = append(problems, g.refusalProblems(spans)...)
	carriesTenant := false
	for _, sp := range spans {
		for _, tv := range sp.tenants {
			if !g.shared[tv.tenant] {
				carriesTenant = true
			}
			if tv.tenant == foreign {
				where := ""
				if tv.resource {
					where = " on its resource"
				}
				problems = append(problems, fmt.Sprintf("%s `%s` (span %s) carries tenant %s under %s%s",
					sp.service, sp.name, sp.id, foreign, tv.key, where))
			}
		}
	}
	if !carriesTenant {
		problems = append(problems, fmt.Sprintf("no span carries a tenant under %s: nothing shows whose data the request read; "+
			"record the tenant on the spans that read data (or pass redteam.TenantKeys)", strings.Join(g.keys, ", ")))
	}
	for _, f := range fs {
		problems = append(problems, fmt.Sprintf("%s %s: %s", f.Severity, f.Rule, message(&f)))
	}
	if len(problems) == 0 {
		return
	}
	who := ""
	if tenant := requestTenant(spans); tenant != "" {
		who = " of tenant " + tenant
	}
	t.Errorf("redteam: the request%s against tenant %s (trace %s) was not blocked:\n  - %s",
		who, foreign, traceID, strings.Join(problems, "\n  - "))
}

// refusalProblems checks the outcome recorded by the outermost spans that
// record one.
func (g *Guard) refusalProblems(spans []spanRecord) []string {
	byID := make(map[detector.SpanID]int, len(spans))
	for i, sp := range spans {
		byID[sp.id] = i
	}
	depth := func(i int) int {
		d := 0
		for p, ok := byID[spans[i].parent]; ok && d <= len(spans); p, ok = byID[spans[p].parent] {
			d++
		}
		return d
	}
	best, outer := math.MaxInt, []int(nil)
	for i, sp := range spans {
		if sp.httpStatus == 0 && sp.grpcStatus < 0 {
			continue
		}
		switch d := depth(i); {
		case d < best:
			best, outer = d, []int{i}
		case d == best:
			outer = append(outer, i)
		}
	}
	if len(outer) == 0 {
		return []string{"no span records a response status (http.response.status_code or rpc.grpc.status_code): " +
			"nothing shows the request was refused"}
	}
	var problems []string
	for _, i := range outer {
		sp := spans[i]
		switch {
		case sp.httpStatus != 0 && !slices.Contains(g.refusals, sp.httpStatus):
			problems = append(problems, fmt.Sprintf("the request was not refused: %s `%s` answered %d (a refusal is %s)",
				sp.service, sp.name, sp.httpStatus, joinInts(g.refusals)))
		case sp.httpStatus == 0 && !slices.Contains([]int{5, 7, 16}, sp.grpcStatus):
			problems = append(problems, fmt.Sprintf("the request was not refused: %s `%s` answered gRPC status %d "+
				"(a refusal is UNAUTHENTICATED, PERMISSION_DENIED or NOT_FOUND)", sp.service, sp.name, sp.grpcStatus))
		}
	}
	return problems
}

// requestTenant is the tenant of the outermost span that has one: whose
// request the trace is.
func requestTenant(spans []spanRecord) string {
	byID := make(map[detector.SpanID]bool, len(spans))
	for _, sp := range spans {
		byID[sp.id] = true
	}
	for _, sp := range spans {
		if !byID[sp.parent] && len(sp.tenants) > 0 {
			return sp.tenants[0].tenant
		}
	}
	for _, sp := range spans {
		if len(sp.tenants) > 0 {
			return sp.tenants[0].tenant
		}
	}
	return ""
}

func (g *Guard) cleanup() {
	g.mu.Lock()
	g.closed = true
	fs := g.current(func(f *detector.Finding) bool { return !g.reported[f.LeakID] })
	g.mu.Unlock()
	if g.check && len(fs) > 0 {
		g.tb.Helper()
		g.tb.Errorf("redteam: %s no assertion reported, at the end of the test:\n%s",
			plural(len(fs), "tenant isolation finding", "tenant isolation findings"), describe(fs))
	}
}

// describe lists findings, one alert sentence and one line of facts each.
func describe(fs []detector.Finding) string {
	var b strings.Builder
	for i := range fs {
		f := &fs[i]
		fmt.Fprintf(&b, "  %s %s: %s\n", f.Severity, f.Rule, message(f))
		fmt.Fprintf(&b, "      trace %s, tenants %s, services %s\n", f.TraceID, strings.Join(f.Tenants, ", "),
			strings.Join(f.Services, ", "))
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// message is the finding's sentence, the one alerts and `tenantguard leaks`
// print (store.Evidence.Message).
func message(f *detector.Finding) string {
	ev := store.NewEvidence(f, "")
	return ev.Message(store.Plain)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}
