package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/internal/chserver"
	"github.com/tenantguard/tenantguard/store"
	chstore "github.com/tenantguard/tenantguard/store/clickhouse"
	"github.com/tenantguard/tenantguard/store/journal"
)

// leakFixture is a small journal: one crossing seen in two versions (the
// second dropped a span and added one), a tenant mismatch on the same
// trace, and an older crossing between other tenants.
// fixtureNow is the fixture's "now", one instant per test process: a
// fixture written to a journal and one built again to compare with must be
// the same records, even across a second boundary.
var fixtureNow = time.Now().UTC().Truncate(time.Second)

func leakFixture() []store.Evidence {
	now := fixtureNow
	trace := "4bf92f3577b34da6a3ce929d0e0e4736"
	gw := store.Span{SpanID: "a000000000000001", Service: "gateway", Name: "GET /inventory", Tenant: "acme", TenantKey: "tenant.id"}
	inv := store.Span{SpanID: "a000000000000003", ParentID: "a000000000000002", Service: "inventory-svc", Name: "SELECT stock", Tenant: "globex", TenantKey: "tenant.id",
		Kind: "client", Status: "ok", DurationNs: 1_500_000,
		Attributes: map[string]string{"db.system.name": "postgresql", "db.query.text": "hmac-sha256:5d41402abc4b2a76b9719d911017c592"}}
	cache := store.Span{SpanID: "a000000000000009", ParentID: "a000000000000001", Service: "cache", Name: "GET", Tenant: "acme", TenantKey: "tenant.id"}
	edge := store.CrossingEdge{
		From: store.EdgeEnd{SpanID: gw.SpanID, Service: "gateway", Span: "GET /inventory", Tenant: "acme"},
		To:   store.EdgeEnd{SpanID: inv.SpanID, Service: "inventory-svc", Span: "SELECT stock", Tenant: "globex"},
		Hops: 1,
	}
	base := store.Evidence{Rule: "cross_tenant_trace", Severity: "critical", TraceID: trace,
		Tenants: []string{"acme", "globex"}, Services: []string{"gateway", "inventory-svc"},
		FirstSeen: now.Add(-time.Minute), LastSeen: now, DetectedAt: now.Add(-time.Minute + 2*time.Second), Collector: "edge-1"}
	v1 := base
	v1.LeakID, v1.Version, v1.Status, v1.SpanCount = "leak-crossing", 1, "open", 2
	v1.CrossingEdges, v1.Spans = []store.CrossingEdge{edge}, []store.Span{gw, cache}
	v2 := v1
	v2.Version, v2.Status, v2.SpanCount, v2.Spans = 2, "closed", 3, []store.Span{gw, inv}
	mm := base
	mm.LeakID, mm.Version, mm.Rule, mm.Severity, mm.Status, mm.SpanCount = "leak-mismatch", 1, "tenant_mismatch", "high", "open", 3
	mm.CrossingEdges, mm.Spans = []store.CrossingEdge{}, []store.Span{inv}
	mm.Mismatches = []store.Mismatch{{SpanID: inv.SpanID, Service: "inventory-svc", Span: "SELECT stock",
		Values: []store.TenantSource{{Key: "tenant.id", Tenant: "globex"}, {Key: "http.request.header.x-tenant-id", Tenant: "acme"}}}}
	old := base
	old.LeakID, old.Version, old.Status, old.TraceID = "leak-old", 1, "closed", "00000000000000000000000000000001"
	old.Tenants, old.FirstSeen, old.LastSeen = []string{"initech", "umbrella"}, now.Add(-72*time.Hour), now.Add(-71*time.Hour)
	old.DetectedAt = old.FirstSeen.Add(time.Second)
	old.CrossingEdges, old.Spans = []store.CrossingEdge{edge}, []store.Span{}
	return []store.Evidence{v1, mm, v2, old}
}

func journalConfig(t *testing.T, extra string) (cfgPath, journalPath string) {
	t.Helper()
	dir := t.TempDir()
	journalPath = filepath.Join(dir, "leaks.jsonl")
	j, err := journal.Open(journalPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(context.Background(), leakFixture()); err != nil {
		t.Fatal(err)
	}
	j.Close()
	body := "processors:\n  tenantguard:\n    store:\n      journal: {path: " + journalPath + "}\n" + extra
	return writeConfig(t, dir, "c.yaml", body), journalPath
}

type leaksRun struct {
	out, errOut string
	err         error
}

func runLeaks(t *testing.T, run func(ctx context.Context, lf *leaksFlags, out, errOut *bytes.Buffer) error, lf leaksFlags) leaksRun {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), &lf, &out, &errOut)
	return leaksRun{out.String(), errOut.String(), err}
}

func leaksListRun(ctx context.Context, lf *leaksFlags, out, errOut *bytes.Buffer) error {
	return runLeaksList(ctx, lf, out, errOut)
}

func leaksStatsRun(ctx context.Context, lf *leaksFlags, out, errOut *bytes.Buffer) error {
	return runLeaksStats(ctx, lf, out, errOut)
}

func leaksShowRun(id string) func(ctx context.Context, lf *leaksFlags, out, errOut *bytes.Buffer) error {
	return func(ctx context.Context, lf *leaksFlags, out, errOut *bytes.Buffer) error {
		return runLeaksShow(ctx, lf, id, out, errOut)
	}
}

func evidenceLines(t *testing.T, out string) []store.Evidence {
	t.Helper()
	var evs []store.Evidence
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var ev store.Evidence
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not one JSON object per line: %q: %v", l, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func TestLeaksShowOverJournal(t *testing.T) {
	cfgPath, journalPath := journalConfig(t, "")
	r := runLeaks(t, leaksShowRun("leak-crossing"), leaksFlags{configs: []string{cfgPath}})
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, want := range []string{
		"leak-crossing (version 2)",
		"from tenant acme reached tenant globex at inventory-svc `SELECT stock`, from gateway `GET /inventory`",
		"cross_tenant_trace, severity critical, status closed",
		"CROSSING EDGES", "EVIDENCE SPANS", "a000000000000003",
		"SPANS ONLY EARLIER VERSIONS RECORDED", "a000000000000009",
		"(2s after the first span)",
		"EVIDENCE SPAN DETAILS", "a000000000000003  client  ok      -      1.5ms     db.query.text   hmac-sha256:5d41402abc4b2a76b9719d911017c592",
		"db.system.name  postgresql",
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("show lacks %q:\n%s", want, r.out)
		}
	}

	// A trace id shows every finding of the trace, in rule order.
	r = runLeaks(t, leaksShowRun("4BF92F3577B34DA6A3CE929D0E0E4736"), leaksFlags{configs: []string{cfgPath}, json: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	evs := evidenceLines(t, r.out)
	if len(evs) != 2 || evs[0].LeakID != "leak-crossing" || evs[0].Version != 2 || evs[1].LeakID != "leak-mismatch" {
		t.Fatalf("show TRACE --json: %+v", evs)
	}
	r = runLeaks(t, leaksShowRun("leak-mismatch"), leaksFlags{configs: []string{cfgPath}})
	if r.err != nil || !strings.Contains(r.out, "MISMATCHES") || !strings.Contains(r.out, "http.request.header.x-tenant-id=acme (span)") {
		t.Fatalf("mismatch: %v\n%s", r.err, r.out)
	}

	r = runLeaks(t, leaksShowRun("nope"), leaksFlags{configs: []string{cfgPath}})
	if r.err == nil || !strings.Contains(r.err.Error(), "no finding with leak id or trace id nope in "+journalPath) {
		t.Fatalf("unknown id: %v", r.err)
	}
}

func TestLeaksStatsOverJournalAgreesWithSummarize(t *testing.T) {
	cfgPath, _ := journalConfig(t, "")
	r := runLeaks(t, leaksStatsRun, leaksFlags{configs: []string{cfgPath}, json: true, top: 5})
	if r.err != nil {
		t.Fatal(r.err)
	}
	want, _ := json.Marshal(chstore.Summarize(store.Latest(leakFixture()), store.Filter{}, 5))
	if strings.TrimSpace(r.out) != string(want) {
		t.Fatalf("stats --json:\n got %s\nwant %s", r.out, want)
	}
	var st chstore.Stats
	if err := json.Unmarshal([]byte(r.out), &st); err != nil {
		t.Fatal(err)
	}
	if st.Findings != 3 || len(st.TopEdges) != 1 || st.TopEdges[0].Findings != 2 || len(st.OpenByService) != 2 {
		t.Fatalf("stats: %+v", st)
	}

	r = runLeaks(t, leaksStatsRun, leaksFlags{configs: []string{cfgPath}, since: 24 * time.Hour, tenant: "globex"})
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, want := range []string{"2 findings in ", "FINDINGS PER TENANT PAIR PER DAY", "acme    globex", "TOP CROSSING EDGES",
		"TIME FROM FIRST SPAN TO DETECTION", "cross_tenant_trace  1         2s", "OPEN FINDINGS BY SERVICE", "inventory-svc"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("stats table lacks %q:\n%s", want, r.out)
		}
	}
	if strings.Contains(r.out, "initech") {
		t.Errorf("--since 24h --tenant globex must leave the old finding out:\n%s", r.out)
	}
}

// fakeClickHouse stands in for *chstore.Client behind the leaks commands.
type fakeClickHouse struct {
	cfg     config.ClickHouse
	filters []store.Filter
	recs    []store.Evidence
	cov     []store.Coverage
	closed  bool
}

// Coverage sums as tenant_coverage's reader does (the live test compares
// the real one with the journal's report).
func (f *fakeClickHouse) Coverage(_ context.Context, _, _ time.Time, _ string) ([]store.Coverage, []string, error) {
	var names []string
	for _, c := range f.cov {
		if c.Collector != "" && !slices.Contains(names, c.Collector) {
			names = append(names, c.Collector)
		}
	}
	slices.Sort(names)
	return store.SumCoverage(f.cov), names, nil
}

func (f *fakeClickHouse) List(_ context.Context, flt store.Filter) ([]store.Evidence, error) {
	f.filters = append(f.filters, flt)
	return store.Latest(f.recs), nil
}

func (f *fakeClickHouse) Show(_ context.Context, id string) (store.Evidence, []store.Span, error) {
	for _, ev := range store.Latest(f.recs) {
		if ev.LeakID == id {
			return ev, ev.Spans, nil
		}
	}
	return store.Evidence{}, nil, fmt.Errorf("%w: leak id %s", chstore.ErrNotFound, id)
}

func (f *fakeClickHouse) Trace(_ context.Context, trace string) ([]store.Evidence, error) {
	var out []store.Evidence
	for _, ev := range store.Latest(f.recs) {
		if ev.TraceID == trace {
			out = append(out, ev)
		}
	}
	return out, nil
}

func (f *fakeClickHouse) Stats(_ context.Context, flt store.Filter, top int) (chstore.Stats, error) {
	f.filters = append(f.filters, flt)
	return chstore.Summarize(store.Latest(f.recs), flt, top), nil
}

func (f *fakeClickHouse) Close() error { f.closed = true; return nil }

func withFakeClickHouse(t *testing.T, recs []store.Evidence) *fakeClickHouse {
	t.Helper()
	fake := &fakeClickHouse{recs: recs}
	orig := openClickHouse
	openClickHouse = func(_ context.Context, cfg config.ClickHouse) (clickhouseReader, error) {
		cfg.CreateSchema = false // what the real one does
		fake.cfg = cfg
		return fake, nil
	}
	t.Cleanup(func() { openClickHouse = orig })
	return fake
}

const clickhouseYAML = "      clickhouse:\n        endpoints: [ch-1.internal:9000]\n        database: leaks\n        password: s3cret-pw\n"

func TestLeaksReadClickHouseWhenTheConfigNamesIt(t *testing.T) {
	cfgPath, _ := journalConfig(t, clickhouseYAML)
	// ClickHouse holds a finding the local journal does not.
	other := leakFixture()[3]
	other.LeakID, other.TraceID, other.LastSeen = "leak-from-another-collector", "0000000000000000000000000000000f", time.Now().UTC()
	fake := withFakeClickHouse(t, []store.Evidence{other})

	r := runLeaks(t, leaksListRun, leaksFlags{configs: []string{cfgPath}, json: true, tenant: "umbrella", since: time.Hour})
	if r.err != nil {
		t.Fatal(r.err)
	}
	evs := evidenceLines(t, r.out)
	if len(evs) != 1 || evs[0].LeakID != "leak-from-another-collector" {
		t.Fatalf("list must read ClickHouse: %+v", evs)
	}
	if fake.cfg.Database != "leaks" || fake.cfg.Endpoints[0] != "ch-1.internal:9000" || fake.cfg.CreateSchema || !fake.closed {
		t.Fatalf("ClickHouse opened with %+v (closed %v)", fake.cfg, fake.closed)
	}
	if f := fake.filters[0]; f.Tenant != "umbrella" || f.Since.IsZero() || time.Since(f.Since) < time.Hour-time.Minute {
		t.Fatalf("filter passed: %+v", f)
	}

	r = runLeaks(t, leaksShowRun("0000000000000000000000000000000f"), leaksFlags{configs: []string{cfgPath}})
	if r.err != nil || !strings.Contains(r.out, "leak-from-another-collector (version 1)") {
		t.Fatalf("show by trace id through ClickHouse: %v\n%s", r.err, r.out)
	}
	r = runLeaks(t, leaksShowRun("leak-crossing"), leaksFlags{configs: []string{cfgPath}})
	if r.err == nil || !strings.Contains(r.err.Error(), "ClickHouse at ch-1.internal:9000 (database leaks)") {
		t.Fatalf("a finding only in the journal is not in ClickHouse: %v", r.err)
	}
	r = runLeaks(t, leaksStatsRun, leaksFlags{configs: []string{cfgPath}, json: true, rule: "cross_tenant_trace"})
	if r.err != nil || !strings.Contains(r.out, `"findings":1`) || fake.filters[len(fake.filters)-1].Rule != "cross_tenant_trace" {
		t.Fatalf("stats through ClickHouse: %v %s", r.err, r.out)
	}

	// --journal reads the local journal instead.
	calls := len(fake.filters)
	r = runLeaks(t, leaksListRun, leaksFlags{configs: []string{cfgPath}, json: true, journal: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if evs := evidenceLines(t, r.out); len(evs) != 3 || len(fake.filters) != calls {
		t.Fatalf("--journal: %d findings, ClickHouse asked %d more times", len(evs), len(fake.filters)-calls)
	}
}

func TestLeaksSayHowToReadTheJournalWhenClickHouseIsDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfgPath, _ := journalConfig(t, "      clickhouse:\n        endpoints: ["+addr+"]\n        password: s3cret-pw\n        dial_timeout: 500ms\n")
	began := time.Now()
	r := runLeaks(t, leaksListRun, leaksFlags{configs: []string{cfgPath}})
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("an unreachable ClickHouse took %s to report", took)
	}
	if r.err == nil {
		t.Fatal("nothing listens, yet list succeeded")
	}
	msg := r.err.Error()
	if !strings.Contains(msg, addr) || !strings.Contains(msg, "add --journal") || strings.Contains(msg, "s3cret") {
		t.Fatalf("error: %v", msg)
	}
	if !errors.Is(r.err, chstore.ErrUnavailable) {
		t.Fatalf("want ErrUnavailable in the chain: %v", r.err)
	}
}

// Every golden scenario goes through the journal, the shipper and
// ClickHouse (the chDB engine, over the HTTP interface), and `leaks list`,
// `leaks show` and `leaks stats` give, byte for byte, the answers they give
// from the journal: ClickHouse keeps every field of every finding.
// scenarioJournal writes the findings a scan gives for every testdata
// scenario to a journal in dir.
func scenarioJournal(t *testing.T, dir string) (journalPath string, recs []store.Evidence) {
	t.Helper()
	journalPath = filepath.Join(dir, "leaks.jsonl")
	j, err := journal.Open(journalPath)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(scanScenarioDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".golden.json") || (filepath.Ext(name) != ".json" && filepath.Ext(name) != ".jsonl") {
			continue
		}
		path := filepath.Join(scanScenarioDir, name)
		if data, err := os.ReadFile(path); err == nil && bytes.Contains(data, []byte(`{"advance"`)) {
			// A scan has no clock: the requests alone, without the waits.
			var keep []byte
			for line := range bytes.Lines(data) {
				if !bytes.Contains(line, []byte(`{"advance"`)) {
					keep = append(keep, line...)
				}
			}
			path = filepath.Join(dir, name)
			if err := os.WriteFile(path, keep, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		out := runScanArgs(t, nil, "--config", scanConfigPath, "--format", "json", path)
		evs := jsonFindings(t, out.stdout)
		if out.code != exitFindings && out.code != 0 {
			t.Fatalf("scan %s: exit %d: %s", name, out.code, out.stderr)
		}
		if err := j.Append(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, evs...)
	}
	j.Close()
	if len(recs) < 10 {
		t.Fatalf("the scenarios gave %d findings; the test needs them all", len(recs))
	}

	return journalPath, recs
}

func TestLeaksFromClickHouseEqualTheJournalForEveryScenario(t *testing.T) {
	srv := chserver.Start(t) // skips (or fails in CI) without the engine
	dir := t.TempDir()
	journalPath, recs := scenarioJournal(t, dir)

	chYAML := "      clickhouse:\n        protocol: http\n        endpoints: [" + srv.Addr() + "]\n        database: leaks_scenarios_test\n" +
		"        tls: {insecure: true}\n        batch_size: 7\n        batch_age: 10ms\n"
	cfgPath := writeConfig(t, dir, "c.yaml", "processors:\n  tenantguard:\n    store:\n      journal: {path: "+journalPath+"}\n"+chYAML)
	cfg := config.DefaultClickHouse()
	cfg.Protocol, cfg.Endpoints, cfg.Database, cfg.TLS.Insecure = "http", []string{srv.Addr()}, "leaks_scenarios_test", true
	cfg.BatchSize, cfg.BatchAge = 7, 10*time.Millisecond
	dropDatabase(t, cfg)
	shipJournal(t, cfg, journalPath, len(recs))

	both := func(what string, run func(ctx context.Context, lf *leaksFlags, out, errOut *bytes.Buffer) error, lf leaksFlags) string {
		t.Helper()
		lf.configs = []string{cfgPath}
		fromCH := runLeaks(t, run, lf)
		lf.journal = true
		fromJournal := runLeaks(t, run, lf)
		if fromCH.err != nil || fromJournal.err != nil {
			t.Fatalf("%s: ClickHouse: %v; journal: %v", what, fromCH.err, fromJournal.err)
		}
		if strings.HasPrefix(what, "stats") {
			fromCH.out = sameMeans(t, fromCH.out, fromJournal.out)
		}
		if fromCH.out != fromJournal.out {
			t.Errorf("%s from ClickHouse differs from the journal's:\n--- ClickHouse\n%s\n--- journal\n%s", what, fromCH.out, fromJournal.out)
		}
		return fromCH.out
	}
	listed := evidenceLines(t, both("list --all --json", leaksListRun, leaksFlags{json: true, all: true}))
	if len(listed) != len(store.Latest(recs)) {
		t.Fatalf("list --all --json: %d findings, want %d", len(listed), len(store.Latest(recs)))
	}
	both("list", leaksListRun, leaksFlags{})
	both("stats --json", leaksStatsRun, leaksFlags{json: true, all: true, top: 50})
	var fields struct{ reason, keys, queries, link, outcome, data bool }
	for _, ev := range listed {
		both("show "+ev.LeakID+" --json", leaksShowRun(ev.LeakID), leaksFlags{json: true})
		both("show "+ev.LeakID, leaksShowRun(ev.LeakID), leaksFlags{})
		both("show "+ev.TraceID+" --json", leaksShowRun(ev.TraceID), leaksFlags{json: true})
		fields.reason = fields.reason || ev.Reason != ""
		fields.keys = fields.keys || len(ev.Keys) > 0
		fields.queries = fields.queries || len(ev.Queries) > 0
		for _, e := range ev.CrossingEdges {
			fields.link = fields.link || e.Link && e.From.TraceID != ""
			fields.outcome = fields.outcome || e.Outcome != ""
		}
		for _, sp := range ev.Spans {
			fields.data = fields.data || sp.Data || sp.Outcome != ""
		}
	}
	// The scenarios exercise the fields ClickHouse used to drop.
	if !fields.keys || !fields.queries || !fields.link || !fields.outcome || !fields.data {
		t.Errorf("the scenarios no longer carry every field this test is for: %+v", fields)
	}
}

// shipJournal ships the journal at journalPath, which holds n findings,
// and the coverage file beside it to ClickHouse with the collector's
// shippers.
func shipJournal(t *testing.T, cfg config.ClickHouse, journalPath string, n int) {
	t.Helper()
	conn := chstore.NewConnector(cfg, nil)
	defer conn.Close()
	s, err := chstore.NewShipper(cfg, journalPath, conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for s.Status().Shipped+s.Status().DeadLetters < uint64(n) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond) // polling the shipper's progress, not proving an absence
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st.Shipped != uint64(n) || st.DeadLetters != 0 {
		t.Fatalf("shipper: %+v, want all %d findings shipped", st, n)
	}
	cs, err := chstore.NewCoverageShipper(cfg, journalPath, conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs.Start()
	for cs.Status().Backlog > 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond) // polling the shipper's progress, not proving an absence
	}
	if err := cs.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st := cs.Status(); st.DeadLetters != 0 {
		t.Fatalf("coverage shipper: %+v", st)
	}
}

// sameMeans returns the ClickHouse stats JSON with each mean detection
// time that agrees with the journal's to 1e-9 (relative) replaced by the
// journal's: ClickHouse averages in another order, and floating point
// addition is not associative.
func sameMeans(t *testing.T, fromCH, fromJournal string) string {
	t.Helper()
	var c, j chstore.Stats
	if json.Unmarshal([]byte(fromCH), &c) != nil || json.Unmarshal([]byte(fromJournal), &j) != nil || len(c.Detection) != len(j.Detection) {
		return fromCH
	}
	for i := range c.Detection {
		if d := c.Detection[i].MeanSeconds - j.Detection[i].MeanSeconds; d*d <= 1e-18*max(1, j.Detection[i].MeanSeconds*j.Detection[i].MeanSeconds) {
			c.Detection[i].MeanSeconds = j.Detection[i].MeanSeconds
		}
	}
	b, _ := json.Marshal(c)
	return string(b) + "\n"
}

// dropDatabase starts the test on an empty database.
func dropDatabase(t *testing.T, cfg config.ClickHouse) {
	t.Helper()
	conn, err := ch.Open(&ch.Options{Protocol: ch.HTTP, Addr: cfg.Endpoints})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.Database+" SYNC"); err != nil {
		t.Fatal(err)
	}
}
