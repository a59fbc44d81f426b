package processor

// Golden scenarios: OTLP JSON requests in testdata/scenarios, judged with the
// processors.tenantguard section of testdata/config.yaml, compared with the
// findings recorded in <scenario>.golden.json. Each scenario's key facts are
// also asserted in code (scenarioFacts), so a wrong golden written with
// -update cannot silently pass.
//
//	go test ./processor/ -run Scenario -v
//	go test ./processor/ -run ScenarioGolden -update   # after checking the output by hand

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/scenarios/*.golden.json from the detector's output")

var (
	scenarioConfigPath = filepath.Join("..", "testdata", "config.yaml")
	scenarioDir        = filepath.Join("..", "testdata", "scenarios")
)

// scenarioConfig is createDefaultConfig() overlaid with the
// processors::tenantguard section of testdata/config.yaml.
func scenarioConfig(t *testing.T) *Config {
	t.Helper()
	conf, err := confmaptest.LoadConf(scenarioConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := conf.Sub("processors::tenantguard")
	if err != nil {
		t.Fatal(err)
	}
	cfg := createDefaultConfig().(*Config)
	if err := sub.Unmarshal(cfg); err != nil {
		t.Fatalf("%s: processors::tenantguard: %v", scenarioConfigPath, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("%s: processors::tenantguard: %v", scenarioConfigPath, err)
	}
	// The scenarios depend on these settings; make sure they were applied
	// rather than left at their defaults.
	if got, want := cfg.TenantAttributes, []string{"tenant.id", "tenant_id", "http.request.header.x-tenant-id"}; !slices.Equal(got, want) {
		t.Fatalf("tenant_attributes = %q, want %q", got, want)
	}
	if got := cfg.Allow.Services; !slices.Equal(got, []string{"admin-console"}) {
		t.Fatalf("allow.services = %q", got)
	}
	if got := cfg.Allow.SharedTenants; !slices.Equal(got, []string{"system"}) {
		t.Fatalf("allow.shared_tenants = %q", got)
	}
	if got := cfg.Store.Journal.Path; got != "./data/leaks.jsonl" {
		t.Fatalf("store.journal.path = %q", got)
	}
	return cfg
}

// scenarioFiles lists the scenario inputs: *.json (one request, pretty
// printed) and *.jsonl (one request per line), goldens excluded.
func scenarioFiles(t *testing.T) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(scenarioDir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasSuffix(name, ".golden.json") {
			continue
		}
		ext := filepath.Ext(name)
		if ext != ".json" && ext != ".jsonl" {
			continue
		}
		files[strings.TrimSuffix(name, ext)] = filepath.Join(scenarioDir, name)
	}
	if len(files) == 0 {
		t.Fatalf("no scenarios in %s", scenarioDir)
	}
	return files
}

// readScenario parses a scenario file into its requests, in file order.
func readScenario(t *testing.T, path string) []ptrace.Traces {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var chunks [][]byte
	if filepath.Ext(path) == ".jsonl" {
		for line := range bytes.Lines(data) {
			if len(bytes.TrimSpace(line)) > 0 {
				chunks = append(chunks, line)
			}
		}
	} else {
		chunks = [][]byte{data}
	}
	var u ptrace.JSONUnmarshaler
	reqs := make([]ptrace.Traces, 0, len(chunks))
	for i, c := range chunks {
		td, err := u.UnmarshalTraces(c)
		if err != nil {
			t.Fatalf("%s: request %d: %v", path, i+1, err)
		}
		if td.SpanCount() == 0 {
			t.Fatalf("%s: request %d holds no span", path, i+1)
		}
		reqs = append(reqs, td)
	}
	return reqs
}

// scenarioRun is what the detector said about one scenario.
type scenarioRun struct {
	all       []detector.Finding   // every version, in emission order
	afterLine [][]detector.Finding // latest version per leak id after each request, before Flush
	final     []detector.Finding   // latest version per leak id after Flush
	stats     detector.Stats
}

// runScenario feeds the requests as the processor does (one batch per
// request), then flushes the detector as on shutdown.
func runScenario(t *testing.T, cfg *Config, reqs []ptrace.Traces) *scenarioRun {
	t.Helper()
	dc := cfg.DetectorConfig()
	// A clock that moves forward on every read, so versions are deterministic.
	var clockMu sync.Mutex
	clock := time.Date(2026, 3, 2, 9, 31, 0, 0, time.UTC)
	dc.Now = func() time.Time {
		clockMu.Lock()
		defer clockMu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	}
	run := &scenarioRun{}
	var mu sync.Mutex
	d, ex, err := NewDetector(cfg, dc.Now, func(f detector.Finding) {
		mu.Lock()
		run.all = append(run.all, f)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, td := range reqs {
		b := d.NewBatch()
		if n := ex.Feed(b, td); n != 0 {
			t.Fatalf("request %d: %d spans with an invalid trace id", i+1, n)
		}
		b.Close()
		run.afterLine = append(run.afterLine, latestFindings(run.all))
	}
	d.Flush()
	run.final = latestFindings(run.all)
	run.stats = d.Stats()
	spans := 0
	for _, td := range reqs {
		spans += td.SpanCount()
	}
	if run.stats.Spans != uint64(spans) {
		t.Errorf("detector saw %d spans, the scenario holds %d", run.stats.Spans, spans)
	}
	if run.stats.TenantsRejected != 0 {
		t.Errorf("%d tenant values rejected", run.stats.TenantsRejected)
	}
	return run
}

// latestFindings keeps the highest version per leak id, ordered by trace id
// then rule.
func latestFindings(all []detector.Finding) []detector.Finding {
	at := map[string]int{}
	var out []detector.Finding
	for _, f := range all {
		if i, ok := at[f.LeakID]; ok {
			if f.Version > out[i].Version {
				out[i] = f
			}
			continue
		}
		at[f.LeakID] = len(out)
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b detector.Finding) int {
		if c := strings.Compare(a.TraceID.String(), b.TraceID.String()); c != 0 {
			return c
		}
		return strings.Compare(string(a.Rule), string(b.Rule))
	})
	return out
}

// goldenFinding is a stored finding reduced to the fields that do not depend
// on the clock or the collector.
type goldenFinding struct {
	LeakID        string               `json:"leak_id"`
	Rule          string               `json:"rule"`
	Severity      string               `json:"severity"`
	Status        string               `json:"status"`
	TraceID       string               `json:"trace_id"`
	Tenants       []string             `json:"tenants"`
	Services      []string             `json:"services"`
	CrossingEdges []store.CrossingEdge `json:"crossing_edges"`
	Mismatches    []store.Mismatch     `json:"mismatches"`
	Keys          []store.KeyUse       `json:"keys,omitempty"`
	Queries       []store.Query        `json:"queries,omitempty"`
	SpanCount     int                  `json:"span_count"`
}

func (g *goldenFinding) normalize() {
	if g.Tenants == nil {
		g.Tenants = []string{}
	}
	if g.Services == nil {
		g.Services = []string{}
	}
	if g.CrossingEdges == nil {
		g.CrossingEdges = []store.CrossingEdge{}
	}
	if g.Mismatches == nil {
		g.Mismatches = []store.Mismatch{}
	}
}

func reduceFindings(fs []detector.Finding) []goldenFinding {
	out := make([]goldenFinding, 0, len(fs))
	for i := range fs {
		ev := toEvidence(&fs[i], "scenario-test")
		g := goldenFinding{
			LeakID: ev.LeakID, Rule: ev.Rule, Severity: ev.Severity, Status: ev.Status, TraceID: ev.TraceID,
			Tenants: ev.Tenants, Services: ev.Services, CrossingEdges: ev.CrossingEdges, Mismatches: ev.Mismatches,
			Keys: ev.Keys, Queries: ev.Queries, SpanCount: ev.SpanCount,
		}
		g.normalize()
		out = append(out, g)
	}
	return out
}

func marshalGolden(t *testing.T, gs []goldenFinding) []byte {
	t.Helper()
	b, err := json.MarshalIndent(gs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func TestScenarioGolden(t *testing.T) {
	cfg := scenarioConfig(t)
	files := scenarioFiles(t)
	for name := range scenarioFacts {
		if _, ok := files[name]; !ok {
			t.Errorf("scenarioFacts has %q but %s has no such scenario", name, scenarioDir)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		path := files[name]
		t.Run(name, func(t *testing.T) {
			run := runScenario(t, cfg, readScenario(t, path))

			facts, ok := scenarioFacts[name]
			if !ok {
				t.Errorf("no key facts for scenario %q: add them to scenarioFacts", name)
			} else {
				facts(t, run)
			}

			got := marshalGolden(t, reduceFindings(run.final))
			goldenPath := filepath.Join(scenarioDir, name+".golden.json")
			if *updateGolden {
				if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("wrote %s", goldenPath)
				return
			}
			raw, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("%v (run with -update to create it, after checking these findings by hand):\n%s", err, got)
			}
			var want []goldenFinding
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatalf("%s: %v", goldenPath, err)
			}
			for i := range want {
				want[i].normalize()
			}
			if want == nil {
				want = []goldenFinding{}
			}
			if w := marshalGolden(t, want); !bytes.Equal(got, w) {
				t.Errorf("findings differ from %s\n--- got\n%s--- want\n%s", goldenPath, got, w)
			}
		})
	}
}

// TestScenarioReverseOrder feeds every scenario's requests last line first:
// the same crossings must be found whatever order the spans arrive in.
func TestScenarioReverseOrder(t *testing.T) {
	cfg := scenarioConfig(t)
	for name, path := range scenarioFiles(t) {
		t.Run(name, func(t *testing.T) {
			reqs := readScenario(t, path)
			forward := runScenario(t, cfg, reqs)
			backward := slices.Clone(reqs)
			slices.Reverse(backward)
			reversed := runScenario(t, cfg, backward)
			if f, r := findingKeys(forward.final), findingKeys(reversed.final); !slices.Equal(f, r) {
				t.Errorf("forward order found %q, reverse order %q", f, r)
			}
			// The final state is the same, so the final edges must be too.
			if f, r := edgeKeys(forward.final), edgeKeys(reversed.final); !slices.Equal(f, r) {
				t.Errorf("crossing edges: forward %q, reverse %q", f, r)
			}
		})
	}
}

func findingKeys(fs []detector.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s %s %s", f.Rule, f.TraceID, strings.Join(f.Tenants, ",")))
	}
	slices.Sort(out)
	return out
}

func edgeKeys(fs []detector.Finding) []string {
	var out []string
	for _, f := range fs {
		for _, e := range f.Edges {
			out = append(out, fmt.Sprintf("%s %s→%s hops=%d", f.TraceID, e.From.SpanID, e.To.SpanID, e.Hops))
		}
	}
	slices.Sort(out)
	return out
}

// ---------------------------------------------------------------------------
// Key facts, asserted independently of the goldens. Trace and span ids are
// the fixed ids in the scenario files.

var scenarioFacts = map[string]func(t *testing.T, run *scenarioRun){
	"clean": func(t *testing.T, run *scenarioRun) {
		expectNoFinding(t, run)
		// The scenario must be clean because of the rules, not by accident:
		// without shared_tenants the catalog trace (acme reading the shared
		// "system" catalog) is a crossing, and 42 (int) and "42" (string)
		// are one tenant, so the numeric trace stays clean.
		cfg := scenarioConfig(t)
		cfg.Allow.SharedTenants = nil
		noShared := runScenario(t, cfg, readScenario(t, filepath.Join(scenarioDir, "clean.json")))
		if got := findingKeys(noShared.final); !slices.Equal(got, []string{
			"cross_tenant_trace 074660b92b717f84db7bf6dd71cf75a1 acme,system",
		}) {
			t.Errorf("clean.json without shared_tenants: want only the catalog trace acme/system, got %q", got)
		}
	},

	"shared_inventory": func(t *testing.T, run *scenarioRun) {
		f := expectOne(t, run, detector.RuleCrossTenantTrace, "286f490d54c344f98350b1d0feeae75b", "acme", "globex")
		// SELECT stock is a database span reading globex's rows.
		expectSeverity(t, f, detector.SeverityCritical)
		if len(f.Edges) == 0 {
			t.Fatal("no crossing edge")
		}
		expectEdge(t, f.Edges[0],
			edgeWant{"fa034f5180477414", "gateway", "GET /inventory", "acme"},
			edgeWant{"d49692df12c81f95", "inventory-svc", "SELECT stock", "globex"}, 1)
		if len(f.Edges) != 1 {
			t.Errorf("want one crossing edge, got %+v", f.Edges)
		}
		expectServices(t, f, "gateway", "inventory-svc")
		if f.SpanCount != 3 {
			t.Errorf("span_count = %d, want 3", f.SpanCount)
		}
	},

	"header_mismatch": func(t *testing.T, run *scenarioRun) {
		f := expectOne(t, run, detector.RuleTenantMismatch, "b3afb9f713fe5685a9eaf524790970fb", "acme", "globex")
		if f.Severity != detector.SeverityHigh {
			t.Errorf("severity = %s", f.Severity)
		}
		if len(f.Mismatches) != 1 {
			t.Fatalf("want one mismatching span, got %+v", f.Mismatches)
		}
		m := f.Mismatches[0]
		if m.SpanID.String() != "56892ad83a97a73c" || m.Service != "gateway" || m.Name != "GET /documents/{id}" {
			t.Errorf("mismatching span = %s %s %q, want the gateway's GET /documents/{id}", m.SpanID, m.Service, m.Name)
		}
		want := []detector.TenantSource{
			{Key: "tenant.id", Tenant: "acme"},
			{Key: "http.request.header.x-tenant-id", Tenant: "globex"},
		}
		if !slices.Equal(m.Values, want) {
			t.Errorf("mismatch values = %+v, want %+v", m.Values, want)
		}
		if len(f.Edges) != 0 {
			t.Errorf("a mismatch carries no crossing edge, got %+v", f.Edges)
		}
	},

	"admin_console": func(t *testing.T, run *scenarioRun) {
		expectNoFinding(t, run)
		// Without the allow rule the same trace is a crossing.
		cfg := scenarioConfig(t)
		cfg.Allow.Services = nil
		open := runScenario(t, cfg, readScenario(t, filepath.Join(scenarioDir, "admin_console.json")))
		if got := findingKeys(open.final); !slices.Equal(got, []string{
			"cross_tenant_trace 178f108fb4dc22089894c5dfd7ac24bf acme,globex",
		}) {
			t.Errorf("admin_console.json without allow.services: want one acme/globex crossing, got %q", got)
		}
	},

	"siloed_resource": func(t *testing.T, run *scenarioRun) {
		// Trace 3517a0b1… (acme through acme's silo) is clean; only the globex
		// request served by reports-acme is a crossing.
		f := expectOne(t, run, detector.RuleCrossTenantTrace, "cc26e216d9e3d75c4bd45b01c5801dcc", "acme", "globex")
		// The silo answered, but no span of it touched stored data: high.
		expectSeverity(t, f, detector.SeverityHigh)
		if len(f.Edges) != 1 {
			t.Fatalf("want one crossing edge, got %+v", f.Edges)
		}
		expectEdge(t, f.Edges[0],
			edgeWant{"5e855d29ef6df6a3", "gateway", "GET /reports/quarterly", "globex"},
			edgeWant{"faa535ca9fae176f", "reports-acme", "GET /reports/quarterly", "acme"}, 0)
		expectServices(t, f, "gateway", "reports-acme")
		// The silo's tenant comes from its resource.
		for _, s := range f.Spans {
			if s.Service == "reports-acme" && (s.Tenant != "acme" || s.TenantKey != "tenant.id") {
				t.Errorf("reports-acme evidence span %s: tenant %q under %q, want acme under tenant.id", s.SpanID, s.Tenant, s.TenantKey)
			}
		}
	},

	"split_requests": func(t *testing.T, run *scenarioRun) {
		const trace = "243369ce8a3ce6590a8cb372368d32a2"
		if len(run.afterLine) != 3 {
			t.Fatalf("want 3 requests, got %d", len(run.afterLine))
		}
		// Line 1: ledger-svc's globex span alone, its parent unknown.
		if len(run.afterLine[0]) != 0 {
			t.Errorf("after line 1 (one tenant so far): %q", findingKeys(run.afterLine[0]))
		}
		// Line 2: storefront's acme root. Two tenants: an open finding, but
		// ledger-svc's parent has not arrived, so no edge yet.
		if got := findingKeys(run.afterLine[1]); !slices.Equal(got, []string{"cross_tenant_trace " + trace + " acme,globex"}) {
			t.Fatalf("after line 2: %q", got)
		}
		v2 := run.afterLine[1][0]
		if v2.Status != detector.StatusOpen || len(v2.Edges) != 0 {
			t.Errorf("after line 2: status %s, edges %+v; want open without edges", v2.Status, v2.Edges)
		}
		if !hasEvidenceFor(v2.Spans, "acme") || !hasEvidenceFor(v2.Spans, "globex") {
			t.Errorf("after line 2: an edgeless crossing still needs evidence for both tenants, got %+v", v2.Spans)
		}
		// Line 3: payments-svc, the missing parent: the edge is filled in.
		if len(run.afterLine[2]) != 1 {
			t.Fatalf("after line 3: %q", findingKeys(run.afterLine[2]))
		}
		v3 := run.afterLine[2][0]
		if v3.LeakID != v2.LeakID || v3.Version <= v2.Version || v3.Status != detector.StatusOpen {
			t.Errorf("after line 3: want a newer open version of %s, got %s v%d %s", v2.LeakID, v3.LeakID, v3.Version, v3.Status)
		}
		payments := edgeWant{"d1661a73be9c83cb", "payments-svc", "POST /charges", "acme"}
		ledger := edgeWant{"8a7fb38742e8c12d", "ledger-svc", "INSERT ledger_entries", "globex"}
		if len(v3.Edges) != 1 {
			t.Fatalf("after line 3: want one edge, got %+v", v3.Edges)
		}
		expectEdge(t, v3.Edges[0], payments, ledger, 0)

		f := expectOne(t, run, detector.RuleCrossTenantTrace, trace, "acme", "globex")
		if len(f.Edges) != 1 {
			t.Fatalf("final: want one edge, got %+v", f.Edges)
		}
		expectEdge(t, f.Edges[0], payments, ledger, 0)
		expectServices(t, f, "ledger-svc", "payments-svc", "storefront")
		if f.SpanCount != 3 {
			t.Errorf("span_count = %d, want 3", f.SpanCount)
		}
	},
}

func expectNoFinding(t *testing.T, run *scenarioRun) {
	t.Helper()
	if len(run.all) != 0 {
		t.Errorf("want no finding at all, got %d versions: %q", len(run.all), findingKeys(latestFindings(run.all)))
	}
}

// expectOne checks that the scenario ends with exactly one finding, closed,
// with the given rule, trace and (sorted) tenants, and returns it.
func expectOne(t *testing.T, run *scenarioRun, rule detector.Rule, trace string, tenants ...string) detector.Finding {
	t.Helper()
	if len(run.final) != 1 {
		t.Fatalf("want exactly one finding, got %d: %q", len(run.final), findingKeys(run.final))
	}
	f := run.final[0]
	if f.Rule != rule || f.TraceID.String() != trace || !slices.Equal(f.Tenants, tenants) {
		t.Fatalf("finding = %s %s %q, want %s %s %q", f.Rule, f.TraceID, f.Tenants, rule, trace, tenants)
	}
	var tid detector.TraceID
	copy(tid[:], mustHex(t, trace))
	if f.LeakID != detector.LeakID(tid, rule) {
		t.Errorf("leak id %s is not LeakID(trace, rule)", f.LeakID)
	}
	if f.Status != detector.StatusClosed {
		t.Errorf("status after flush = %s, want closed", f.Status)
	}
	// A crossing into the foreign tenant's stored data is critical, other
	// served crossings high; the scenarios say which they expect.
	if f.Severity != detector.SeverityCritical && f.Severity != detector.SeverityHigh {
		t.Errorf("severity = %s, want critical or high for a served %s", f.Severity, rule)
	}
	return f
}

func expectSeverity(t *testing.T, f detector.Finding, want detector.Severity) {
	t.Helper()
	if f.Severity != want {
		t.Errorf("severity = %s (%s), want %s", f.Severity, f.Reason, want)
	}
}

type edgeWant struct{ spanID, service, name, tenant string }

func expectEdge(t *testing.T, e detector.CrossingEdge, from, to edgeWant, hops int) {
	t.Helper()
	got := func(x detector.EdgeEnd) edgeWant { return edgeWant{x.SpanID.String(), x.Service, x.Name, x.Tenant} }
	if got(e.From) != from || got(e.To) != to || e.Hops != hops {
		t.Errorf("edge = %+v → %+v hops %d, want %+v → %+v hops %d", got(e.From), got(e.To), e.Hops, from, to, hops)
	}
}

func expectServices(t *testing.T, f detector.Finding, services ...string) {
	t.Helper()
	if !slices.Equal(f.Services, services) {
		t.Errorf("services = %q, want %q", f.Services, services)
	}
}

func hasEvidenceFor(spans []detector.EvidenceSpan, tenant string) bool {
	return slices.ContainsFunc(spans, func(s detector.EvidenceSpan) bool { return s.Tenant == tenant })
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	var b []byte
	if _, err := fmt.Sscanf(s, "%x", &b); err != nil {
		t.Fatal(err)
	}
	return b
}
