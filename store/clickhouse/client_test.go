package clickhouse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/store"
)

func fakeClient(t *testing.T) (*Client, *fakeConn) {
	t.Helper()
	fc := newFakeConn()
	cfg := testConfig()
	cfg.Password = "s3cret-pw"
	return &Client{conn: fc, cfg: cfg, logger: zap.NewNop()}, fc
}

// scanLeaks reads tenant_leaks rows back as evidence, the way the readers do.
func scanLeaks(t *testing.T, b *proto.Block) []store.Evidence {
	t.Helper()
	rows := &fakeRows{block: b}
	var out []store.Evidence
	for rows.Next() {
		var s leakScan
		if err := rows.Scan(s.dest()...); err != nil {
			t.Fatal(err)
		}
		out = append(out, s.evidence())
	}
	return out
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withoutSpans is ev as tenant_leaks holds it: spans live in their own table.
func withoutSpans(ev store.Evidence) store.Evidence {
	ev.Spans = []store.Span{}
	return ev
}

func TestWriteStoresWhatTheReadersGetBack(t *testing.T) {
	c, fc := fakeClient(t)
	batch := []store.Evidence{finding(0, 7), finding(1, 2), finding(2, 1)}
	batch[1].Status, batch[1].AllowedBy = "allowed", "allow.services: admin-console"
	batch[2].Tenants = []string{"initech", "acme", "globex"} // stored sorted
	batch[2].CrossingEdges = []store.CrossingEdge{}
	if err := c.Write(context.Background(), batch, "tok-1"); err != nil {
		t.Fatal(err)
	}
	if len(fc.inserts) != 2 {
		t.Fatalf("want one insert per table: %+v", fc.inserts)
	}
	if want := "INSERT INTO tenant_leaks (leak_id, version, trace_id, rule, severity, status, allowed_by, tenants, services, " +
		"crossing_edges, mismatches, span_count, first_seen, last_seen, detected_at, collector, reason, keys, queries, crossing_edge_details)"; fc.inserts[0].sql != want {
		t.Errorf("insert:\n got %s\nwant %s", fc.inserts[0].sql, want)
	}
	if want := "INSERT INTO tenant_leak_spans (leak_id, version, trace_id, evidence_index, span_id, parent_span_id, service, " +
		"span_name, kind, tenant, tenant_key, start_time, duration_ns, status_code, attributes, first_seen, last_seen, outcome, data, detected_at)"; fc.inserts[1].sql != want {
		t.Errorf("insert:\n got %s\nwant %s", fc.inserts[1].sql, want)
	}
	got := scanLeaks(t, fc.inserted["tenant_leaks"][0])
	batch[2].Tenants = []string{"acme", "globex", "initech"}
	for i := range batch {
		if w, g := jsonOf(t, withoutSpans(batch[i])), jsonOf(t, got[i]); w != g {
			t.Errorf("row %d read back differently:\n got %s\nwant %s", i, g, w)
		}
	}
	spans := fc.inserted["tenant_leak_spans"][0]
	rows := &fakeRows{block: spans}
	var n int
	for rows.Next() {
		var (
			leakID, traceID, spanID, parent, service, name, kind, tenant, key, status, outcome string
			version, duration                                                                  uint64
			index                                                                              uint16
			start, first, last, detected                                                       time.Time
			attrs                                                                              map[string]string
			data                                                                               bool
		)
		if err := rows.Scan(&leakID, &version, &traceID, &index, &spanID, &parent, &service, &name, &kind, &tenant, &key,
			&start, &duration, &status, &attrs, &first, &last, &outcome, &data, &detected); err != nil {
			t.Fatal(err)
		}
		ev := batch[n/2]
		want := ev.Spans[n%2]
		if leakID != ev.LeakID || version != ev.Version || traceID != ev.TraceID || int(index) != n%2 || spanID != want.SpanID ||
			parent != want.ParentID || service != want.Service || name != want.Name || tenant != want.Tenant || key != want.TenantKey ||
			!first.Equal(ev.FirstSeen) || !last.Equal(ev.LastSeen) || !detected.Equal(ev.DetectedAt) ||
			outcome != want.Outcome || data != want.Data {
			t.Errorf("span row %d: %s %d %s %d %s %s %s %s %s %s", n, leakID, version, traceID, index, spanID, parent, service, name, tenant, key)
		}
		if kind != want.Kind || !decodeTime(start).Equal(want.StartTime) || duration != want.DurationNs || status != want.Status ||
			!maps.Equal(attrs, want.Attributes) {
			t.Errorf("span row %d details: %s %s %d %s %v, want %+v", n, kind, start, duration, status, attrs, want)
		}
		n++
	}
	if n != 6 {
		t.Fatalf("%d span rows, want 6", n)
	}
}

func TestWriteRejectsWhatClickHouseCannotHold(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*store.Evidence)
		field string
	}{
		{"no leak id", func(e *store.Evidence) { e.LeakID = "" }, "leak_id"},
		{"short trace id", func(e *store.Evidence) { e.TraceID = "abc" }, "trace_id"},
		{"uppercase trace id", func(e *store.Evidence) { e.TraceID = strings.ToUpper(traceHex(1)) }, "trace_id"},
		{"year 2300", func(e *store.Evidence) { e.LastSeen = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) }, "last_seen"},
		{"year 1800", func(e *store.Evidence) { e.FirstSeen = time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC) }, "first_seen"},
		{"hops", func(e *store.Evidence) { e.CrossingEdges[0].Hops = 70000 }, "crossing_edges.hops"},
		{"span count", func(e *store.Evidence) { e.SpanCount = -1 }, "span_count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, fc := fakeClient(t)
			ev := finding(1, 1)
			tc.edit(&ev)
			err := c.Write(context.Background(), []store.Evidence{finding(0, 1), ev}, "tok")
			var rec *RecordError
			if !errors.Is(err, ErrRejected) || !errors.As(err, &rec) || rec.Field != tc.field {
				t.Fatalf("want ErrRejected naming %s, got %v", tc.field, err)
			}
			if len(fc.inserts) != 0 {
				t.Fatal("nothing may be sent when a record does not encode")
			}
		})
	}
}

func TestZeroTimesRoundTrip(t *testing.T) {
	c, fc := fakeClient(t)
	ev := finding(1, 1)
	ev.DetectedAt = time.Time{}
	if err := c.Write(context.Background(), []store.Evidence{ev}, "tok"); err != nil {
		t.Fatal(err)
	}
	got := scanLeaks(t, fc.inserted["tenant_leaks"][0])
	if !got[0].DetectedAt.IsZero() {
		t.Fatalf("a zero time must read back as zero, got %s", got[0].DetectedAt)
	}
}

func TestInsertSettings(t *testing.T) {
	s := insertSettings("tok-9", false)
	if s["insert_deduplication_token"] != "tok-9" || s["insert_deduplicate"] != 1 || s["async_insert"] != 0 {
		t.Fatalf("%v", s)
	}
	if _, ok := s["distributed_foreground_insert"]; ok {
		t.Fatal("single server: no Distributed setting")
	}
	if insertSettings("t", true)["distributed_foreground_insert"] != 1 {
		t.Fatal("cluster: the acknowledgement must mean the shards have the rows")
	}
}

func TestAppendTokenIsDerivedFromTheBatch(t *testing.T) {
	c, fc := fakeClient(t)
	batch := findings(0, 2)
	if err := c.Append(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if len(fc.inserted["tenant_leaks"]) != 1 {
		t.Fatal("Append must write")
	}
}

// argNames returns the query parameter names passed to the driver.
func argNames(t *testing.T, args []any) []string {
	t.Helper()
	var out []string
	for _, a := range args {
		switch v := a.(type) {
		case driver.NamedValue:
			out = append(out, v.Name)
		case driver.NamedDateValue:
			out = append(out, v.Name)
		default:
			t.Fatalf("argument %#v is not a named query parameter", a)
		}
	}
	slices.Sort(out)
	return out
}

func paramNames(q Query) []string {
	var out []string
	for _, p := range q.Params {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

// assertRan checks that the driver received a query of queries.sql
// verbatim, with exactly its parameters.
func assertRan(t *testing.T, r recorded, name string) {
	t.Helper()
	q := query(name)
	if r.sql != q.SQL {
		t.Errorf("%s: the SQL sent is not the text of queries.sql:\n%s", name, r.sql)
	}
	if got, want := argNames(t, r.args), paramNames(q); !slices.Equal(got, want) {
		t.Errorf("%s: parameters %v, the query declares %v", name, got, want)
	}
}

func leakResultCols() [][2]string {
	var cols [][2]string
	for _, c := range leakColumns {
		cols = append(cols, [2]string{c.Name, c.Type})
	}
	return cols
}

func spanResultCols() [][2]string {
	var cols [][2]string
	for _, n := range spanReadColumns {
		cols = append(cols, [2]string{n, typeOf(spanColumns, n)})
	}
	return cols
}

// spanResultRow is a row of the finding_spans query for span i of ev.
func spanResultRow(ev store.Evidence, i int) []any {
	return spanRowOf(ev.LeakID, ev.Version, i, ev.Spans[i])
}

// spanRowOf is a row of the finding_spans query.
func spanRowOf(leakID string, version uint64, i int, s store.Span) []any {
	attrs := s.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	return []any{leakID, version, uint16(i), s.SpanID, s.ParentID, s.Service, s.Name, s.Kind, s.Tenant, s.TenantKey,
		spanStart(s.StartTime), s.DurationNs, s.Status, attrs, s.Outcome, s.Data}
}

func TestListRunsTheQueryFileAndRebuildsEvidence(t *testing.T) {
	c, fc := fakeClient(t)
	newer, older := finding(1, 5), finding(0, 2)
	oldSpan := store.Span{SpanID: "b000000000000009", Service: "cache", Name: "GET", Tenant: "acme"}
	fc.respond = func(sql string, args []any) (*proto.Block, error) {
		switch sql {
		case query(qList).SQL:
			var rows [][]any
			for _, ev := range []store.Evidence{newer, older} {
				r, err := leakRow(&ev)
				if err != nil {
					return nil, err
				}
				rows = append(rows, r)
			}
			return resultBlock(t, leakResultCols(), rows...), nil
		case query(qSpans).SQL:
			return resultBlock(t, spanResultCols(),
				spanResultRow(newer, 0), spanResultRow(newer, 1),
				// a span only an earlier version of "newer" recorded
				spanRowOf(newer.LeakID, 3, 0, oldSpan),
				spanResultRow(older, 1), spanResultRow(older, 0)), nil
		}
		return nil, fmt.Errorf("unexpected query %s", sql)
	}
	since := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	got, err := c.List(context.Background(), store.Filter{Since: since, Tenant: "acme", IncludeAllowed: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d findings", len(got))
	}
	for i, want := range []store.Evidence{newer, older} {
		if w, g := jsonOf(t, want), jsonOf(t, got[i]); w != g {
			t.Errorf("finding %d:\n got %s\nwant %s", i, g, w)
		}
	}
	assertRan(t, fc.queries[0], qList)
	assertRan(t, fc.queries[1], qSpans)
	for _, a := range fc.queries[0].args {
		switch v := a.(type) {
		case driver.NamedDateValue:
			if !v.Value.Equal(since) || v.Scale != uint8(ch.NanoSeconds) {
				t.Errorf("since %v scale %d", v.Value, v.Scale)
			}
		case driver.NamedValue:
			if v.Name == "tenant" && v.Value != "acme" || v.Name == "include_allowed" && v.Value != uint8(1) || v.Name == "rule" && v.Value != "" {
				t.Errorf("parameter %s = %#v", v.Name, v.Value)
			}
		}
	}
	if ids := fc.queries[1].args[0].(driver.NamedValue).Value; !reflect.DeepEqual(ids, []string{newer.LeakID, older.LeakID}) {
		t.Errorf("spans asked for %v", ids)
	}
}

func TestListWithoutSinceAsksFromTheStartOfDateTime64(t *testing.T) {
	c, fc := fakeClient(t)
	if _, err := c.List(context.Background(), store.Filter{}); err != nil {
		t.Fatal(err)
	}
	since := fc.queries[0].args[0].(driver.NamedDateValue)
	if !since.Value.Equal(time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("a zero since must be sent as 1900, where DateTime64 starts (it cannot hold year 1; spans may be dated before 1970): %s", since.Value)
	}
	if len(fc.queries) != 1 {
		t.Fatal("no findings: no spans query")
	}
}

func TestShowAndTrace(t *testing.T) {
	c, fc := fakeClient(t)
	ev := finding(4, 9)
	fc.respond = func(sql string, args []any) (*proto.Block, error) {
		switch sql {
		case query(qShow).SQL, query(qTrace).SQL:
			if sql == query(qShow).SQL && args[0].(driver.NamedValue).Value != ev.LeakID {
				return resultBlock(t, leakResultCols()), nil
			}
			r, _ := leakRow(&ev)
			return resultBlock(t, leakResultCols(), r), nil
		case query(qSpans).SQL:
			return resultBlock(t, spanResultCols(), spanResultRow(ev, 0), spanResultRow(ev, 1),
				spanRowOf(ev.LeakID, 1, 5, store.Span{SpanID: "c000000000000001", Service: "old-svc", Name: "old span", Tenant: "acme"})), nil
		}
		return nil, fmt.Errorf("unexpected query %s", sql)
	}
	got, history, err := c.Show(context.Background(), ev.LeakID)
	if err != nil {
		t.Fatal(err)
	}
	if jsonOf(t, got) != jsonOf(t, ev) {
		t.Fatalf("show:\n got %s\nwant %s", jsonOf(t, got), jsonOf(t, ev))
	}
	if len(history) != 3 || history[2].Service != "old-svc" {
		t.Fatalf("span history: %+v", history)
	}
	assertRan(t, fc.queries[0], qShow)
	if _, _, err := c.Show(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown leak id: %v", err)
	}
	found, err := c.Trace(context.Background(), ev.TraceID)
	if err != nil || len(found) != 1 || found[0].LeakID != ev.LeakID {
		t.Fatalf("trace: %v %+v", err, found)
	}
	assertRan(t, fc.queries[len(fc.queries)-2], qTrace)
	if _, err := c.Trace(context.Background(), "xyz"); err == nil {
		t.Fatal("a malformed trace id must be refused before it reaches ClickHouse")
	}
}

func TestStatsRunsTheQueryFile(t *testing.T) {
	c, fc := fakeClient(t)
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	fc.respond = func(sql string, args []any) (*proto.Block, error) {
		switch sql {
		case query(qTenantPairs).SQL:
			return resultBlock(t, [][2]string{{"day", "Date"}, {"tenant_a", "String"}, {"tenant_b", "String"}, {"findings", "UInt64"}},
				[]any{day, "acme", "globex", uint64(3)}), nil
		case query(qTopEdges).SQL:
			return resultBlock(t, [][2]string{{"from_service", "LowCardinality(String)"}, {"from_span", "String"},
				{"to_service", "LowCardinality(String)"}, {"to_span", "String"}, {"findings", "UInt64"}, {"latest_seen", dateTime64}},
				[]any{"gateway", "GET /inventory", "inventory-svc", "SELECT stock", uint64(3), t0}), nil
		case query(qDetection).SQL:
			return resultBlock(t, [][2]string{{"rule", "LowCardinality(String)"}, {"findings", "UInt64"}, {"mean_seconds", "Float64"}},
				[]any{"cross_tenant_trace", uint64(2), 1.5}, []any{"tenant_mismatch", uint64(1), 0.25}), nil
		case query(qOpenBySvc).SQL:
			return resultBlock(t, [][2]string{{"service", "LowCardinality(String)"}, {"findings", "UInt64"}},
				[]any{"gateway", uint64(2)}), nil
		}
		return nil, fmt.Errorf("unexpected query %s", sql)
	}
	st, err := c.Stats(context.Background(), store.Filter{Rule: "cross_tenant_trace"}, 5)
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{
		Findings:      3,
		TenantPairs:   []TenantPairDay{{Day: "2026-03-02", TenantA: "acme", TenantB: "globex", Findings: 3}},
		TopEdges:      []EdgeCount{{FromService: "gateway", FromSpan: "GET /inventory", ToService: "inventory-svc", ToSpan: "SELECT stock", Findings: 3, LatestSeen: t0}},
		Detection:     []RuleDetection{{Rule: "cross_tenant_trace", Findings: 2, MeanSeconds: 1.5}, {Rule: "tenant_mismatch", Findings: 1, MeanSeconds: 0.25}},
		OpenByService: []ServiceCount{{Service: "gateway", Findings: 2}},
	}
	if jsonOf(t, st) != jsonOf(t, want) {
		t.Fatalf("stats:\n got %s\nwant %s", jsonOf(t, st), jsonOf(t, want))
	}
	for i, name := range []string{qTenantPairs, qTopEdges, qDetection, qOpenBySvc} {
		assertRan(t, fc.queries[i], name)
	}
}

func TestClassify(t *testing.T) {
	exc := func(code int32) error { return fmt.Errorf("send: %w", &ch.Exception{Code: code, Message: "x"}) }
	for _, tc := range []struct {
		name string
		err  error
		want error // ErrUnavailable, ErrRejected or nil (unclassified)
	}{
		{"type mismatch", exc(53), ErrRejected},
		{"constraint", exc(469), ErrRejected},
		{"unknown table", exc(60), ErrUnavailable},
		{"too many parts", exc(252), ErrUnavailable},
		{"auth", exc(516), ErrUnavailable},
		{"unknown code", exc(1001), nil},
		{"record", &RecordError{LeakID: "x", Field: "trace_id", Reason: "bad"}, ErrRejected},
		{"deadline", context.DeadlineExceeded, ErrUnavailable},
		{"refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, ErrUnavailable},
		{"eof", io.EOF, ErrUnavailable},
		{"acquire", ch.ErrAcquireConnTimeout, ErrUnavailable},
		{"too old", fmt.Errorf("%w: 18.16", errTooOld), ErrUnavailable},
		{"other", errors.New("boom"), nil},
		{"http 503 from a proxy", &ch.HTTPError{StatusCode: 503, Err: errors.New("response body: \"<html>\"")}, ErrUnavailable},
		{"http 500 with an exception", &ch.HTTPError{StatusCode: 500, Err: &ch.Exception{Code: 53, Message: "x"}}, ErrRejected},
		{"http 500, unknown", &ch.HTTPError{StatusCode: 500, Err: errors.New("response body: \"?\"")}, nil},
	} {
		got := classify(tc.err)
		switch {
		case tc.want == nil && (errors.Is(got, ErrUnavailable) || errors.Is(got, ErrRejected)):
			t.Errorf("%s: classified as %v", tc.name, got)
		case tc.want != nil && !errors.Is(got, tc.want):
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("%s: the cause must stay in the chain", tc.name)
		}
	}
}

func TestRedactKeepsTheChainAndHidesTheSecret(t *testing.T) {
	err := redact(fmt.Errorf("%w: login with s3cret failed", ErrUnavailable), "s3cret")
	if strings.Contains(err.Error(), "s3cret") || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%v", err)
	}
	if redact(nil, "x") != nil {
		t.Fatal("nil stays nil")
	}
}

func TestOpenFailsFastWithoutThePassword(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	cfg := config.DefaultClickHouse()
	cfg.Endpoints = []string{addr}
	cfg.Password = configopaque.String("s3cret-pw")
	cfg.DialTimeout = 500 * time.Millisecond
	began := time.Now()
	c, err := Open(context.Background(), cfg, nil)
	if err == nil {
		c.Close()
		t.Fatal("connected to nothing")
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Fatalf("Open took %s", took)
	}
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Open error: %v", err)
	}
}

func TestCheckRefusesOldServers(t *testing.T) {
	c, fc := fakeClient(t)
	fc.version = proto.Version{Major: 18, Minor: 16, Patch: 1}
	err := c.check(context.Background())
	if !errors.Is(classify(err), ErrUnavailable) || !strings.Contains(err.Error(), "18.16.1") || !strings.Contains(err.Error(), "25.8") {
		t.Fatalf("old server: %v", err)
	}
	fc.version = proto.Version{Major: 25, Minor: 8}
	if err := c.check(context.Background()); err != nil {
		t.Fatal(err)
	}
	fc.version = proto.Version{Major: 26, Minor: 1}
	if err := c.check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestConnectorOpensLazilyAndReportsFailuresAsUnavailable(t *testing.T) {
	conn := NewConnector(testConfig(), nil)
	opens := 0
	conn.open = func(context.Context, config.ClickHouse, *zap.Logger) (*Client, error) {
		opens++
		if opens == 1 {
			return nil, errors.New("schema migration 1: code: 62, syntax error")
		}
		c, _ := fakeClient(t)
		return c, nil
	}
	if opens != 0 {
		t.Fatal("NewConnector must not connect")
	}
	err := conn.Write(context.Background(), findings(0, 1), "tok")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("an open failure must never dead-letter records: %v", err)
	}
	if err := conn.Write(context.Background(), findings(0, 1), "tok"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Write(context.Background(), findings(1, 2), "tok2"); err != nil || opens != 2 {
		t.Fatalf("the client is kept: %v, %d opens", err, opens)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Write(context.Background(), findings(0, 1), "tok"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after Close: %v", err)
	}
}
