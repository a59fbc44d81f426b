package redteam

import (
	"context"
	"fmt"
	"math"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenantguard/tenantguard/detector"
)

// recorder is a testing.TB that records what a Guard reports and holds its
// cleanups until run is called.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func newRecorder(t *testing.T) *recorder { return &recorder{TB: t} }

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) { r.Errorf(format, args...) }

func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

func (r *recorder) runCleanups() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
}

// take returns and forgets what was recorded.
func (r *recorder) take() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := strings.Join(r.errs, "\n")
	r.errs = nil
	return out
}

// provider is a TracerProvider for one service whose spans g judges.
func provider(t *testing.T, g *Guard, service string, resAttrs ...attribute.KeyValue) trace.Tracer {
	t.Helper()
	res := resource.NewSchemaless(append([]attribute.KeyValue{attribute.String("service.name", service)}, resAttrs...)...)
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSpanProcessor(g.SpanProcessor()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp.Tracer("redteam-test")
}

// request ends a server span (tenant and status as given) with one child
// span per element of children, each carrying its tenant attributes.
func request(tr trace.Tracer, name string, attrs []attribute.KeyValue, children ...[]attribute.KeyValue) trace.TraceID {
	ctx, root := tr.Start(context.Background(), name, trace.WithAttributes(attrs...))
	for i, c := range children {
		_, child := tr.Start(ctx, fmt.Sprintf("child %d", i), trace.WithAttributes(c...))
		child.End()
	}
	root.End()
	return root.SpanContext().TraceID()
}

func tenant(t string) attribute.KeyValue { return attribute.String("tenant.id", t) }
func status(c int) attribute.KeyValue    { return attribute.Int("http.response.status_code", c) }

func keysOf(fs []detector.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s %s", f.Rule, strings.Join(f.Tenants, ",")))
	}
	return out
}

// TestNormalizationMatchesDetector: the tenants AssertBlocked compares are
// exactly the tenants the detector's findings name.
func TestNormalizationMatchesDetector(t *testing.T) {
	cases := []struct {
		name string
		val  attribute.KeyValue
	}{
		{"string", attribute.String("tenant.id", "globex")},
		{"padded string", attribute.String("tenant.id", "  globex \t")},
		{"int", attribute.Int64("tenant.id", 42)},
		{"negative int", attribute.Int64("tenant.id", -7)},
		{"integral double", attribute.Float64("tenant.id", 42.0)},
		{"fractional double", attribute.Float64("tenant.id", 1.5)},
		{"huge double", attribute.Float64("tenant.id", 1e300)},
		{"double at int64 edge", attribute.Float64("tenant.id", -9.223372036854775808e18)},
		{"NaN", attribute.Float64("tenant.id", math.NaN())},
		{"infinity", attribute.Float64("tenant.id", math.Inf(1))},
		{"empty string", attribute.String("tenant.id", "   ")},
		{"too long", attribute.String("tenant.id", strings.Repeat("x", detector.MaxTenantLength+1))},
		{"longest allowed", attribute.String("tenant.id", strings.Repeat("y", detector.MaxTenantLength))},
		{"bool", attribute.Bool("tenant.id", true)},
		{"string slice", attribute.StringSlice("tenant.id", []string{"globex"})},
		{"int slice", attribute.Int64Slice("tenant.id", []int64{9})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := New(t, NoCheckAtCleanup())
			id := request(provider(t, g, "svc"), "root", []attribute.KeyValue{tenant("ref")}, []attribute.KeyValue{tc.val})
			var want []string
			raw := appendRaw(nil, 0, false, tc.val.Value)
			for _, r := range raw {
				if s, ok := detector.NormalizeTenant(r.Value); ok {
					want = append(want, s)
				}
			}
			var got []string
			for _, f := range g.Findings() {
				if f.TraceID != detector.TraceID(id) || f.Rule != detector.RuleCrossTenantTrace {
					continue
				}
				for _, tn := range f.Tenants {
					if tn != "ref" {
						got = append(got, tn)
					}
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("detector found tenants %q beside ref, normalizeTenant gives %q", got, want)
			}
		})
	}
}

// TestImportsStayLight: a service's own tests import redteam, so it must
// not pull in the collector, Slack or ClickHouse clients; it reaches the
// finding's message through the store's record alone.
func TestImportsStayLight(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/tenantguard/tenantguard/store") {
		t.Fatalf("redteam no longer imports store; update this test")
	}
	for _, d := range deps {
		for _, heavy := range []string{"github.com/slack-go/", "go.opentelemetry.io/collector", "github.com/ClickHouse/",
			"github.com/tenantguard/tenantguard/alerts", "github.com/tenantguard/tenantguard/processor/tenantguardprocessor"} {
			if strings.HasPrefix(d, heavy) {
				t.Errorf("redteam depends on %s", d)
			}
		}
	}
}

// TestGuardReadsSpansLikeTheCollector: span attributes before resource
// attributes, most trusted key first, string arrays element by element,
// allow rules and shared tenants as configured.
func TestGuardReadsSpansLikeTheCollector(t *testing.T) {
	t.Run("resource tenant of a siloed service", func(t *testing.T) {
		g := New(t, NoCheckAtCleanup())
		gw := provider(t, g, "gateway")
		silo := provider(t, g, "reports-acme", tenant("acme"))
		ctx, root := gw.Start(context.Background(), "GET /reports", trace.WithAttributes(tenant("globex")))
		_, s := silo.Start(ctx, "GET /reports")
		s.End()
		root.End()
		fs := g.Findings()
		if got := keysOf(fs); !slices.Equal(got, []string{"cross_tenant_trace acme,globex"}) {
			t.Fatalf("findings %q", got)
		}
		e := fs[0].Edges
		if len(e) != 1 || e[0].From.Service != "gateway" || e[0].To.Service != "reports-acme" || e[0].To.Tenant != "acme" {
			t.Errorf("edges %+v", e)
		}
	})
	t.Run("forged header under a less trusted key", func(t *testing.T) {
		g := New(t, NoCheckAtCleanup(), TenantKeys("tenant.id", "http.request.header.x-tenant-id"))
		tr := provider(t, g, "gateway")
		request(tr, "GET /documents/{id}", []attribute.KeyValue{
			tenant("acme"), attribute.StringSlice("http.request.header.x-tenant-id", []string{"globex"}),
		})
		fs := g.Findings()
		if got := keysOf(fs); !slices.Equal(got, []string{"tenant_mismatch acme,globex"}) {
			t.Fatalf("findings %q", got)
		}
		want := []detector.TenantSource{{Key: "tenant.id", Tenant: "acme"}, {Key: "http.request.header.x-tenant-id", Tenant: "globex"}}
		if len(fs[0].Mismatches) != 1 || !slices.Equal(fs[0].Mismatches[0].Values, want) {
			t.Errorf("mismatches %+v", fs[0].Mismatches)
		}
	})
	t.Run("the span's own attribute wins over its resource", func(t *testing.T) {
		g := New(t, NoCheckAtCleanup())
		tr := provider(t, g, "worker", tenant("acme"))
		request(tr, "job", []attribute.KeyValue{tenant("acme")})
		if fs := g.Findings(); len(fs) != 0 {
			t.Errorf("same tenant on span and resource: %q", keysOf(fs))
		}
	})
	t.Run("allow services and shared tenants", func(t *testing.T) {
		g := New(t, NoCheckAtCleanup(), AllowServices("admin-console"), SharedTenants("system"))
		admin := provider(t, g, "admin-console")
		shop := provider(t, g, "shop")
		request(admin, "list tenants", []attribute.KeyValue{tenant("acme")}, []attribute.KeyValue{tenant("globex")})
		request(shop, "catalog", []attribute.KeyValue{tenant("acme")}, []attribute.KeyValue{tenant("system")})
		if fs := g.Findings(); len(fs) != 0 {
			t.Errorf("allowed traffic produced %q", keysOf(fs))
		}
		request(shop, "leak", []attribute.KeyValue{tenant("acme")}, []attribute.KeyValue{tenant("globex")})
		if got := keysOf(g.Findings()); !slices.Equal(got, []string{"cross_tenant_trace acme,globex"}) {
			t.Errorf("findings %q", got)
		}
	})
	t.Run("derivations, key bindings and unscoped queries", func(t *testing.T) {
		cfg := detector.DefaultConfig()
		cfg.Derivations = []detector.Derivation{{Attribute: "url.path", Pattern: `^/t/(?P<tenant>[^/]+)/`}}
		cfg.Bindings = []detector.Binding{{Attribute: "auth.jwt.kid", Tenants: map[string]string{"kid-acme": "acme", "kid-globex": "globex"}}}
		cfg.ScopedTables = []string{"stock"}
		g := New(t, NoCheckAtCleanup(), DetectorConfig(cfg))
		request(provider(t, g, "shop"), "GET /t/acme/cart", []attribute.KeyValue{attribute.String("url.path", "/t/acme/cart")},
			[]attribute.KeyValue{attribute.String("url.path", "/t/globex/cart")})
		request(provider(t, g, "gateway"), "GET /orders", []attribute.KeyValue{tenant("acme"), attribute.String("auth.jwt.kid", "kid-globex")})
		request(provider(t, g, "inventory-svc"), "SELECT stock", []attribute.KeyValue{tenant("acme"),
			attribute.String("db.system.name", "postgresql"), attribute.String("db.query.text", "SELECT sku, qty FROM stock")})
		got := keysOf(g.Findings())
		slices.Sort(got)
		want := []string{"cross_tenant_trace acme,globex", "foreign_signing_key acme,globex", "unscoped_query acme"}
		if !slices.Equal(got, want) {
			t.Errorf("findings %q, want %q", got, want)
		}
	})
	t.Run("detector config", func(t *testing.T) {
		cfg := detector.DefaultConfig()
		cfg.TenantKeys = []string{"org"}
		g := New(t, NoCheckAtCleanup(), DetectorConfig(cfg))
		request(provider(t, g, "svc"), "r", []attribute.KeyValue{attribute.String("org", "a")},
			[]attribute.KeyValue{attribute.String("org", "b"), tenant("a")})
		if got := keysOf(g.Findings()); !slices.Equal(got, []string{"cross_tenant_trace a,b"}) {
			t.Errorf("findings %q", got)
		}
	})
}

func TestNewRejectsBadOptions(t *testing.T) {
	rec := newRecorder(t)
	if g := New(rec, TenantKeys()); g != nil {
		t.Error("New with no tenant key returned a guard")
	}
	if got := rec.take(); !strings.Contains(got, "tenant_attributes") {
		t.Errorf("New must name the bad setting, said %q", got)
	}
}

func TestAssertBlocked(t *testing.T) {
	type want struct {
		pass bool
		says []string
	}
	cases := []struct {
		name  string
		opts  []Option
		drive func(t *testing.T, g *Guard) trace.TraceID
		want  want
	}{
		{
			name: "refused, own tenant only",
			drive: func(t *testing.T, g *Guard) trace.TraceID {
				return request(provider(t, g, "gateway"), "GET /item", []attribute.KeyValue{tenant("acme"), status(404)},
					[]attribute.KeyValue{tenant("acme")})
			},
			want: want{pass: true},
		},
		{
			name: "status on the server span under an unrecorded caller span",
			drive: func(t *testing.T, g *Guard) trace.TraceID {
				caller := sdktrace.NewTracerProvider() // the test's own client: not guarded
				ctx, c := caller.Tracer("client").Start(context.Background(), "client")
				_, s := provider(t, g, "gateway").Start(ctx, "GET /item", trace.WithAttributes(tenant("acme"), status(403)))
				s.End()
				c.End()
				return c.SpanContext().TraceID()
			},
			want: want{pass: true},
		},
		{
			name: "gRPC permission denied",
			drive: func(t *testing.T, g *Guard) trace.TraceID {
				return request(provider(t, g, "api"), "Get", []attribute.KeyValue{tenant("acme"), attribute.Int("rpc.grpc.status_code", 7)})
			},
			want: want{pass: true},
		},
		{
			name: "custom refusal codes",
			opts: []Option{RefusalCodes(422)},
			drive: func(t *testing.T, g *Guard) trace.TraceID {
				return request(provider(t, g, "gateway"), "GET /item", []attribute.KeyValue{tenant("acme"), status(404)})
			},
			want: want{says: []string{"gateway `GET /item` answered 404 (a refusal is 422)"}},
		},
		{
			name: "served: not refused, foreign rows read",
			drive: func(t *testing.T, g *Guard) trace.TraceID {
				return request(provider(t, g, "gateway"), "GET /item", []attribute.KeyValue{tenant("acme"), status(200)},
					[]attribute.KeyValue{tenant("globex")})
			},
			want: want{says: []string{
				"the request of tenant acme against tenant globex",
				"answered 200",
				"gateway `child 0` (span ",
				"carries tenant globex under tenant.id",
				"high cross_tenant_trace: trace ",
			}},
		},
		{
			name: "refused, but the foreign tenant's data was read on the way",
			drive: func(t *testing.T, g *Guard) trace.TraceID {
				return request(provider(t, g, "gateway"), "GET /item", []attribute.KeyValue{tenant("acme"), status(403)},
					[]attribute.KeyValue{tenant("globex")})
			},
			want: want{says: []string{"carries tenant globex under tenant.id", "cross_tenant_trace"}},
		},
		{
			name: "foreign tenant on a resource",
			drive: func(t *testing.T, g *Guard) trace.TraceID {
				ctx, root := provider(t, g, "gateway").Start(context.Background(), "GET /item",
					trace.WithAttributes(tenant("acme"), status(404)))
				_, s := provider(t, g, "globex-silo", tenant("globex")).Start(ctx, "lookup")
				s.End()
				root.End()
				return root.SpanContext().TraceID()
			},
			want: want{says: []string{"globex-silo `lookup`", "carries tenant globex under tenant.id on its resource"}},
		},
		{
			name: "no status recorded",
			drive: func(t *testing.T, g *Guard) trace.TraceID {
				return request(provider(t, g, "gateway"), "GET /item", []attribute.KeyValue{tenant("acme")})
			},
			want: want{says: []string{"no span records a response status"}},
		},
		{
			name: "no tenant anywhere",
			drive: func(t *testing.T, g *Guard) trace.TraceID {
				return request(provider(t, g, "gateway"), "GET /item", []attribute.KeyValue{status(401)})
			},
			want: want{says: []string{"no span carries a tenant under tenant.id, tenant_id"}},
		},
		{
			name: "unknown trace",
			drive: func(t *testing.T, g *Guard) trace.TraceID {
				request(provider(t, g, "gateway"), "GET /item", []attribute.KeyValue{tenant("acme"), status(404)})
				return trace.TraceID{0xde, 0xad}
			},
			want: want{says: []string{"no span of it reached the guard"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t)
			g := New(rec, tc.opts...)
			id := tc.drive(t, g)
			g.AssertBlocked(rec, id, "globex")
			got := rec.take()
			if tc.want.pass && got != "" {
				t.Fatalf("AssertBlocked failed:\n%s", got)
			}
			if !tc.want.pass && got == "" {
				t.Fatal("AssertBlocked passed")
			}
			for _, s := range tc.want.says {
				if !strings.Contains(got, s) {
					t.Errorf("AssertBlocked must say %q; it said:\n%s", s, got)
				}
			}
			// Findings AssertBlocked reported are not reported again.
			rec.runCleanups()
			if again := rec.take(); again != "" {
				t.Errorf("cleanup reported again:\n%s", again)
			}
		})
	}
	t.Run("no foreign tenant named", func(t *testing.T) {
		rec := newRecorder(t)
		g := New(rec)
		g.AssertBlocked(rec, trace.TraceID{1}, " ")
		if got := rec.take(); !strings.Contains(got, "name the foreign tenant") {
			t.Errorf("said %q", got)
		}
	})
}

func TestAssertNoLeaks(t *testing.T) {
	t.Run("nothing observed is a failure", func(t *testing.T) {
		rec := newRecorder(t)
		New(rec).AssertNoLeaks(rec)
		if got := rec.take(); !strings.Contains(got, "no span reached the guard") {
			t.Errorf("said %q", got)
		}
	})
	t.Run("clean traffic passes", func(t *testing.T) {
		rec := newRecorder(t)
		g := New(rec)
		request(provider(t, g, "svc"), "r", []attribute.KeyValue{tenant("acme")}, []attribute.KeyValue{tenant("acme")})
		g.AssertNoLeaks(rec)
		rec.runCleanups()
		if got := rec.take(); got != "" {
			t.Errorf("said %q", got)
		}
	})
	t.Run("every finding is listed once", func(t *testing.T) {
		rec := newRecorder(t)
		g := New(rec, TenantKeys("tenant.id", "x-tenant"))
		tr := provider(t, g, "svc")
		request(tr, "a", []attribute.KeyValue{tenant("acme")}, []attribute.KeyValue{tenant("globex")})
		request(tr, "b", []attribute.KeyValue{tenant("acme"), attribute.String("x-tenant", "initech")})
		g.AssertNoLeaks(rec)
		got := rec.take()
		for _, s := range []string{"2 tenant isolation findings in 3 spans", "high cross_tenant_trace: trace ",
			"reached tenant globex at svc `child 0`, from svc `a`", "high tenant_mismatch: svc `b` in trace ", "(tenant.id=acme, x-tenant=initech)"} {
			if !strings.Contains(got, s) {
				t.Errorf("must say %q; said:\n%s", s, got)
			}
		}
		rec.runCleanups()
		if again := rec.take(); again != "" {
			t.Errorf("cleanup reported again:\n%s", again)
		}
	})
}

func TestCleanupFailsOnUnreportedFindings(t *testing.T) {
	leak := func(t *testing.T, g *Guard) {
		request(provider(t, g, "svc"), "r", []attribute.KeyValue{tenant("acme")}, []attribute.KeyValue{tenant("globex")})
	}
	rec := newRecorder(t)
	g := New(rec)
	leak(t, g)
	rec.runCleanups()
	if got := rec.take(); !strings.Contains(got, "1 tenant isolation finding no assertion reported") ||
		!strings.Contains(got, "tenant globex") {
		t.Errorf("cleanup said %q", got)
	}
	// After cleanup the guard observes nothing more.
	leak(t, g)
	if n := len(g.Findings()); n != 1 {
		t.Errorf("%d findings after cleanup, want the 1 from before", n)
	}

	rec = newRecorder(t)
	g = New(rec, NoCheckAtCleanup())
	leak(t, g)
	rec.runCleanups()
	if got := rec.take(); got != "" {
		t.Errorf("NoCheckAtCleanup: cleanup said %q", got)
	}
}

// TestGuardConcurrentSpans ends spans from many goroutines at once (run
// with -race): every trace is judged, none twice.
func TestGuardConcurrentSpans(t *testing.T) {
	g := New(t, NoCheckAtCleanup())
	gw := provider(t, g, "gateway")
	db := provider(t, g, "db")
	const workers, perWorker = 16, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				owner := "acme"
				if (w*perWorker+i)%10 == 0 {
					owner = "globex" // every tenth request reads the wrong tenant's rows
				}
				ctx, root := gw.Start(context.Background(), "GET", trace.WithAttributes(tenant("acme")))
				_, q := db.Start(ctx, "SELECT", trace.WithAttributes(tenant(owner)))
				q.End()
				root.End()
			}
		})
	}
	wg.Wait()
	fs := g.Findings()
	if len(fs) != workers*perWorker/10 {
		t.Errorf("%d findings, want %d", len(fs), workers*perWorker/10)
	}
	seen := map[detector.TraceID]bool{}
	for _, f := range fs {
		if seen[f.TraceID] || f.Rule != detector.RuleCrossTenantTrace || len(f.Edges) != 1 {
			t.Errorf("unexpected finding %s %s edges %d", f.Rule, f.TraceID, len(f.Edges))
		}
		seen[f.TraceID] = true
	}
	g.mu.Lock()
	spans := g.spans
	g.mu.Unlock()
	if spans != 2*workers*perWorker {
		t.Errorf("guard saw %d spans, want %d", spans, 2*workers*perWorker)
	}
}
