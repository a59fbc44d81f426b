package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.uber.org/zap/zaptest"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/internal/chserver"
	"github.com/tenantguard/tenantguard/store"
)

// The live suite runs the same code paths against a real ClickHouse engine.
//
// By default that is chDB, ClickHouse built as a library, in the test
// process: internal/chserver serves ClickHouse's HTTP interface over it and
// the store connects with protocol: http. It runs whenever CHDB_LIB_PATH
// names libchdb.so (.ci/run installs it), skips with instructions when it
// does not, and fails instead in CI (CI=true).
//
// With TENANTGUARD_TEST_CLICKHOUSE_DSN set, the suite runs against that
// server (25.8 or newer) over the native protocol instead: what chDB cannot
// show (the native protocol, TLS, a cluster). It drops and recreates the
// DSN's database, whose name must contain "test":
//
//	docker run -d --name tg-clickhouse -p 9000:9000 -e CLICKHOUSE_PASSWORD=tenantguard clickhouse/clickhouse-server:25.8
//	TENANTGUARD_TEST_CLICKHOUSE_DSN=clickhouse://default:tenantguard@127.0.0.1:9000/tenantguard_test go test ./store/clickhouse -run Live -v
const liveDSNVar = "TENANTGUARD_TEST_CLICKHOUSE_DSN"

func liveConfig(t *testing.T) config.ClickHouse {
	t.Helper()
	dsn := os.Getenv(liveDSNVar)
	if dsn == "" {
		cfg, _ := engineConfig(t)
		return cfg
	}
	opts, err := ch.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("%s: %v", liveDSNVar, err)
	}
	if !strings.Contains(opts.Auth.Database, "test") {
		t.Fatalf("%s names database %q; the live tests drop it, so its name must contain \"test\"", liveDSNVar, opts.Auth.Database)
	}
	cfg := shortRetries(config.DefaultClickHouse())
	cfg.Endpoints = opts.Addr
	cfg.Database = opts.Auth.Database
	cfg.Username = opts.Auth.Username
	cfg.Password = configopaque.String(opts.Auth.Password)
	// TLS follows the DSN (secure=true, skip_verify=true): the config's
	// default is TLS, and the documented test server is plain TCP on 9000.
	if opts.TLS == nil {
		cfg.TLS.Insecure = true
	} else {
		cfg.TLS.InsecureSkipVerify = opts.TLS.InsecureSkipVerify
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// engineConfig serves the chDB engine over HTTP for one test.
func engineConfig(t *testing.T) (config.ClickHouse, *chserver.Server) {
	t.Helper()
	if os.Getenv(chserver.LibEnv) == "" && os.Getenv("CI") != "true" {
		t.Skip("live ClickHouse tests skipped: " + chserver.InstallHint + "\n" +
			"or run them against a server: set " + liveDSNVar + ", e.g.\n" +
			"  docker run -d --name tg-clickhouse -p 9000:9000 -e CLICKHOUSE_PASSWORD=tenantguard clickhouse/clickhouse-server:25.8\n" +
			"  " + liveDSNVar + "=clickhouse://default:tenantguard@127.0.0.1:9000/tenantguard_test go test ./store/clickhouse -run Live -v")
	}
	srv := chserver.Start(t)
	cfg := shortRetries(config.DefaultClickHouse())
	cfg.Protocol = "http"
	cfg.Endpoints = []string{srv.Addr()}
	cfg.Database = "tenantguard_test"
	cfg.TLS.Insecure = true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg, srv
}

func shortRetries(cfg config.ClickHouse) config.ClickHouse {
	cfg.DialTimeout = 5 * time.Second
	cfg.ReadTimeout = 30 * time.Second
	cfg.BatchSize = 4
	cfg.BatchAge = 20 * time.Millisecond
	cfg.RetryInitial, cfg.RetryMax = 5*time.Millisecond, 50*time.Millisecond
	return cfg
}

// freshDatabase drops the test database, so each live test starts empty.
func freshDatabase(t *testing.T, cfg config.ClickHouse) {
	t.Helper()
	opts, err := options(context.Background(), cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ch.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+quoteIdent(cfg.Database)+" SYNC"); err != nil {
		t.Fatalf("dropping the test database: %v", err)
	}
}

func liveClient(t *testing.T, cfg config.ClickHouse) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Open(ctx, cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func liveCount(t *testing.T, c *Client, sql string) uint64 {
	t.Helper()
	var n uint64
	if err := c.conn.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestLiveMigrationsFromEmptyAndAgain(t *testing.T) {
	cfg := liveConfig(t)
	freshDatabase(t, cfg)
	c := liveClient(t, cfg) // creates the database, then migrates
	for _, table := range []string{"schema_migrations", "tenant_leaks", "tenant_leak_spans", "tenant_leaks_latest"} {
		if n := liveCount(t, c, fmt.Sprintf("SELECT count() FROM system.tables WHERE database = '%s' AND name = '%s'", cfg.Database, table)); n != 1 {
			t.Errorf("table %s missing after migrating", table)
		}
	}
	if n := liveCount(t, c, "SELECT uniqExact(version) FROM schema_migrations"); n != uint64(len(migrations)) {
		t.Fatalf("%d migrations recorded, want %d", n, len(migrations))
	}
	rows := liveCount(t, c, "SELECT count() FROM schema_migrations")
	// Running again applies nothing and records nothing.
	c2 := liveClient(t, cfg)
	if err := c2.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := liveCount(t, c2, "SELECT count() FROM schema_migrations"); n != rows {
		t.Fatalf("re-running the migrations recorded %d rows, had %d", n, rows)
	}
	// And every statement is idempotent even if the record were lost.
	d := newSchemaData(cfg)
	for _, m := range migrations {
		stmts, _ := renderAll(m.Statements, d)
		for _, s := range stmts {
			if err := c2.conn.Exec(context.Background(), s); err != nil {
				t.Fatalf("migration %d is not idempotent: %v", m.Version, err)
			}
		}
	}
	// The columns the Go code writes are the columns ClickHouse has.
	for table, cols := range map[string][]columnDef{"tenant_leaks": leakColumns, "tenant_leak_spans": spanColumns} {
		for _, col := range cols {
			var typ string
			err := c.conn.QueryRow(context.Background(),
				"SELECT type FROM system.columns WHERE database = {db:String} AND table = {t:String} AND name = {c:String}",
				ch.Named("db", cfg.Database), ch.Named("t", table), ch.Named("c", col.Name)).Scan(&typ)
			if err != nil || strings.ReplaceAll(typ, " ", "") != strings.ReplaceAll(col.Type, " ", "") {
				t.Errorf("%s.%s: type %q (%v), Go writes %q", table, col.Name, typ, err, col.Type)
			}
		}
	}
}

// liveFixture is several findings, some in several versions, across two
// days and both rules.
func liveFixture() []store.Evidence {
	var recs []store.Evidence
	for i := 0; i < 6; i++ {
		ev := finding(i, 1)
		ev.LastSeen = time.Now().UTC().Add(-time.Duration(i) * time.Hour).Truncate(time.Microsecond)
		ev.FirstSeen = ev.LastSeen.Add(-time.Duration(i) * 13 * time.Hour)
		ev.DetectedAt = ev.FirstSeen.Add(time.Duration(i+1) * 250 * time.Millisecond)
		recs = append(recs, ev)
		if i%2 == 0 { // a later version: closed, a third tenant, one span less, one more
			v2 := ev
			v2.Version, v2.Status, v2.SpanCount = 2, "closed", ev.SpanCount+4
			v2.Tenants = []string{"acme", "globex", "initech"}
			v2.Spans = []store.Span{ev.Spans[1], {SpanID: "a000000000000007", Service: "billing", Name: "charge", Tenant: "initech"}}
			recs = append(recs, v2)
		}
	}
	recs[len(recs)-1].Status, recs[len(recs)-1].AllowedBy = "allowed", "allow.services: admin-console"
	return recs
}

func assertSameEvidence(t *testing.T, what string, got, want []store.Evidence) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d findings, want %d:\n got %s\nwant %s", what, len(got), len(want), jsonString(got), jsonString(want))
		return
	}
	for i := range got { // finding by finding, so a difference is readable
		if g, w := jsonString(got[i]), jsonString(want[i]); g != w {
			t.Errorf("%s: finding %d (%s):\n got %s\nwant %s", what, i, want[i].LeakID, g, w)
		}
	}
}

func assertSameStats(t *testing.T, got, want Stats) {
	t.Helper()
	if len(got.Detection) == len(want.Detection) {
		for i := range got.Detection {
			if math.Abs(got.Detection[i].MeanSeconds-want.Detection[i].MeanSeconds) < 1e-6 {
				got.Detection[i].MeanSeconds = want.Detection[i].MeanSeconds
			}
		}
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("ClickHouse stats differ from the journal's:\n got %s\nwant %s", g, w)
	}
}

func TestLiveWriteReadRoundTrip(t *testing.T) {
	cfg := liveConfig(t)
	freshDatabase(t, cfg)
	c := liveClient(t, cfg)
	ctx := context.Background()
	recs := liveFixture()
	// Versions arrive in two batches, the newer first for one finding.
	if err := c.Write(ctx, recs[3:], "live-b"); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, recs[:3], "live-a"); err != nil {
		t.Fatal(err)
	}
	// A re-sent batch is dropped by the server.
	raw := liveCount(t, c, "SELECT count() FROM tenant_leaks")
	spans := liveCount(t, c, "SELECT count() FROM tenant_leak_spans")
	if err := c.Write(ctx, recs[:3], "live-a"); err != nil {
		t.Fatal(err)
	}
	if n := liveCount(t, c, "SELECT count() FROM tenant_leaks"); n != raw || raw == 0 {
		t.Fatalf("tenant_leaks holds %d rows after a re-send, had %d: insert_deduplication_token not honoured", n, raw)
	}
	if n := liveCount(t, c, "SELECT count() FROM tenant_leak_spans"); n != spans {
		t.Fatalf("tenant_leak_spans holds %d rows after a re-send, had %d", n, spans)
	}

	latest := store.Latest(recs)
	for _, f := range []store.Filter{{}, {IncludeAllowed: true}, {Tenant: "initech"}, {Rule: "tenant_mismatch"},
		{Since: time.Now().Add(-150 * time.Minute)}, {Service: "inventory-svc", IncludeAllowed: true}} {
		got, err := c.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var want []store.Evidence
		for _, ev := range latest {
			if f.Match(&ev) {
				want = append(want, ev)
			}
		}
		if want == nil {
			want = []store.Evidence{}
		}
		assertSameEvidence(t, fmt.Sprintf("List(%+v)", f), got, want)
	}
	for _, ev := range latest {
		got, history, err := c.Show(ctx, ev.LeakID)
		if err != nil {
			t.Fatal(err)
		}
		assertSameEvidence(t, "Show "+ev.LeakID, []store.Evidence{got}, []store.Evidence{ev})
		var versions []store.Evidence
		for _, r := range recs {
			if r.LeakID == ev.LeakID {
				versions = append(versions, r)
			}
		}
		if g, w := jsonString(history), jsonString(SpanHistory(versions)); g != w {
			t.Errorf("span history of %s:\n got %s\nwant %s", ev.LeakID, g, w)
		}
		found, err := c.Trace(ctx, ev.TraceID)
		if err != nil || len(found) != 1 || found[0].LeakID != ev.LeakID {
			t.Errorf("Trace %s: %v %+v", ev.TraceID, err, found)
		}
	}
	for _, f := range []store.Filter{{}, {IncludeAllowed: true}, {Tenant: "globex"}} {
		st, err := c.Stats(ctx, f, 3)
		if err != nil {
			t.Fatal(err)
		}
		assertSameStats(t, st, Summarize(latest, f, 3))
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// flakyWriter is the live server with an outage switch: while down, every
// write fails before reaching ClickHouse; with lose set, a write reaches
// ClickHouse and its acknowledgement is then lost.
type flakyWriter struct {
	w     Writer
	down  atomic.Bool
	lose  atomic.Int32 // acknowledgements still to lose
	calls atomic.Int32
}

func (f *flakyWriter) Write(ctx context.Context, batch []store.Evidence, token string) error {
	f.calls.Add(1)
	if f.down.Load() {
		return fmt.Errorf("%w: server stopped (test)", ErrUnavailable)
	}
	if err := f.w.Write(ctx, batch, token); err != nil {
		return err
	}
	if f.lose.Add(-1) >= 0 {
		return fmt.Errorf("%w: acknowledgement lost (test)", ErrUnavailable)
	}
	return nil
}

func TestLiveShipperOutageAndRestartDeliverEveryFindingOnce(t *testing.T) {
	cfg := liveConfig(t)
	freshDatabase(t, cfg)
	path := tempJournal(t)
	recs := liveFixture()
	appendJournal(t, path, recs[:5]...)

	conn := NewConnector(cfg, zaptest.NewLogger(t))
	defer conn.Close()
	fw := &flakyWriter{w: conn}
	fw.lose.Store(1) // the first batch arrives but its acknowledgement is lost
	s, err := NewShipper(cfg, path, fw, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	eventually(t, "the first records", func() (bool, string) {
		st := s.Status()
		return st.Shipped >= 4, fmt.Sprintf("%+v", st)
	})
	// ClickHouse stops mid-stream; findings keep arriving.
	fw.down.Store(true)
	appendJournal(t, path, recs[5:7]...)
	s.Wake()
	eventually(t, "failures while down", func() (bool, string) {
		st := s.Status()
		return st.LastErrorAt.After(st.LastSuccessAt) && st.Backlog > 0, fmt.Sprintf("%+v", st)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err == nil {
		t.Fatal("Stop while down must report the backlog")
	}
	// The collector restarts, ClickHouse is back, more findings arrive.
	fw.down.Store(false)
	appendJournal(t, path, recs[7:]...)
	s2, err := NewShipper(cfg, path, fw, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s2.Start()
	drainAndStop(t, s2)

	assertEachVersionOnce(t, cfg, recs)
}

func TestLiveAnalystQueriesReturnTheExpectedRows(t *testing.T) {
	cfg := liveConfig(t)
	freshDatabase(t, cfg)
	c := liveClient(t, cfg)
	ctx := context.Background()
	day := time.Now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour)
	mk := func(id string, version uint64, status string, tenants []string, first time.Time) store.Evidence {
		ev := finding(2, version)
		ev.LeakID, ev.Status, ev.Tenants = id, status, tenants
		ev.FirstSeen, ev.LastSeen, ev.DetectedAt = first, first.Add(time.Minute), first.Add(2*time.Second)
		return ev
	}
	recs := []store.Evidence{
		mk("a", 1, "open", []string{"acme", "globex"}, day.Add(time.Hour)),
		mk("a", 2, "closed", []string{"acme", "globex"}, day.Add(time.Hour)), // latest: closed
		mk("bb", 1, "open", []string{"acme", "globex", "initech"}, day.Add(25*time.Hour)),
		mk("ccc", 1, "open", []string{"acme", "umbrella"}, day.Add(26*time.Hour)),
		mk("ccc", 2, "allowed", []string{"acme", "umbrella"}, day.Add(26*time.Hour)), // withdrawn
	}
	for i := range recs {
		recs[i].TraceID = traceHex(i)
	}
	recs[1].TraceID, recs[4].TraceID = recs[0].TraceID, recs[3].TraceID
	if err := c.Write(ctx, recs, "live-queries"); err != nil {
		t.Fatal(err)
	}
	st, err := c.Stats(ctx, store.Filter{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := day.Format(time.DateOnly), day.Add(24*time.Hour).Format(time.DateOnly)
	wantPairs := []TenantPairDay{
		{d1, "acme", "globex", 1}, {d2, "acme", "globex", 1}, {d2, "acme", "initech", 1}, {d2, "globex", "initech", 1},
	}
	if jsonString(st.TenantPairs) != jsonString(wantPairs) {
		t.Errorf("findings per tenant pair per day:\n got %s\nwant %s", jsonString(st.TenantPairs), jsonString(wantPairs))
	}
	if st.Findings != 2 || len(st.Detection) != 1 || math.Abs(st.Detection[0].MeanSeconds-2) > 1e-6 {
		t.Errorf("findings %d, detection %+v: want 2 findings detected 2s after their first span", st.Findings, st.Detection)
	}
	// Only "bb" is open in its latest version ("a" closed, "ccc" withdrawn).
	if jsonString(st.OpenByService) != jsonString([]ServiceCount{{"gateway", 1}, {"inventory-svc", 1}}) {
		t.Errorf("open findings by service: %s", jsonString(st.OpenByService))
	}
	if len(st.TopEdges) != 1 || st.TopEdges[0].Findings != 2 || st.TopEdges[0].FromService != "gateway" {
		t.Errorf("top crossing edges: %s", jsonString(st.TopEdges))
	}
	assertSameStats(t, st, Summarize(store.Latest(recs), store.Filter{}, 10))
	// Every query of queries.sql runs as written, with clickhouse-client's
	// parameter types (the coverage query on one hour of coverage).
	if err := c.WriteCoverage(ctx, []store.Coverage{{Hour: time.Now().UTC().Truncate(time.Hour), Tenant: "acme", Traces: 1}}, "one-hour"); err != nil {
		t.Fatal(err)
	}
	for _, q := range Queries() {
		if isDashboard(q) {
			continue // Grafana macros: TestLiveDashboardQueries runs them
		}
		args := []any{}
		for _, p := range q.Params {
			switch p.Name {
			case "since":
				args = append(args, ch.DateNamed("since", time.Unix(0, 0), ch.NanoSeconds))
			case "until":
				args = append(args, ch.DateNamed("until", time.Now().Add(time.Hour), ch.NanoSeconds))
			case "include_allowed":
				args = append(args, ch.Named(p.Name, uint8(0)))
			case "top":
				args = append(args, ch.Named(p.Name, uint32(5)))
			case "leak_ids":
				args = append(args, ch.Named(p.Name, []string{"a", "bb"}))
			case "leak_id":
				args = append(args, ch.Named(p.Name, "a"))
			case "trace_id":
				args = append(args, ch.Named(p.Name, recs[0].TraceID))
			default:
				args = append(args, ch.Named(p.Name, ""))
			}
		}
		rows, err := c.conn.Query(ctx, q.SQL, args...)
		if err != nil {
			t.Errorf("%s: %v", q.Name, err)
			continue
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil {
			t.Errorf("%s: %v", q.Name, err)
		}
		rows.Close()
		if n == 0 {
			t.Errorf("%s returned no rows", q.Name)
		}
	}
}

// assertEachVersionOnce checks, on the server directly, what holds whatever
// ClickHouse merged: each finding is there once after FINAL with its latest
// version, no (leak_id, version) pair and no evidence span of a version is
// stored twice (a re-sent batch was dropped), and the findings read back as
// the journal's latest versions, spans included. Raw rows are not counted
// per version: optimize_on_insert keeps only the newest version of a key
// within one insert, so older versions shipped together never become rows.
func assertEachVersionOnce(t *testing.T, direct config.ClickHouse, recs []store.Evidence) {
	t.Helper()
	c := liveClient(t, direct)
	latest := store.Latest(recs)
	if n := liveCount(t, c, "SELECT count() FROM tenant_leaks FINAL"); n != uint64(len(latest)) {
		t.Errorf("%d findings after FINAL, want each of %d exactly once", n, len(latest))
	}
	var wantMax uint64
	for _, ev := range latest {
		wantMax += ev.Version
	}
	if n := liveCount(t, c, "SELECT sum(v) FROM (SELECT max(version) AS v FROM tenant_leaks GROUP BY leak_id)"); n != wantMax {
		t.Errorf("the latest versions sum to %d, want %d: a latest version is missing", n, wantMax)
	}
	if n := liveCount(t, c, "SELECT count() FROM (SELECT leak_id, version FROM tenant_leaks GROUP BY leak_id, version HAVING count() > 1)"); n != 0 {
		t.Errorf("%d finding versions stored twice: a re-sent batch was not deduplicated", n)
	}
	if n := liveCount(t, c, "SELECT count() FROM (SELECT leak_id, version, span_id FROM tenant_leak_spans GROUP BY leak_id, version, span_id HAVING count() > 1)"); n != 0 {
		t.Errorf("%d evidence spans stored twice for one version: a batch cut between its two inserts doubled its spans", n)
	}
	got, err := c.List(context.Background(), store.Filter{IncludeAllowed: true})
	if err != nil {
		t.Fatal(err)
	}
	assertSameEvidence(t, "findings after the outage", got, latest)
	if len(latest) > 40 {
		latest = latest[:40] // enough to see it; each Show is two queries
	}
	for _, ev := range latest {
		_, history, err := c.Show(context.Background(), ev.LeakID)
		if err != nil {
			t.Fatal(err)
		}
		var versions []store.Evidence
		for _, r := range recs {
			if r.LeakID == ev.LeakID {
				versions = append(versions, r)
			}
		}
		if g, w := jsonString(history), jsonString(SpanHistory(versions)); g != w {
			t.Errorf("span history of %s:\n got %s\nwant %s", ev.LeakID, g, w)
		}
	}
}

// drainAndStop waits until the shipper has shipped its whole backlog, then
// stops it, which must report nothing left behind.
func drainAndStop[T any](t *testing.T, s *fileShipper[T]) {
	t.Helper()
	eventually(t, "the backlog to drain", func() (bool, string) {
		st := s.Status()
		return st.Backlog == 0, fmt.Sprintf("%+v", st)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}
