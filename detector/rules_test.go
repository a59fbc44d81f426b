package detector_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

const (
	blockedRule = detector.RuleBlockedAttempt
	keyRule     = detector.RuleForeignSigningKey
)

func withHTTP(s detector.Span, code int32) detector.Span {
	s.HTTPStatus = code
	s.GRPCStatus = -1
	return s
}
func withData(s detector.Span, k detector.DataKind) detector.Span { s.Data = k; return s }

func TestOutcomeSplitsLeaksFromBlockedAttempts(t *testing.T) {
	gw := func(tr detector.TraceID) detector.Span { return span(tr, 1, 0, "gateway", "GET /orders", ten("acme")) }
	for _, tc := range []struct {
		name     string
		child    func(tr detector.TraceID) detector.Span
		wantRule detector.Rule
		wantSev  detector.Severity
	}{
		{"succeeded into foreign data is critical", func(tr detector.TraceID) detector.Span {
			return withData(span(tr, 2, 1, "orders-db", "SELECT orders", ten("globex")), detector.DataDatabase)
		}, cross, detector.SeverityCritical},
		{"succeeded without data is high", func(tr detector.TraceID) detector.Span {
			return withHTTP(span(tr, 2, 1, "orders", "GET /orders/{id}", ten("globex")), 200)
		}, cross, detector.SeverityHigh},
		{"HTTP 403 is a blocked attempt", func(tr detector.TraceID) detector.Span {
			return withHTTP(span(tr, 2, 1, "orders", "GET /orders/{id}", ten("globex")), 403)
		}, blockedRule, detector.SeverityLow},
		{"HTTP 404 is a blocked attempt", func(tr detector.TraceID) detector.Span {
			return withHTTP(span(tr, 2, 1, "orders", "GET /orders/{id}", ten("globex")), 404)
		}, blockedRule, detector.SeverityLow},
		{"gRPC PERMISSION_DENIED is a blocked attempt", func(tr detector.TraceID) detector.Span {
			s := span(tr, 2, 1, "orders", "orders.Get", ten("globex"))
			s.GRPCStatus = 7
			return s
		}, blockedRule, detector.SeverityLow},
		{"an error status is a blocked attempt", func(tr detector.TraceID) detector.Span {
			s := withData(span(tr, 2, 1, "orders-db", "SELECT orders", ten("globex")), detector.DataDatabase)
			s.StatusError = true
			return s
		}, blockedRule, detector.SeverityLow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			tr := tid(1)
			h.batch(gw(tr), tc.child(tr))
			h.d.Flush()
			fs := h.rec.all()
			var rules []detector.Rule
			for _, f := range fs {
				if !slices.Contains(rules, f.Rule) {
					rules = append(rules, f.Rule)
				}
			}
			if !slices.Equal(rules, []detector.Rule{tc.wantRule}) {
				t.Fatalf("rules = %v, want only %s: %s", rules, tc.wantRule, describe(fs))
			}
			f := h.rec.last(t, tr, tc.wantRule)
			if f.Severity != tc.wantSev || f.Reason == "" {
				t.Errorf("severity %s (%q), want %s with a reason", f.Severity, f.Reason, tc.wantSev)
			}
			wantOutcome := detector.OutcomeSucceeded
			if tc.wantRule == blockedRule {
				wantOutcome = detector.OutcomeBlocked
			}
			if len(f.Edges) != 1 || f.Edges[0].Outcome != wantOutcome {
				t.Errorf("edges %+v, want one %s edge", f.Edges, wantOutcome)
			}
		})
	}
}

// A crossing reported before its edge was known is reclassified when the
// edge shows it was refused.
func TestCrossingReclassifiedWhenTheEdgeTurnsOutBlocked(t *testing.T) {
	h := newHarness(t, nil)
	tr := tid(2)
	h.batch(span(tr, 1, 0, "gateway", "GET /orders", ten("acme")), withHTTP(span(tr, 3, 2, "orders", "load", ten("globex")), 403))
	if f := h.rec.last(t, tr, cross); f.Status != detector.StatusOpen || len(f.Edges) != 0 {
		t.Fatalf("without the middle span the crossing is reported as a leak: %s", describe(h.rec.all()))
	}
	h.batch(span(tr, 2, 1, "gateway", "call orders"))
	if f := h.rec.last(t, tr, cross); f.Status != detector.StatusReclassified {
		t.Fatalf("the leak must be reclassified once the edge shows a 403: %s", describe(h.rec.all()))
	}
	b := h.rec.last(t, tr, blockedRule)
	if b.Severity != detector.SeverityLow || len(b.Edges) != 1 || b.Edges[0].Hops != 1 {
		t.Fatalf("blocked attempt: %+v", b)
	}
}

func TestMismatchOnARefusedRequestIsLow(t *testing.T) {
	h := newHarness(t, nil)
	tr := tid(3)
	h.batch(withHTTP(span(tr, 1, 0, "gateway", "GET /docs", ten("acme"), tk(1, detector.StringValue("globex"))), 403))
	if f := h.rec.last(t, tr, mismatch); f.Severity != detector.SeverityLow {
		t.Fatalf("severity %s, want low for a refused forged header", f.Severity)
	}
}

func TestDerivation(t *testing.T) {
	cfg := detector.DefaultConfig()
	cfg.Derivations = []detector.Derivation{
		{Attribute: "url.path", Pattern: `^/t/(?P<tenant>[^/]+)/`},
		{Attribute: "db.namespace", Pattern: `^tenant_(?P<tenant>\w+)$`},
	}
	d, err := detector.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Keys(); !slices.Equal(got, []string{"tenant.id", "tenant_id", "url.path", "db.namespace"}) {
		t.Fatalf("keys %v", got)
	}
	dv := d.Derivations()
	for _, tc := range []struct {
		d    int
		in   string
		want string
		ok   bool
	}{
		{0, "/t/acme/orders/17", "acme", true},
		{0, "/orders/17", "", false},
		{1, "tenant_globex", "globex", true},
		{1, "public", "", false},
		{0, "/t/" + strings.Repeat("a", 10_000) + "/x", "", false}, // only the first 4 KiB are read
	} {
		got, ok := dv[tc.d].Derive(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("derivation %d on %.30q = %q %v, want %q %v", tc.d, tc.in, got, ok, tc.want, tc.ok)
		}
	}
	if dv[1].KeyIndex != 3 {
		t.Errorf("second derivation's key index %d, want 3", dv[1].KeyIndex)
	}
}

func TestDerivationConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		pattern, want string
	}{
		{`^/t/([^/]+)/`, "no named group `tenant`"},
		{`(?P<tenant>a)(?P<tenant>b)`, "more than one group named tenant"},
		{`(?P<tenant>[a-z]*)`, "matches the empty string"},
		{`(?P<tenant>(a|b|c|d|e|f|g|h){1,1000})`, "too costly"},
		{`(?P<tenant>[`, "tenant_derivations[0].regex"},
	} {
		cfg := detector.DefaultConfig()
		cfg.Derivations = []detector.Derivation{{Attribute: "url.path", Pattern: tc.pattern}}
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("pattern %q: want error containing %q, got %v", tc.pattern, tc.want, err)
		}
	}
}

func keySpan(tr detector.TraceID, id int, tenant, kid string) detector.Span {
	s := span(tr, id, 0, "api", "GET /orders", ten(tenant))
	s.Identifiers = []detector.Identifier{{Binding: 0, Value: kid}}
	return s
}

func TestForeignSigningKey(t *testing.T) {
	h := newHarness(t, func(c *detector.Config) {
		c.Bindings = []detector.Binding{{Attribute: "auth.jwt.kid",
			Tenants: map[string]string{"kid-acme": "acme", "kid-globex": "globex"}, Global: []string{"kid-legacy"}}}
	})
	h.batch(keySpan(tid(1), 1, "acme", "kid-acme"), keySpan(tid(2), 1, "acme", "kid-unknown"))
	if n := h.rec.len(); n != 0 {
		t.Fatalf("own and unknown keys are no finding: %s", describe(h.rec.all()))
	}
	h.batch(keySpan(tid(3), 1, "acme", "kid-globex"), keySpan(tid(4), 1, "acme", "kid-legacy"))
	foreign := h.rec.last(t, tid(3), keyRule)
	if foreign.Severity != detector.SeverityCritical || len(foreign.Keys) != 1 || foreign.Keys[0].KeyTenant != "globex" ||
		foreign.Keys[0].SpanTenant != "acme" || foreign.Keys[0].Identifier != "kid-globex" || foreign.Keys[0].Attribute != "auth.jwt.kid" {
		t.Fatalf("foreign key finding: %+v", foreign)
	}
	if !slices.Equal(foreign.Tenants, []string{"acme", "globex"}) {
		t.Errorf("tenants %v: the key's owner is a tenant the request reached for", foreign.Tenants)
	}
	global := h.rec.last(t, tid(4), keyRule)
	if len(global.Keys) != 1 || !global.Keys[0].Global {
		t.Fatalf("global key finding: %+v", global)
	}
}

func TestSpanLinkCrossing(t *testing.T) {
	h := newHarness(t, nil)
	producer, consumer, clean := tid(10), tid(11), tid(12)
	h.batch(span(producer, 1, 0, "checkout", "publish order", ten("acme")))
	c := span(consumer, 1, 0, "fulfilment", "process order", ten("globex"))
	c.Links = []detector.Link{{TraceID: producer, SpanID: sid(1)}}
	ok := span(clean, 1, 0, "fulfilment", "process order", ten("acme"))
	ok.Links = []detector.Link{{TraceID: producer, SpanID: sid(1)}}
	h.batch(c, ok)
	f := h.rec.last(t, consumer, cross)
	if len(f.Edges) != 1 || !f.Edges[0].Link || f.Edges[0].From.TraceID != producer || f.Edges[0].From.Tenant != "acme" ||
		f.Edges[0].From.Service != "checkout" || f.Edges[0].To.Tenant != "globex" {
		t.Fatalf("link edge: %+v", f.Edges)
	}
	if got := h.rec.of(clean, cross); len(got) != 0 {
		t.Fatalf("a consumer of the same tenant is no crossing: %s", describe(got))
	}
	if got := h.rec.of(producer, cross); len(got) != 0 {
		t.Fatalf("the producer's trace did not cross: %s", describe(got))
	}
}

func TestMissingTenantIsRateLimitedPerServiceAndRoute(t *testing.T) {
	h := newHarness(t, func(c *detector.Config) {
		c.TenantAwareServices = []string{"orders"}
		c.CoverageWindow = time.Minute
	})
	h.batch(span(tid(1), 1, 0, "orders", "GET /orders"), span(tid(2), 1, 0, "orders", "GET /orders"),
		span(tid(3), 1, 0, "orders", "POST /orders"), span(tid(4), 1, 0, "healthcheck", "GET /health"),
		span(tid(5), 1, 0, "orders", "GET /orders", ten("acme")))
	got := h.rec.all()
	if len(got) != 2 {
		t.Fatalf("want one missing_tenant per route (2), got %s", describe(got))
	}
	for _, f := range got {
		if f.Rule != detector.RuleMissingTenant || f.Severity != detector.SeverityMedium || f.Services[0] != "orders" {
			t.Errorf("finding %+v", f)
		}
	}
	if st := h.d.Stats(); st.Suppressed != 1 {
		t.Errorf("suppressed %d, want 1", st.Suppressed)
	}
	h.clock.Advance(2 * time.Minute)
	h.batch(span(tid(6), 1, 0, "orders", "GET /orders"))
	if n := len(h.rec.all()); n != 3 {
		t.Fatalf("after the window the route is reported again: %d findings", n)
	}
	if a, b := h.rec.all()[0].LeakID, h.rec.all()[2].LeakID; a == b {
		t.Errorf("each window's finding has its own leak id")
	}
}

func TestLateSpanJoinsTheClosedTrace(t *testing.T) {
	h := newHarness(t, func(c *detector.Config) { c.IdleWindow = time.Second; c.LateWindow = time.Minute })
	clean, leak := tid(20), tid(21)
	h.batch(span(clean, 1, 0, "gateway", "GET /", ten("acme")))
	h.batch(span(leak, 1, 0, "gateway", "GET /inventory", ten("acme")), span(leak, 2, 1, "inventory", "SELECT", ten("globex")))
	h.clock.Advance(2 * time.Second)
	h.d.Sweep() // both traces close
	before := h.rec.last(t, leak, cross)
	if before.Status != detector.StatusClosed {
		t.Fatalf("trace should be closed: %+v", before)
	}
	h.clock.Advance(10 * time.Second)
	// A late span of another tenant in the clean trace: caught.
	h.batch(span(clean, 9, 1, "billing", "charge", ten("initech")))
	late := h.rec.last(t, clean, cross)
	if !slices.Equal(late.Tenants, []string{"acme", "initech"}) || !late.New {
		t.Fatalf("late crossing: %+v", late)
	}
	// A late span of a third tenant in the leaking trace: the same finding,
	// never poorer than before.
	h.batch(span(leak, 9, 1, "billing", "charge", ten("umbrella")))
	again := h.rec.last(t, leak, cross)
	if again.LeakID != before.LeakID || again.New || again.Version <= before.Version {
		t.Fatalf("late version must continue the finding: before %+v after %+v", before, again)
	}
	if !slices.Equal(again.Tenants, []string{"acme", "globex", "umbrella"}) || len(again.Edges) < len(before.Edges) ||
		again.SpanCount != 3 || !again.DetectedAt.Equal(before.DetectedAt) {
		t.Fatalf("late version lost evidence: %+v", again)
	}
	if st := h.d.Stats(); st.SpansLate != 2 {
		t.Errorf("SpansLate %d, want 2", st.SpansLate)
	}
	// Past the late window (counted from the last close) a span starts a
	// new, unrelated trace state.
	h.clock.Advance(2 * time.Minute)
	h.d.Sweep() // closes the reopened traces: their tombstones start again
	h.clock.Advance(2 * time.Minute)
	h.d.Sweep()
	n := h.rec.len()
	h.batch(span(clean, 10, 1, "x", "y", ten("hooli")))
	if h.rec.len() != n {
		t.Fatalf("past the late window nothing is joined: %s", describe(h.rec.since(n)))
	}
}

func TestAllowedBySpanExemptsTheTrace(t *testing.T) {
	h := newHarness(t, nil)
	tr := tid(30)
	root := span(tr, 1, 0, "support-console", "GET /support/tickets", ten("acme"))
	root.AllowedBy = "allow.conditions[0]"
	h.batch(root, span(tr, 2, 1, "orders", "GET /orders", ten("globex")))
	if n := h.rec.len(); n != 0 {
		t.Fatalf("an allow condition exempts the trace: %s", describe(h.rec.all()))
	}
}

// A consumer's request can overtake its producer's: the link waits.
func TestSpanLinkWaitsForItsProducer(t *testing.T) {
	h := newHarness(t, nil)
	producer, consumer := tid(40), tid(41)
	c := span(consumer, 1, 0, "fulfilment", "process order", ten("globex"))
	c.Links = []detector.Link{{TraceID: producer, SpanID: sid(1)}}
	h.batch(c)
	if h.rec.len() != 0 {
		t.Fatalf("nothing to say before the producer arrives: %s", describe(h.rec.all()))
	}
	h.batch(span(producer, 1, 0, "checkout", "publish order", ten("acme")))
	f := h.rec.last(t, consumer, cross)
	if len(f.Edges) != 1 || !f.Edges[0].Link || f.Edges[0].From.Tenant != "acme" {
		t.Fatalf("late producer: %+v", f.Edges)
	}
	if st := h.d.Stats(); st.LinksUnresolved != 0 {
		t.Errorf("LinksUnresolved %d", st.LinksUnresolved)
	}
	// A link whose producer never comes is counted after an idle window.
	lost := span(tid(42), 1, 0, "fulfilment", "process order", ten("globex"))
	lost.Links = []detector.Link{{TraceID: tid(43), SpanID: sid(1)}}
	h.batch(lost)
	h.clock.Advance(2 * h.cfg.IdleWindow)
	h.d.Sweep()
	if st := h.d.Stats(); st.LinksUnresolved != 1 {
		t.Errorf("LinksUnresolved %d, want 1", st.LinksUnresolved)
	}
}

// Batch.Annotate sees every finding version the batch raises, those a span
// link raises in Close included, and what it fills is carried into later
// versions built without it (the close at the idle window).
func TestAnnotateSeesEveryFindingOfTheBatch(t *testing.T) {
	h := newHarness(t, nil)
	annotate := func(f *detector.Finding) {
		for i := range f.Spans {
			if f.Spans[i].Detail == nil {
				f.Spans[i].Detail = &detector.SpanDetail{Kind: "annotated"}
			}
		}
	}
	batch := func(spans ...detector.Span) {
		b := h.d.NewBatch()
		b.Annotate = annotate
		for i := range spans {
			b.Add(&spans[i])
		}
		b.Close()
	}
	producer, consumer, direct := tid(10), tid(11), tid(12)
	batch(span(producer, 1, 0, "checkout", "publish order", ten("acme")))
	c := span(consumer, 1, 0, "fulfilment", "process order", ten("globex"))
	c.Links = []detector.Link{{TraceID: producer, SpanID: sid(1)}}
	batch(c, span(direct, 1, 0, "gateway", "GET /", ten("acme")), span(direct, 2, 1, "inventory", "SELECT", ten("globex")))
	h.clock.Advance(h.cfg.IdleWindow + time.Second)
	h.d.Sweep()
	for _, tr := range []detector.TraceID{consumer, direct} {
		vs := h.rec.of(tr, cross)
		if len(vs) < 2 {
			t.Fatalf("trace %v: want an open and a closed version, got %s", tr, describe(vs))
		}
		for _, f := range vs {
			annotated := 0
			for _, s := range f.Spans {
				if s.Detail != nil && s.Detail.Kind == "annotated" {
					annotated++
				}
			}
			// Every span of these traces came in an annotated batch; the
			// consumer's evidence may also name the producer's span.
			if annotated == 0 || (tr == direct && annotated != len(f.Spans)) {
				t.Errorf("trace %v %s version: %d of %d evidence spans with the batch's details", tr, f.Status, annotated, len(f.Spans))
			}
		}
	}
}

// The span that read the foreign tenant's data is evidence of a critical
// finding even when it is not on the crossing edge: the edge enters globex
// at the service's handler, the query runs below it.
func TestCriticalEvidenceHoldsTheDataSpan(t *testing.T) {
	h := newHarness(t, nil)
	tr := tid(1)
	h.batch(span(tr, 1, 0, "gateway", "GET /inventory", ten("acme")),
		span(tr, 2, 1, "inventory-svc", "GET /stock", ten("globex")),
		withData(span(tr, 3, 2, "inventory-svc", "SELECT stock", ten("globex")), detector.DataDatabase))
	f := h.rec.last(t, tr, cross)
	if f.Severity != detector.SeverityCritical || len(f.Edges) != 1 || f.Edges[0].To.SpanID != sid(2) {
		t.Fatalf("want a critical finding with the edge into GET /stock: %s %+v", f.Severity, f.Edges)
	}
	for _, s := range f.Spans {
		if s.SpanID == sid(3) {
			if !s.Data || s.Tenant != "globex" {
				t.Errorf("data span evidence %+v", s)
			}
			return
		}
	}
	t.Errorf("the SELECT that read globex's rows is not among the evidence spans: %+v", f.Spans)
}
