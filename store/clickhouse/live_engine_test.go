package clickhouse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"go.uber.org/zap/zaptest"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/internal/chserver"
	"github.com/tenantguard/tenantguard/store"
)

// These live tests need the engine (internal/chserver): they upgrade a
// schema built by hand, or make the server fail on purpose. Each failed
// before the fix it names.

// liveEngine is a fresh database on the engine, the server to inject
// faults into, and a shipper's config.
func liveEngine(t *testing.T) (config.ClickHouse, *chserver.Server) {
	t.Helper()
	cfg, srv := engineConfig(t)
	freshDatabase(t, cfg)
	return cfg, srv
}

func shipAll(t *testing.T, cfg config.ClickHouse, recs []store.Evidence) *Shipper {
	t.Helper()
	path := tempJournal(t)
	appendJournal(t, path, recs...)
	conn := NewConnector(cfg, zaptest.NewLogger(t))
	t.Cleanup(func() { conn.Close() })
	s, err := NewShipper(cfg, path, conn, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s
}

// Bug: partitions were months of first_seen, a span time the client sends.
// A batch whose first_seen values spanned more than 100 months failed with
// code 252 (too many partitions for one insert), which is retried: the
// shipper stalled on it forever and nothing behind it shipped.
func TestLiveABatchWhoseSpansSpreadOverCenturiesIsStored(t *testing.T) {
	cfg, _ := liveEngine(t)
	cfg.BatchSize = 200
	var recs []store.Evidence
	for i := range 150 {
		ev := finding(i, 1)
		ev.FirstSeen = time.Date(1901+i*2, time.Month(1+i%12), 3, 4, 5, 6, 0, time.UTC)
		ev.LastSeen = ev.FirstSeen.Add(time.Minute)
		ev.DetectedAt = time.Now().UTC().Truncate(time.Microsecond)
		recs = append(recs, ev)
	}
	s := shipAll(t, cfg, recs)
	drainAndStop(t, s)
	if st := s.Status(); st.Shipped != uint64(len(recs)) || st.DeadLetters != 0 {
		t.Fatalf("%+v, want every record shipped", st)
	}
	assertEachVersionOnce(t, cfg, recs)
}

// Bug: TTL counted from last_seen, a span time the client sends with no
// lower bound, so a finding dated in the past vanished at the first TTL
// merge while the journal kept it.
func TestLiveFindingsDatedLongAgoSurviveTTLMerges(t *testing.T) {
	cfg, _ := liveEngine(t)
	c := liveClient(t, cfg)
	ctx := context.Background()
	recs := findings(0, 4)
	for i := range recs {
		recs[i].FirstSeen = time.Date(1971+i*10, 2, 3, 4, 5, 6, 0, time.UTC)
		recs[i].LastSeen = recs[i].FirstSeen.Add(time.Hour)
		recs[i].DetectedAt = time.Now().UTC().Truncate(time.Microsecond)
	}
	if err := c.Write(ctx, recs, "long-ago"); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"tenant_leaks", "tenant_leak_spans"} {
		// A merge applies TTL: what it keeps, ClickHouse keeps.
		if err := c.conn.Exec(ctx, "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
			t.Fatal(err)
		}
	}
	assertEachVersionOnce(t, cfg, recs)
	if n := liveCount(t, c, "SELECT count() FROM tenant_leak_spans"); n != uint64(2*len(recs)) {
		t.Fatalf("%d evidence span rows after a TTL merge, want %d", n, 2*len(recs))
	}
}

// Bug: a server error code in neither of the store's lists (here 439,
// CANNOT_SCHEDULE_TASK) counted against max_attempts, and good records went
// to the dead-letter file, from which nothing retries them.
func TestLiveUnknownServerErrorsAreRetriedNeverDeadLettered(t *testing.T) {
	cfg, srv := liveEngine(t)
	var mu sync.Mutex
	failures := 0
	const fail = 12 // more than max_attempts, on every batch and part
	srv.InjectFault(func(query string, data []byte) *chserver.Exception {
		mu.Lock()
		defer mu.Unlock()
		if !strings.HasPrefix(query, "INSERT INTO tenant_leaks ") || failures >= fail {
			return nil
		}
		failures++
		return &chserver.Exception{Code: 439, Message: "DB::Exception: Cannot schedule a task: injected by the test. (CANNOT_SCHEDULE_TASK)"}
	})
	recs := liveFixture()
	s := shipAll(t, cfg, recs)
	drainAndStop(t, s)
	st := s.Status()
	if st.DeadLetters != 0 || st.Shipped != uint64(len(recs)) {
		t.Fatalf("%+v: an unknown server error must be retried, never dead-letter a record", st)
	}
	if st.Unknown != fail || !strings.Contains(st.LastError, "439") {
		t.Fatalf("%+v: want the %d unknown failures counted and the last one reported", st, fail)
	}
	assertEachVersionOnce(t, cfg, recs)
}

// A batch that fails as a whole is split down to the record that fails:
// refused by ClickHouse (code 53, a type mismatch), that record alone goes
// to the dead-letter file; failing for a reason nobody knows (code 735),
// the records before it ship while it is retried, and it ships once the
// cause is gone.
func TestLiveAFailingRecordIsSplitOutOfItsBatch(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		cfg, srv := liveEngine(t)
		srv.InjectFault(func(query string, data []byte) *chserver.Exception {
			if strings.HasPrefix(query, "INSERT INTO tenant_leaks ") && bytes.Contains(data, []byte("leak-02")) {
				return &chserver.Exception{Code: 53, Message: "DB::Exception: Type mismatch: injected by the test. (TYPE_MISMATCH)"}
			}
			return nil
		})
		recs := findings(0, 6)
		s := shipAll(t, cfg, recs)
		drainAndStop(t, s)
		if st := s.Status(); st.DeadLetters != 1 || st.Shipped != 5 {
			t.Fatalf("%+v: want leak-02 alone dead-lettered", st)
		}
		dl, err := os.ReadFile(s.deadPath)
		if err != nil || bytes.Count(dl, []byte("\n")) != 1 || !bytes.Contains(dl, []byte(`"leak_id":"leak-02"`)) {
			t.Fatalf("dead letters: %s %v", dl, err)
		}
		assertEachVersionOnce(t, cfg, append(recs[:2:2], recs[3:]...))
	})
	t.Run("unknown", func(t *testing.T) {
		cfg, srv := liveEngine(t)
		var stuck atomic.Bool
		stuck.Store(true)
		srv.InjectFault(func(query string, data []byte) *chserver.Exception {
			if stuck.Load() && strings.HasPrefix(query, "INSERT INTO tenant_leaks ") && bytes.Contains(data, []byte("leak-02")) {
				return &chserver.Exception{Code: 735, Message: "DB::Exception: injected by the test"}
			}
			return nil
		})
		recs := findings(0, 6)
		s := shipAll(t, cfg, recs)
		eventually(t, "the records before leak-02 to ship while it fails", func() (bool, string) {
			st := s.Status()
			return st.Shipped == 2 && st.Unknown > uint64(2*cfg.MaxAttempts), fmt.Sprintf("%+v", st)
		})
		stuck.Store(false)
		drainAndStop(t, s)
		if st := s.Status(); st.DeadLetters != 0 || st.Shipped != 6 {
			t.Fatalf("%+v", st)
		}
		assertEachVersionOnce(t, cfg, recs)
	})
}

// oldSchemaWithAFinding creates the schema of migrations 1 to 4 and writes
// a finding into it as a collector of then did (the columns it had). The
// finding has a link edge, keys and queries: none of which that schema holds.
func oldSchemaWithAFinding(t *testing.T, cfg config.ClickHouse) store.Evidence {
	t.Helper()
	ctx := context.Background()
	// The tables as migrations 1 to 4 created them, with the columns of then.
	all, leaks, spans := migrations, leakColumns, spanColumns
	migrations, leakColumns, spanColumns = all[:4], leaks[:16], spans[:17]
	old, err := Open(ctx, cfg, zaptest.NewLogger(t))
	migrations, leakColumns, spanColumns = all, leaks, spans
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	ev := finding(1, 3)
	ev.DetectedAt = time.Now().UTC().Truncate(time.Microsecond)
	ev.FirstSeen = ev.DetectedAt.Add(-2 * time.Hour) // the old TTL would drop an older one at once
	ev.LastSeen = ev.FirstSeen.Add(time.Hour)
	row, err := leakRow(&ev)
	if err != nil {
		t.Fatal(err)
	}
	// The columns of migrations 1 and 2, as a collector of then wrote them.
	if err := old.insert(ctx, "tenant_leaks", leakColumns[:16], [][]any{row[:16]}); err != nil {
		t.Fatal(err)
	}
	var spanRowsThen [][]any
	for _, r := range spanRows(&ev) {
		spanRowsThen = append(spanRowsThen, r[:17])
	}
	if err := old.insert(ctx, "tenant_leak_spans", spanColumns[:17], spanRowsThen); err != nil {
		t.Fatal(err)
	}
	if n := liveCount(t, old, "SELECT count() FROM system.columns WHERE database = '"+cfg.Database+"' AND table = 'tenant_leaks' AND name = 'reason'"); n != 0 {
		t.Fatal("the old schema already has the columns of migration 5")
	}
	return ev
}

// A database created by the first four migrations, with rows in it,
// upgrades: the new columns read as empty on old rows, the tables move to
// detection-time partitions and TTL, and nothing is lost.
func TestLiveMigrationUpgradesAnOldSchemaKeepingItsRows(t *testing.T) {
	cfg, _ := liveEngine(t)
	ctx := context.Background()
	ev := oldSchemaWithAFinding(t, cfg)

	c := liveClient(t, cfg) // migrates
	for _, table := range []string{"tenant_leaks", "tenant_leak_spans"} {
		var key string
		if err := c.conn.QueryRow(ctx, "SELECT partition_key FROM system.tables WHERE database = {db:String} AND name = {t:String}",
			ch.Named("db", cfg.Database), ch.Named("t", table)).Scan(&key); err != nil || key != "toYYYYMM(detected_at)" {
			t.Errorf("%s partitioned by %q (%v), want toYYYYMM(detected_at)", table, key, err)
		}
		if n := liveCount(t, c, "SELECT count() FROM system.tables WHERE database = '"+cfg.Database+"' AND name LIKE '"+table+"_rebuild%'"); n != 0 {
			t.Errorf("the rebuild left a copy of %s behind", table)
		}
		if err := c.conn.Exec(ctx, "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
			t.Fatal(err)
		}
	}
	got, history, err := c.Show(ctx, ev.LeakID)
	if err != nil {
		t.Fatal(err)
	}
	want := ev
	want.Reason, want.Keys, want.Queries = "", nil, nil
	want.CrossingEdges = nil
	for _, e := range ev.CrossingEdges {
		e.From.TraceID, e.To.TraceID, e.Link, e.Outcome = "", "", false, ""
		want.CrossingEdges = append(want.CrossingEdges, e)
	}
	want.Spans = nil
	for _, sp := range ev.Spans {
		sp.Outcome, sp.Data = "", false
		want.Spans = append(want.Spans, sp)
	}
	assertSameEvidence(t, "an old row after the upgrade", []store.Evidence{got}, []store.Evidence{want})
	if len(history) != len(ev.Spans) {
		t.Errorf("span history: %+v", history)
	}
	// Written after the upgrade, the same finding keeps every field.
	ev.Version = 4
	if err := c.Write(ctx, []store.Evidence{ev}, "after-upgrade"); err != nil {
		t.Fatal(err)
	}
	got, _, err = c.Show(ctx, ev.LeakID)
	if err != nil {
		t.Fatal(err)
	}
	assertSameEvidence(t, "a new version after the upgrade", []store.Evidence{got}, []store.Evidence{ev})
}

// protocol: http with TLS is HTTPS, as ClickHouse Cloud serves on 8443: the
// configured CA is what the server's certificate is checked against, and a
// server the CA does not vouch for is refused (retried as unavailable,
// never written to).
func TestLiveHTTPSChecksTheServerAgainstTheConfiguredCA(t *testing.T) {
	srv := chserver.StartTLS(t)
	cfg := shortRetries(config.DefaultClickHouse())
	cfg.Protocol, cfg.Endpoints, cfg.Database = "http", []string{srv.Addr()}, "tenantguard_tls_test"
	cfg.DialTimeout = 2 * time.Second
	ctx := context.Background()

	// The system roots do not know the server: no connection.
	_, err := Open(ctx, cfg, zaptest.NewLogger(t))
	if err == nil || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a server outside the configured roots: %v, want an unavailable certificate error", err)
	}

	cfg.TLS.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(cfg.TLS.CAFile, srv.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Open(ctx, cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	recs := findings(0, 3)
	if err := c.Write(ctx, recs, "over-https"); err != nil {
		t.Fatal(err)
	}
	got, err := c.List(ctx, store.Filter{IncludeAllowed: true})
	if err != nil {
		t.Fatal(err)
	}
	assertSameEvidence(t, "findings over HTTPS", got, store.Latest(recs))
}

// Hostile values (quotes, backslashes, control characters, NUL, emoji, a
// 64 KiB name) are stored and read back exactly, and filter on exactly.
func TestLiveHostileValuesRoundTrip(t *testing.T) {
	cfg, _ := liveEngine(t)
	c := liveClient(t, cfg)
	ctx := context.Background()
	weird := "ten'ant\\\"x\t\n\r\x00é🙂"
	ev := finding(1, 1)
	ev.Tenants = []string{"acme", weird}
	ev.Services = []string{strings.Repeat("s", 64<<10), "gate`way"}
	ev.Reason = "a \\N reason\x00 with 'quotes'"
	ev.CrossingEdges[0].To.Tenant = weird
	ev.Spans[1].Attributes["db.query.text"] = "SELECT '\\x00' FROM t WHERE a = \"b\"\n"
	ev.Keys[0].Identifier = "kid\\'\x01"
	if err := c.Write(ctx, []store.Evidence{ev}, "hostile"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []store.Filter{{}, {Tenant: weird}, {Service: "gate`way"}} {
		got, err := c.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		assertSameEvidence(t, fmt.Sprintf("List(%q)", f.Tenant+f.Service), got, []store.Evidence{ev})
	}
	if got, _ := c.List(ctx, store.Filter{Tenant: "ten'ant"}); len(got) != 0 {
		t.Errorf("a prefix of the tenant matched: %d findings", len(got))
	}
}

// Two collectors upgrading the same database at the same moment each
// rebuild into their own copy: the finding survives whichever swaps last.
func TestLiveTwoCollectorsUpgradingAtOnceLoseNothing(t *testing.T) {
	cfg, _ := liveEngine(t)
	ev := oldSchemaWithAFinding(t, cfg)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for try := 0; try < 3; try++ { // a collector whose migration failed tries again later
				var c *Client
				if c, errs[i] = Open(ctx, cfg, zaptest.NewLogger(t)); errs[i] == nil {
					c.Close()
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("collector %d could not migrate: %v", i, err)
		}
	}
	c := liveClient(t, cfg)
	got, err := c.List(ctx, store.Filter{IncludeAllowed: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].LeakID != ev.LeakID || len(got[0].Spans) != len(ev.Spans) {
		t.Fatalf("after two upgrades at once: %s", jsonString(got))
	}
	if n := liveCount(t, c, "SELECT count() FROM system.tables WHERE database = '"+cfg.Database+"' AND name LIKE '%_rebuild%'"); n != 0 {
		t.Errorf("%d rebuild copies left behind", n)
	}
}
