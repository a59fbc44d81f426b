package clickhouse

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	chproto "github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/store"
	"github.com/tenantguard/tenantguard/store/journal"
)

// ---------------------------------------------------------------- driver fake

// fakeConn is a driver.Conn without a server. Inserted rows and query
// results go through the real clickhouse-go column codecs (append, encode to
// the native wire format, decode, scan), so a Go value that the driver would
// refuse for a column type, or scan back differently, fails here as it
// would against ClickHouse.
type fakeConn struct {
	driver.Conn // nil: a method the fake does not implement panics

	mu       sync.Mutex
	execs    []string
	execArgs [][]any
	queries  []recorded
	inserts  []recorded
	inserted map[string][]*proto.Block // table -> decoded blocks
	execErr  func(sql string) error
	// respond answers Query: a result block (nil: no rows) or an error.
	respond func(sql string, args []any) (*proto.Block, error)
	version proto.Version
	pingErr error
}

type recorded struct {
	sql  string
	args []any
}

func newFakeConn() *fakeConn {
	return &fakeConn{inserted: map[string][]*proto.Block{}, version: proto.Version{Major: 25, Minor: 8, Patch: 1}}
}

func (f *fakeConn) Ping(context.Context) error { return f.pingErr }

func (f *fakeConn) ServerVersion() (*driver.ServerVersion, error) {
	return &driver.ServerVersion{Name: "ClickHouse", Version: f.version}, nil
}

func (f *fakeConn) Close() error { return nil }

func (f *fakeConn) Exec(_ context.Context, sql string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.execs = append(f.execs, sql)
	f.execArgs = append(f.execArgs, args)
	if f.execErr != nil {
		return f.execErr(sql)
	}
	return nil
}

func (f *fakeConn) Query(_ context.Context, sql string, args ...any) (driver.Rows, error) {
	f.mu.Lock()
	f.queries = append(f.queries, recorded{sql, args})
	respond := f.respond
	f.mu.Unlock()
	if respond == nil {
		return &fakeRows{}, nil
	}
	b, err := respond(sql, args)
	if err != nil {
		return nil, err
	}
	return &fakeRows{block: b}, nil
}

var insertRE = regexp.MustCompile(`^INSERT INTO (\w+) \(([^)]*)\)$`)

func (f *fakeConn) PrepareBatch(_ context.Context, sql string, _ ...driver.PrepareBatchOption) (driver.Batch, error) {
	m := insertRE.FindStringSubmatch(sql)
	if m == nil {
		return nil, fmt.Errorf("fake: not an insert the fake knows: %q", sql)
	}
	var cols []columnDef
	switch m[1] {
	case "tenant_leaks":
		cols = leakColumns
	case "tenant_leak_spans":
		cols = spanColumns
	default:
		return nil, fmt.Errorf("fake: unknown table %s", m[1])
	}
	block := proto.NewBlock()
	for _, name := range strings.Split(m[2], ", ") {
		typ := typeOf(cols, name)
		if typ == "" {
			return nil, fmt.Errorf("fake: table %s has no column %s", m[1], name)
		}
		if err := block.AddColumn(name, column.Type(typ)); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	f.inserts = append(f.inserts, recorded{sql: sql})
	f.mu.Unlock()
	return &fakeBatch{conn: f, table: m[1], block: block}, nil
}

func typeOf(cols []columnDef, name string) string {
	for _, c := range cols {
		if c.Name == name {
			return c.Type
		}
	}
	return ""
}

type fakeBatch struct {
	driver.Batch
	conn  *fakeConn
	table string
	block *proto.Block
	sent  bool
}

func (b *fakeBatch) Append(v ...any) error { return b.block.Append(v...) }
func (b *fakeBatch) Abort() error          { b.sent = true; return nil }
func (b *fakeBatch) Close() error          { return nil }
func (b *fakeBatch) IsSent() bool          { return b.sent }

func (b *fakeBatch) Send() error {
	b.sent = true
	out, err := roundTrip(b.block)
	if err != nil {
		return err
	}
	b.conn.mu.Lock()
	b.conn.inserted[b.table] = append(b.conn.inserted[b.table], out)
	b.conn.mu.Unlock()
	return nil
}

// roundTrip encodes a block as the driver sends it and decodes it as the
// driver reads a server's reply.
func roundTrip(b *proto.Block) (*proto.Block, error) {
	var buf chproto.Buffer
	if err := b.Encode(&buf, proto.DBMS_TCP_PROTOCOL_VERSION); err != nil {
		return nil, err
	}
	out := proto.NewBlock()
	if err := out.Decode(chproto.NewReader(bytes.NewReader(buf.Buf)), proto.DBMS_TCP_PROTOCOL_VERSION); err != nil {
		return nil, err
	}
	return out, nil
}

// resultBlock builds a query result: columns (name, type) and rows of Go
// values, through the codecs.
func resultBlock(t *testing.T, cols [][2]string, rows ...[]any) *proto.Block {
	t.Helper()
	if len(rows) == 0 {
		return nil // no rows
	}
	b := proto.NewBlock()
	for _, c := range cols {
		if err := b.AddColumn(c[0], column.Type(c[1])); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range rows {
		if err := b.Append(r...); err != nil {
			t.Fatalf("result row %v: %v", r, err)
		}
	}
	out, err := roundTrip(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type fakeRows struct {
	driver.Rows
	block *proto.Block
	row   int
}

func (r *fakeRows) Next() bool {
	if r.block == nil || r.row >= r.block.Rows() {
		return false
	}
	r.row++
	return true
}

func (r *fakeRows) Scan(dest ...any) error {
	if len(dest) != len(r.block.Columns) {
		return fmt.Errorf("fake: scan into %d destinations, the result has %d columns", len(dest), len(r.block.Columns))
	}
	for i, d := range dest {
		if err := r.block.Columns[i].ScanRow(d, r.row-1); err != nil {
			return fmt.Errorf("column %s: %w", r.block.ColumnsNames()[i], err)
		}
	}
	return nil
}

func (r *fakeRows) Close() error { return nil }
func (r *fakeRows) Err() error   { return nil }

// ---------------------------------------------------------------- evidence

func traceHex(i int) string { return fmt.Sprintf("%032x", 0x4bf92f3577b34da6+i) }

var t0 = time.Date(2026, 3, 2, 9, 30, 0, 123456789, time.UTC)

// finding returns a realistic finding version: a crossing edge, evidence
// spans, a mismatch on every third.
func finding(i int, version uint64) store.Evidence {
	ev := store.Evidence{
		LeakID:   fmt.Sprintf("leak-%02d", i),
		Version:  version,
		Rule:     "cross_tenant_trace",
		Severity: "critical",
		Status:   "open",
		TraceID:  traceHex(i),
		Tenants:  []string{"acme", "globex"},
		Services: []string{"gateway", "inventory-svc"},
		CrossingEdges: []store.CrossingEdge{{
			From: store.EdgeEnd{SpanID: "a000000000000001", Service: "gateway", Span: "GET /inventory", Tenant: "acme"},
			To:   store.EdgeEnd{SpanID: "a000000000000003", Service: "inventory-svc", Span: "SELECT stock", Tenant: "globex"},
			Hops: 1,
		}},
		Spans: []store.Span{
			{SpanID: "a000000000000001", Service: "gateway", Name: "GET /inventory", Tenant: "acme", TenantKey: "tenant.id"},
			{SpanID: "a000000000000003", ParentID: "a000000000000002", Service: "inventory-svc", Name: "SELECT stock", Tenant: "globex", TenantKey: "tenant.id",
				Kind: "client", StartTime: t0.Add(time.Duration(i)*time.Minute + time.Second), DurationNs: 1_250_000, Status: "ok",
				Attributes: map[string]string{"db.system.name": "postgresql", "db.query.text": "hmac-sha256:" + strings.Repeat("ab", 32)}},
		},
		SpanCount:  3 + int(version),
		FirstSeen:  t0.Add(time.Duration(i) * time.Minute),
		LastSeen:   t0.Add(time.Duration(i)*time.Minute + 2*time.Second),
		DetectedAt: t0.Add(time.Duration(i)*time.Minute + 1500*time.Millisecond),
		Collector:  "edge-1",
		Reason:     "tenant acme's request read tenant globex's rows",
	}
	ev.CrossingEdges[0].Outcome = "succeeded"
	ev.Spans[1].Outcome, ev.Spans[1].Data = "succeeded", true
	if i%4 == 1 { // a span link into another trace, a foreign key, an unscoped query
		ev.CrossingEdges = append(ev.CrossingEdges, store.CrossingEdge{
			From: store.EdgeEnd{TraceID: traceHex(i + 100), SpanID: "c000000000000001", Service: "queue", Span: "publish", Tenant: "acme"},
			To:   store.EdgeEnd{SpanID: "a000000000000001", Service: "gateway", Span: "GET /inventory", Tenant: "acme"},
			Link: true, Outcome: "blocked",
		})
		ev.Keys = []store.KeyUse{{SpanID: "a000000000000001", Service: "gateway", Span: "GET /inventory", Attribute: "auth.key_id",
			Identifier: "kid-7", KeyTenant: "globex", SpanTenant: "acme"}, {SpanID: "a000000000000001", Service: "gateway",
			Span: "GET /inventory", Attribute: "auth.key_id", Identifier: "kid-root", Global: true}}
		ev.Queries = []store.Query{{SpanID: "a000000000000003", Service: "inventory-svc", Span: "SELECT stock", Tables: []string{"stock", "orders"}}}
	}
	if i%3 == 0 {
		ev.Rule = "tenant_mismatch"
		ev.Severity = "high"
		ev.Mismatches = []store.Mismatch{{SpanID: "a000000000000003", Service: "inventory-svc", Span: "SELECT stock",
			Values: []store.TenantSource{{Key: "tenant.id", Tenant: "globex"}, {Key: "http.request.header.x-tenant-id", Tenant: "acme", Resource: true}}}}
	}
	return ev
}

func findings(from, to int) []store.Evidence {
	var out []store.Evidence
	for i := from; i < to; i++ {
		out = append(out, finding(i, 1))
	}
	return out
}

// ---------------------------------------------------------------- journal

func appendJournal(t *testing.T, path string, recs ...store.Evidence) {
	t.Helper()
	j, err := journal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.Append(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

func appendRaw(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// lineEnds returns the offset just past each line of the file.
func lineEnds(t *testing.T, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ends []int64
	for i, c := range b {
		if c == '\n' {
			ends = append(ends, int64(i+1))
		}
	}
	return ends
}

func tempJournal(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "leaks.jsonl")
}

// ---------------------------------------------------------------- fault-injecting writer

type fault int

const (
	ok      fault = iota
	down          // server unreachable: ErrUnavailable, nothing stored
	stall         // blocks until ctx is done
	lostAck       // stores both tables, then the acknowledgement is lost
	partial       // stores tenant_leaks, fails before tenant_leak_spans
)

// fakeCH is a Writer that behaves like ClickHouse for the shipper: rows are
// stored per table, a token already stored in a table is dropped there
// (insert_deduplication_token), and faults are injected on command.
type fakeCH struct {
	mu         sync.Mutex
	script     []fault // consumed one per call, then mode
	mode       fault
	rejectIf   func(store.Evidence) bool // a batch holding such a record is refused (ErrRejected)
	failIf     func(store.Evidence) bool // ... fails with an unclassified error
	calls      []writeCall
	leakTokens map[string]bool
	spanTokens map[string]bool
	leaks      []store.Evidence // raw tenant_leaks rows
	spans      int              // raw tenant_leak_spans rows
}

type writeCall struct {
	at    time.Time
	token string
	ids   []string
	err   error
}

func newFakeCH(script ...fault) *fakeCH {
	return &fakeCH{script: script, leakTokens: map[string]bool{}, spanTokens: map[string]bool{}}
}

func (f *fakeCH) setMode(m fault) {
	f.mu.Lock()
	f.mode = m
	f.mu.Unlock()
}

func (f *fakeCH) Write(ctx context.Context, batch []store.Evidence, token string) (err error) {
	f.mu.Lock()
	call := writeCall{at: time.Now(), token: token}
	for _, ev := range batch {
		call.ids = append(call.ids, ev.LeakID)
	}
	mode := f.mode
	if len(f.script) > 0 {
		mode, f.script = f.script[0], f.script[1:]
	}
	idx := len(f.calls)
	f.calls = append(f.calls, call)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.calls[idx].err = err
		f.mu.Unlock()
	}()

	switch mode {
	case stall:
		<-ctx.Done()
		return ctx.Err()
	case down:
		return fmt.Errorf("%w: dial tcp 127.0.0.1:9000: connect: connection refused", ErrUnavailable)
	}
	f.mu.Lock()
	failIf := f.failIf // tests change it while the shipper runs
	f.mu.Unlock()
	for _, ev := range batch {
		if f.rejectIf != nil && f.rejectIf(ev) {
			return fmt.Errorf("%w: code: 53, message: Type mismatch for %s", ErrRejected, ev.LeakID)
		}
		if failIf != nil && failIf(ev) {
			return fmt.Errorf("code: 1001, message: std::exception while inserting %s", ev.LeakID)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.leakTokens[token] {
		f.leakTokens[token] = true
		f.leaks = append(f.leaks, batch...)
	}
	if mode == partial {
		return fmt.Errorf("%w: connection reset by peer after tenant_leaks", ErrUnavailable)
	}
	if !f.spanTokens[token] {
		f.spanTokens[token] = true
		for _, ev := range batch {
			f.spans += len(ev.Spans)
		}
	}
	if mode == lostAck {
		return fmt.Errorf("%w: read: connection reset by peer", ErrUnavailable)
	}
	return nil
}

func (f *fakeCH) snapshot() (calls []writeCall, leaks []store.Evidence, spans int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]writeCall(nil), f.calls...), append([]store.Evidence(nil), f.leaks...), f.spans
}

// rowsPerLeak counts raw tenant_leaks rows per leak id.
func (f *fakeCH) rowsPerLeak() map[string]int {
	_, leaks, _ := f.snapshot()
	n := map[string]int{}
	for _, ev := range leaks {
		n[ev.LeakID]++
	}
	return n
}

// ---------------------------------------------------------------- polling

// eventually polls cond every 2ms until it holds or 5s pass, then fails with
// cond's last explanation.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, why)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func testConfig() config.ClickHouse {
	cfg := config.DefaultClickHouse()
	cfg.Endpoints = []string{"127.0.0.1:9000"}
	cfg.BatchSize = 100
	cfg.BatchAge = 10 * time.Millisecond
	cfg.RetryInitial = time.Millisecond
	cfg.RetryMax = 10 * time.Millisecond
	cfg.MaxAttempts = 3
	cfg.DialTimeout = 50 * time.Millisecond
	cfg.ReadTimeout = 50 * time.Millisecond
	return cfg
}
