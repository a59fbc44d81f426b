package tenantguardprocessor

// Golden scenarios: OTLP JSON requests in testdata/scenarios, judged with the
// processors.tenantguard section of testdata/config.yaml, compared with the
// findings recorded in <scenario>.golden.json. Each scenario's key facts are
// also asserted in code (scenarioFacts), so a wrong golden written with
// -update cannot silently pass. testdata/config.yaml turns every rule on, so
// every scenario is judged by all of them.
//
// A .jsonl scenario is one request per line, except that a line
// {"advance":"90s"} advances the test clock and sweeps (see scenarioStep).
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
	"reflect"
	"regexp"
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
	scenarioConfigPath = filepath.Join("..", "..", "testdata", "config.yaml")
	scenarioDir        = filepath.Join("..", "..", "testdata", "scenarios")
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
	// Every rule is on, so every scenario is judged by all of them.
	var derived []string
	for _, d := range cfg.TenantDerivations {
		derived = append(derived, d.Attribute)
	}
	if want := []string{"url.path", "cache.key", "db.namespace"}; !slices.Equal(derived, want) {
		t.Fatalf("tenant_derivations attributes = %q, want %q", derived, want)
	}
	if len(cfg.Bindings) != 1 || cfg.Bindings[0].Attribute != "auth.jwt.kid" ||
		!maps.Equal(cfg.Bindings[0].Tenants, map[string]string{"kid-acme-2026": "acme", "kid-globex-2026": "globex"}) ||
		!slices.Equal(cfg.Bindings[0].Global, []string{"kid-legacy-shared"}) {
		t.Fatalf("bindings = %+v", cfg.Bindings)
	}
	if got := cfg.UnscopedQuery.Tables; !slices.Equal(got, []string{"stock", "orders", "invoices"}) || cfg.UnscopedQuery.TenantColumn != "tenant_id" {
		t.Fatalf("unscoped_query = %+v", cfg.UnscopedQuery)
	}
	if got := cfg.Coverage.TenantAwareServices; !slices.Equal(got, []string{"orders-svc"}) {
		t.Fatalf("coverage.tenant_aware_services = %q", got)
	}
	if len(cfg.Allow.Conditions) != 1 {
		t.Fatalf("allow.conditions = %q, want one condition", cfg.Allow.Conditions)
	}
	if cfg.IdleWindow != 60*time.Second || cfg.LateWindow != 10*time.Minute {
		t.Fatalf("idle_window = %s, late_window = %s; late_span.jsonl needs 60s and 10m", cfg.IdleWindow, cfg.LateWindow)
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

// scenarioStep is one line of a scenario: a request, or (in a .jsonl
// scenario) a clock advance.
//
// A .jsonl line that is the JSON object {"advance":"90s"} (any Go duration)
// is not a request: it moves the test's clock forward by that much and then
// calls Detector.Sweep, as the processor's ticker would once the time has
// passed. That is how a scenario lets a trace's idle window (60s in
// testdata/config.yaml) pass deterministically, e.g. to close a trace before
// its late spans arrive (late_span.jsonl).
type scenarioStep struct {
	td      ptrace.Traces // a request; empty when advance is set
	advance time.Duration
}

// readScenario parses a scenario file into its steps, in file order.
func readScenario(t *testing.T, path string) []scenarioStep {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	jsonl := filepath.Ext(path) == ".jsonl"
	var chunks [][]byte
	if jsonl {
		for line := range bytes.Lines(data) {
			if len(bytes.TrimSpace(line)) > 0 {
				chunks = append(chunks, line)
			}
		}
	} else {
		chunks = [][]byte{data}
	}
	var u ptrace.JSONUnmarshaler
	steps := make([]scenarioStep, 0, len(chunks))
	for i, c := range chunks {
		if jsonl {
			var ctl struct {
				Advance string `json:"advance"`
			}
			dec := json.NewDecoder(bytes.NewReader(c))
			dec.DisallowUnknownFields()
			if dec.Decode(&ctl) == nil && ctl.Advance != "" {
				d, err := time.ParseDuration(ctl.Advance)
				if err != nil || d <= 0 {
					t.Fatalf("%s: line %d: advance %q: want a positive Go duration such as \"90s\"", path, i+1, ctl.Advance)
				}
				steps = append(steps, scenarioStep{advance: d})
				continue
			}
		}
		td, err := u.UnmarshalTraces(c)
		if err != nil {
			t.Fatalf("%s: request %d: %v", path, i+1, err)
		}
		if td.SpanCount() == 0 {
			t.Fatalf("%s: request %d holds no span", path, i+1)
		}
		steps = append(steps, scenarioStep{td: td})
	}
	return steps
}

// stepSpans counts the spans of the requests among steps.
func stepSpans(steps []scenarioStep) int {
	n := 0
	for _, s := range steps {
		if s.advance == 0 {
			n += s.td.SpanCount()
		}
	}
	return n
}

// scenarioRun is what the detector said about one scenario.
type scenarioRun struct {
	all       []detector.Finding   // every version, in emission order
	afterLine [][]detector.Finding // latest version per leak id after each step (request or advance), before Flush
	final     []detector.Finding   // latest version per leak id after Flush
	stats     detector.Stats
	coverage  map[string]detector.ServiceCoverage
}

// runScenario feeds the requests as the processor does (one batch per
// request; an advance step moves the clock and sweeps), then flushes the
// detector as on shutdown.
func runScenario(t *testing.T, cfg *Config, steps []scenarioStep, adjust ...func(*detector.Config)) *scenarioRun {
	return runScenarioGrouped(t, cfg, steps, false, adjust...)
}

// runScenarioGrouped is runScenario; group makes the extractor group every
// request's spans by shard, as it does under concurrent requests.
func runScenarioGrouped(t *testing.T, cfg *Config, steps []scenarioStep, group bool, adjust ...func(*detector.Config)) *scenarioRun {
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
	d, ex, err := NewDetector(cfg, func(f detector.Finding) {
		mu.Lock()
		run.all = append(run.all, f)
		mu.Unlock()
	}, func(c *detector.Config) {
		c.Now = dc.Now
		for _, a := range adjust {
			a(c)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	ex.alwaysGroup = group
	evidence := NewEvidenceReader(cfg)
	for i, st := range steps {
		if st.advance > 0 {
			clockMu.Lock()
			clock = clock.Add(st.advance)
			clockMu.Unlock()
			d.Sweep()
		} else {
			b := d.NewBatch()
			if evidence != nil { // as processTraces does
				evidence.Reset()
				evidence.Read(st.td)
				b.Annotate = evidence.Fill
			}
			if n := ex.Feed(b, st.td); n != 0 {
				t.Fatalf("request %d: %d spans with an invalid trace id", i+1, n)
			}
			b.Close()
		}
		run.afterLine = append(run.afterLine, latestFindings(run.all))
	}
	d.Flush()
	run.final = latestFindings(run.all)
	run.stats = d.Stats()
	run.coverage = d.Coverage()
	if spans := stepSpans(steps); run.stats.Spans != uint64(spans) {
		t.Errorf("detector saw %d spans, the scenario holds %d", run.stats.Spans, spans)
	}
	if run.stats.TenantsRejected != 0 {
		t.Errorf("%d tenant values rejected", run.stats.TenantsRejected)
	}
	return run
}

// latestFindings keeps the highest version per leak id, ordered by trace id,
// rule, then first evidence span (per-service findings of one trace).
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
		if c := strings.Compare(string(a.Rule), string(b.Rule)); c != 0 {
			return c
		}
		return strings.Compare(firstSpan(a), firstSpan(b))
	})
	return out
}

func firstSpan(f detector.Finding) string {
	if len(f.Spans) == 0 {
		return ""
	}
	return f.Spans[0].SpanID.String()
}

// goldenFinding is a stored finding reduced to the fields that do not depend
// on the clock or the collector.
type goldenFinding struct {
	LeakID   string `json:"leak_id"`
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	Status   string `json:"status"`
	// Message is the finding's sentence, as the log, Slack, leaks and scan
	// print it.
	Message       string               `json:"message"`
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
		ev := store.NewEvidence(&fs[i], "scenario-test")
		g := goldenFinding{
			LeakID: ev.LeakID, Rule: ev.Rule, Severity: ev.Severity, Status: ev.Status, Message: ev.Message(store.Plain), TraceID: ev.TraceID,
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
				// A subtest, so that a failed fact does not hide the
				// golden comparison below.
				t.Run("facts", func(t *testing.T) { facts(t, run) })
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
			want, err := readGolden(name)
			if err != nil {
				t.Fatalf("%v (run with -update to create it, after checking these findings by hand):\n%s", err, got)
			}
			if w := marshalGolden(t, want); !bytes.Equal(got, w) {
				t.Errorf("findings differ from %s\n--- got\n%s--- want\n%s", goldenPath, got, w)
			}
		})
	}
}

// readGolden reads a scenario's golden findings, normalised.
func readGolden(name string) ([]goldenFinding, error) {
	path := filepath.Join(scenarioDir, name+".golden.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var want []goldenFinding
	if err := json.Unmarshal(raw, &want); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i := range want {
		want[i].normalize()
	}
	if want == nil {
		want = []goldenFinding{}
	}
	return want, nil
}

// TestScenarioCleanWithEveryRule: clean.json, judged with every rule that
// testdata/config.yaml turns on, gives no finding at all. Its golden says
// so too; this test says why that matters (ordinary traffic must not page
// anyone whatever rules are on) and checks that the rules were on and had
// something to look at.
func TestScenarioCleanWithEveryRule(t *testing.T) {
	cfg := scenarioConfig(t)
	dc := cfg.DetectorConfig()
	for what, on := range map[string]bool{
		"tenant_derivations":             len(dc.Derivations) > 0,
		"bindings":                       len(dc.Bindings) > 0,
		"unscoped_query.tables":          len(dc.ScopedTables) > 0,
		"coverage.tenant_aware_services": len(dc.TenantAwareServices) > 0,
		"late_window":                    dc.LateWindow > 0,
		"allow.services":                 len(dc.AllowServices) > 0,
		"allow.shared_tenants":           len(dc.SharedTenants) > 0,
		"allow.conditions":               len(cfg.Allow.Conditions) > 0,
	} {
		if !on {
			t.Errorf("%s is off in %s: every rule must be on", what, scenarioConfigPath)
		}
	}
	steps := readScenario(t, filepath.Join(scenarioDir, "clean.json"))
	run := runScenario(t, cfg, steps)
	expectNoFinding(t, run)
	if run.stats.Suppressed != 0 {
		t.Errorf("%d per-service findings suppressed: a rule fired on clean traffic", run.stats.Suppressed)
	}
	// orders-svc is tenant-aware: it sent spans, every one with a tenant.
	if c := run.coverage["orders-svc"]; c.Spans == 0 || c.WithoutTenant != 0 {
		t.Errorf("orders-svc coverage = %+v, want spans, all with a tenant", c)
	}
	// The unscoped_query rule had statements on scoped tables to judge
	// (SELECT … FROM orders WHERE tenant_id = $1, INSERT INTO invoices
	// (tenant_id, …)): all scoped, so nothing.
	for _, table := range []string{"orders", "invoices"} {
		re := regexp.MustCompile(`(?i)\b(FROM|INTO)\s+` + table + `\b`)
		if !slices.ContainsFunc(statements(steps), re.MatchString) {
			t.Errorf("clean.json has no statement on the scoped table %s any more", table)
		}
	}
}

// statements lists the db.query.text values of the steps' spans.
func statements(steps []scenarioStep) []string {
	var out []string
	for _, st := range steps {
		if st.advance > 0 {
			continue
		}
		rss := st.td.ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			sss := rss.At(i).ScopeSpans()
			for j := 0; j < sss.Len(); j++ {
				spans := sss.At(j).Spans()
				for k := 0; k < spans.Len(); k++ {
					if v, ok := spans.At(k).Attributes().Get("db.query.text"); ok {
						out = append(out, v.Str())
					}
				}
			}
		}
	}
	return out
}

// TestScenarioTogether feeds every scenario, in name order, to one detector
// (one clock, one set of rate-limit windows, late_span's sweep closing
// everyone's traces): it must find exactly the union of the goldens, so no
// scenario's findings depend on it being judged alone.
//
// The per-service rules (unscoped_query, missing_tenant) name a finding by
// service, span name and the start of its rate-limit window, which is the
// detector's clock when the finding fires: in one long run that clock reads
// differently, so their leak ids are compared as present and distinct, not
// equal to the goldens'.
func TestScenarioTogether(t *testing.T) {
	cfg := scenarioConfig(t)
	files := scenarioFiles(t)
	var steps []scenarioStep
	var want []goldenFinding
	for _, name := range slices.Sorted(maps.Keys(files)) {
		steps = append(steps, readScenario(t, files[name])...)
		g, err := readGolden(name)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, g...)
	}
	run := runScenario(t, cfg, steps)
	got := reduceFindings(run.final)
	seen := map[string]bool{}
	for _, g := range got {
		if g.LeakID == "" || seen[g.LeakID] {
			t.Errorf("leak id %q empty or repeated", g.LeakID)
		}
		seen[g.LeakID] = true
	}
	gk, wk := togetherKeys(t, got), togetherKeys(t, want)
	for _, k := range wk {
		if !slices.Contains(gk, k) {
			t.Errorf("missing when judged together:\n%s", k)
		}
	}
	for _, k := range gk {
		if !slices.Contains(wk, k) {
			t.Errorf("found only when judged together:\n%s", k)
		}
	}
	if len(gk) != len(wk) {
		t.Errorf("%d findings together, %d in the goldens", len(gk), len(wk))
	}
}

// togetherKeys renders golden findings for TestScenarioTogether, sorted,
// with the clock-dependent leak ids of per-service findings blanked.
func togetherKeys(t *testing.T, gs []goldenFinding) []string {
	t.Helper()
	var out []string
	for _, g := range gs {
		if g.Rule == string(detector.RuleUnscopedQuery) || g.Rule == string(detector.RuleMissingTenant) {
			g.LeakID = "(per window)"
		}
		b, err := json.Marshal(g)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

// orderDependent lists the scenarios whose findings depend on the order of
// their lines, and why; TestScenarioReverseOrder checks what the reverse
// order gives instead of comparing. None does today: a span link whose
// consumer arrives first waits for its producer.
var orderDependent = map[string]func(t *testing.T, reversed *scenarioRun){}

// TestScenarioReverseOrder feeds every scenario's requests last line first:
// the same crossings must be found whatever order the spans arrive in
// (save the scenarios in orderDependent).
func TestScenarioReverseOrder(t *testing.T) {
	cfg := scenarioConfig(t)
	for name, path := range scenarioFiles(t) {
		t.Run(name, func(t *testing.T) {
			steps := readScenario(t, path)
			forward := runScenario(t, cfg, steps)
			backward := slices.Clone(steps)
			slices.Reverse(backward)
			reversed := runScenario(t, cfg, backward)
			if check, ok := orderDependent[name]; ok {
				check(t, reversed)
				return
			}
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

// TestScenarioOneShardOrMany runs every scenario on one shard, where the
// extractor adds spans in request order, and on eight, where it groups a
// request's spans by shard (as it does when requests come concurrently) and
// adds each group under one hold, judging it before letting go: the
// findings, their edges and the coverage are the same.
func TestScenarioOneShardOrMany(t *testing.T) {
	cfg := scenarioConfig(t)
	shards := func(n int) func(*detector.Config) { return func(c *detector.Config) { c.Shards = n } }
	for name, path := range scenarioFiles(t) {
		t.Run(name, func(t *testing.T) {
			steps := readScenario(t, path)
			one := runScenario(t, cfg, steps, shards(1))
			many := runScenarioGrouped(t, cfg, steps, true, shards(8))
			if f, m := findingKeys(one.final), findingKeys(many.final); !slices.Equal(f, m) {
				t.Errorf("one shard found %q, eight %q", f, m)
			}
			if f, m := edgeKeys(one.final), edgeKeys(many.final); !slices.Equal(f, m) {
				t.Errorf("crossing edges: one shard %q, eight %q", f, m)
			}
			if !reflect.DeepEqual(one.coverage, many.coverage) {
				t.Errorf("coverage: one shard %+v, eight %+v", one.coverage, many.coverage)
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
