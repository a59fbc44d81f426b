package clickhouse

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/store"
)

// coverageRecord is one collector's hour of a tenant, with two services.
func coverageRecord(collector string, hour time.Time, tenant string, n uint64) store.Coverage {
	return store.Coverage{
		Collector: collector, Hour: hour, Tenant: tenant,
		Traces: 10 * n, Spans: 100 * n, SpansMissingTenant: n,
		CrossingsSucceeded: n, CrossingsRefused: 2 * n, UnscopedQueries: 3 * n,
		Services: map[string]store.ServiceCoverage{
			"checkout": {Traces: 10 * n, TracesWithoutTenant: n},
			"payments": {Traces: 4 * n},
		},
	}
}

func appendCoverage(t *testing.T, journalPath string, recs ...store.Coverage) {
	t.Helper()
	if err := store.AppendCoverage(store.CoveragePath(journalPath), recs); err != nil {
		t.Fatal(err)
	}
}

func readCoverage(t *testing.T, journalPath string) []store.Coverage {
	t.Helper()
	recs, rep, err := store.ReadCoverageFile(store.CoveragePath(journalPath))
	if err != nil || len(rep.Corrupt) > 0 {
		t.Fatalf("reading the coverage file: %v %+v", err, rep)
	}
	return recs
}

func startCoverageShipper(t *testing.T, cfg config.ClickHouse, journalPath string, w CoverageWriter) *CoverageShipper {
	t.Helper()
	s, err := NewCoverageShipper(cfg, journalPath, w, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	return s
}

// coverageTotals reads tenant_coverage summed per (hour, tenant, service),
// as every reader must (merges come when they like), in the form
// store.SumCoverage gives, Collector left empty.
func coverageTotals(t *testing.T, c *Client) map[string]string {
	t.Helper()
	rows, err := c.conn.Query(context.Background(), `SELECT hour, tenant, service,
    sum(traces), sum(spans), sum(spans_missing_tenant), sum(crossings_succeeded),
    sum(crossings_refused), sum(unscoped_queries), sum(traces_without_tenant)
FROM tenant_coverage GROUP BY hour, tenant, service`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]string{}
	for rows.Next() {
		var (
			hour            time.Time
			tenant, service string
			n               [7]uint64
		)
		if err := rows.Scan(&hour, &tenant, &service, &n[0], &n[1], &n[2], &n[3], &n[4], &n[5], &n[6]); err != nil {
			t.Fatal(err)
		}
		got[fmt.Sprintf("%s %s %q", hour.UTC().Format(time.RFC3339), tenant, service)] = fmt.Sprint(n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// wantTotals is what tenant_coverage must hold for recs: store.SumCoverage,
// the journal reader's sum, as rows.
func wantTotals(recs []store.Coverage) map[string]string {
	want := map[string]string{}
	for _, c := range store.SumCoverage(recs) {
		h := c.Hour.UTC().Format(time.RFC3339)
		want[fmt.Sprintf("%s %s %q", h, c.Tenant, "")] = fmt.Sprint([7]uint64{c.Traces, c.Spans, c.SpansMissingTenant,
			c.CrossingsSucceeded, c.CrossingsRefused, c.UnscopedQueries, 0})
		for name, s := range c.Services {
			want[fmt.Sprintf("%s %s %q", h, c.Tenant, name)] = fmt.Sprint([7]uint64{s.Traces, 0, 0, 0, 0, 0, s.TracesWithoutTenant})
		}
	}
	return want
}

func assertTotals(t *testing.T, c *Client, recs []store.Coverage) {
	t.Helper()
	got, want := coverageTotals(t, c), wantTotals(recs)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tenant_coverage sums:\n got %v\nwant %v", got, want)
	}
}

// assertCoverageReader checks that Client.Coverage gives what the journal
// reader's store.SumCoverage gives for recs, whole and for a tenant and an
// hour.
func assertCoverageReader(t *testing.T, c *Client, recs []store.Coverage) {
	t.Helper()
	want := store.SumCoverage(recs)
	wantCollectors := map[string]bool{}
	for _, r := range recs {
		wantCollectors[r.Collector] = true
	}
	got, collectors, err := c.Coverage(context.Background(), time.Time{}, time.Time{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if g, w := jsonString(got), jsonString(want); g != w {
		t.Fatalf("Coverage:\n got %s\nwant %s", g, w)
	}
	if len(collectors) != len(wantCollectors) || !slices.IsSorted(collectors) {
		t.Fatalf("collectors %v, want the %d of the records, sorted", collectors, len(wantCollectors))
	}
	for _, name := range collectors {
		if !wantCollectors[name] {
			t.Fatalf("collectors %v: %s counted nothing", collectors, name)
		}
	}
	first := want[0]
	got, _, err = c.Coverage(context.Background(), first.Hour, first.Hour.Add(time.Hour), first.Tenant)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := jsonString(got), jsonString(want[:1]); g != w {
		t.Fatalf("Coverage of %s at %s:\n got %s\nwant %s", first.Tenant, first.Hour, g, w)
	}
}

// Two collectors of the scale-out layout each ship their own coverage
// file; their counts for the same tenant and hour add up, before and after
// SummingMergeTree merges the rows.
func TestLiveCoverageOfTwoCollectorsAddsUp(t *testing.T) {
	cfg, _ := liveEngine(t)
	hour := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	a, b := tempJournal(t), tempJournal(t)
	ra := []store.Coverage{coverageRecord("collector-a", hour, "acme", 1), coverageRecord("collector-a", hour, "globex", 2),
		coverageRecord("collector-a", hour.Add(time.Hour), "acme", 5)}
	rb := []store.Coverage{coverageRecord("collector-b", hour, "acme", 3), coverageRecord("collector-b", hour, "\xff\xfe", 7)}
	appendCoverage(t, a, ra...)
	appendCoverage(t, b, rb...)
	conn := NewConnector(cfg, zaptest.NewLogger(t))
	defer conn.Close()
	sa, sb := startCoverageShipper(t, cfg, a, conn), startCoverageShipper(t, cfg, b, conn)
	drainAndStop(t, sa)
	drainAndStop(t, sb)

	c := liveClient(t, cfg)
	// As the files hold them: the invalid UTF-8 tenant is stored as JSON
	// stores it (U+FFFD), once.
	all := append(readCoverage(t, a), readCoverage(t, b)...)
	if len(all) != len(ra)+len(rb) {
		t.Fatalf("%d records in the files, want %d", len(all), len(ra)+len(rb))
	}
	assertTotals(t, c, all)
	if got := liveCount(t, c, "SELECT sum(traces) FROM tenant_coverage WHERE tenant = 'acme' AND service = '' AND hour = '2026-03-04 10:00:00'"); got != 40 {
		t.Fatalf("acme's traces at 10:00 from both collectors: %d, want 10+30", got)
	}
	assertCoverageReader(t, c, all)
	if err := c.conn.Exec(context.Background(), "OPTIMIZE TABLE tenant_coverage FINAL"); err != nil {
		t.Fatal(err)
	}
	assertTotals(t, c, all)
	assertCoverageReader(t, c, all)
	if n := liveCount(t, c, "SELECT count() FROM tenant_coverage WHERE tenant = 'acme' AND hour = '2026-03-04 10:00:00'"); n != 3 {
		t.Fatalf("%d rows for acme at 10:00 after the merge, want 3 (tenant, checkout, payments)", n)
	}
}

// lossyCoverageWriter reaches ClickHouse, then loses the acknowledgement of
// the first lose writes, as a connection cut after the server stored the
// rows does.
type lossyCoverageWriter struct {
	w       CoverageWriter
	lose    atomic.Int32
	records atomic.Int64 // records of every write, re-sends included
}

func (l *lossyCoverageWriter) WriteCoverage(ctx context.Context, batch []store.Coverage, token string) error {
	l.records.Add(int64(len(batch)))
	if err := l.w.WriteCoverage(ctx, batch, token); err != nil {
		return err
	}
	if l.lose.Add(-1) >= 0 {
		return fmt.Errorf("%w: acknowledgement lost (test)", ErrUnavailable)
	}
	return nil
}

// A batch stored but not acknowledged is sent again with the same token:
// the server drops it, and nothing is counted twice.
func TestLiveCoverageResentAfterALostAcknowledgementIsCountedOnce(t *testing.T) {
	cfg, _ := liveEngine(t)
	hour := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	path := tempJournal(t)
	recs := []store.Coverage{coverageRecord("collector-a", hour, "acme", 1), coverageRecord("collector-a", hour, "globex", 2)}
	appendCoverage(t, path, recs...)
	conn := NewConnector(cfg, zaptest.NewLogger(t))
	defer conn.Close()
	lw := &lossyCoverageWriter{w: conn}
	lw.lose.Store(2)
	s := startCoverageShipper(t, cfg, path, lw)
	drainAndStop(t, s)
	if n := lw.records.Load(); n != 3*int64(len(recs)) {
		t.Fatalf("%d records written, want the batch sent 3 times (two acknowledgements lost)", n)
	}
	assertTotals(t, liveClient(t, cfg), recs)
}

// A restarted collector resumes from the cursor: what the first run
// shipped is not sent again, and a record whose bytes repeat an earlier
// one (the same late traces of a tenant in the same hour, in a second
// take) is a new record, counted.
func TestLiveCoverageShipperResumesFromItsCursor(t *testing.T) {
	cfg, _ := liveEngine(t)
	hour := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	path := tempJournal(t)
	first := []store.Coverage{coverageRecord("collector-a", hour, "acme", 1)}
	appendCoverage(t, path, first...)
	conn := NewConnector(cfg, zaptest.NewLogger(t))
	defer conn.Close()
	lw := &lossyCoverageWriter{w: conn}
	drainAndStop(t, startCoverageShipper(t, cfg, path, lw))

	// The collector is down while as many late traces of the hour are
	// counted again: the same bytes, alone in their batch as the first were.
	again := []store.Coverage{first[0]}
	appendCoverage(t, path, again...)
	lw.records.Store(0)
	drainAndStop(t, startCoverageShipper(t, cfg, path, lw))
	if n := lw.records.Load(); n != int64(len(again)) {
		t.Fatalf("the restarted shipper wrote %d records, want only the %d after the cursor", n, len(again))
	}
	assertTotals(t, liveClient(t, cfg), append(first, again...))
}

// A coverage record ClickHouse cannot hold (an hour past 2106, from an
// edited or corrupt file) and a line that is not a record are set aside in
// the dead-letter file; the records around them are counted.
func TestLiveCoverageRecordsClickHouseCannotHoldAreDeadLettered(t *testing.T) {
	cfg, _ := liveEngine(t)
	hour := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	path := tempJournal(t)
	good := []store.Coverage{coverageRecord("collector-a", hour, "acme", 1), coverageRecord("collector-a", hour, "globex", 2)}
	appendCoverage(t, path, good[0], coverageRecord("collector-a", time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), "acme", 9))
	appendRaw(t, store.CoveragePath(path), "{\"hour\": \"not a time\"}\n")
	appendCoverage(t, path, good[1])
	conn := NewConnector(cfg, zaptest.NewLogger(t))
	defer conn.Close()
	s := startCoverageShipper(t, cfg, path, conn)
	drainAndStop(t, s)
	if st := s.Status(); st.DeadLetters != 2 || st.Shipped != 2 {
		t.Fatalf("%+v, want 2 shipped and 2 dead-lettered", st)
	}
	dead, err := os.ReadFile(store.CoveragePath(path) + DeadLetterSuffix)
	if err != nil || !strings.Contains(string(dead), "2200-01-01") || !strings.Contains(string(dead), "not a time") {
		t.Fatalf("dead-letter file: %v\n%s", err, dead)
	}
	assertTotals(t, liveClient(t, cfg), good)
}
