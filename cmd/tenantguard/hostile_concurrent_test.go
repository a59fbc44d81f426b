package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/internal/chserver"
)

// hostileCrossing is one request of concurrent hostile traffic: traces
// crossing from tenant "<id>-a\xff" to "<id>-b\xc3(" (neither is UTF-8),
// whose query span also carries a 16 KiB attribute value and a tenant value
// too long to be one, and, once per request, a 100 KB span name.
func hostileCrossing(sender, req, traces int, huge string) (ptrace.Traces, map[pcommon.TraceID][]string) {
	td := ptrace.NewTraces()
	want := map[pcommon.TraceID][]string{}
	gw := td.ResourceSpans().AppendEmpty()
	gw.Resource().Attributes().PutStr("service.name", "gate\xffway")
	gwSpans := gw.ScopeSpans().AppendEmpty().Spans()
	db := td.ResourceSpans().AppendEmpty()
	db.Resource().Attributes().PutStr("service.name", "inventory-svc")
	dbSpans := db.ScopeSpans().AppendEmpty().Spans()
	for i := range traces {
		tid := pcommon.TraceID{0x70, 0x57, byte(sender), byte(req), byte(i), 15: 1}
		id := fmt.Sprintf("t%02d%02d%02d", sender, req, i)
		a, b := id+"-a\xff", id+"-b\xc3\x28"
		want[tid] = []string{a, b}
		root := gwSpans.AppendEmpty()
		root.SetTraceID(tid)
		root.SetSpanID(pcommon.SpanID{1, 7: byte(i)})
		root.SetName("GET /inventory")
		if i == 0 {
			root.SetName("GET /" + strings.Repeat("n", 100_000))
		}
		root.Attributes().PutStr("tenant.id", a)
		q := dbSpans.AppendEmpty()
		q.SetTraceID(tid)
		q.SetSpanID(pcommon.SpanID{2, 7: byte(i)})
		q.SetParentSpanID(root.SpanID())
		q.SetName("SELECT stock")
		q.Attributes().PutStr("tenant.id", b)
		q.Attributes().PutStr("tenant_id", strings.Repeat("z", 300)+id) // over MaxTenantLength: not a tenant
		q.Attributes().PutStr("db.query.text", huge)
	}
	return td, want
}

// asStored is s as the journal gives it back: JSON replaces each byte that
// is not UTF-8 with U+FFFD.
func asStored(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Hostile spans from many senders at once, over OTLP/gRPC and OTLP/HTTP,
// through the built collector: overlapping requests are read ahead and
// grouped by shard, so every span's values sit in buffers shared with the
// request's other spans while other requests are read. Every request is
// acknowledged, and once they all are, every crossing is in the journal with
// exactly its own two tenants (no value taken from another span or request,
// the over-long one left out), nothing in the journal or the Slack messages
// holds the huge attribute value, and /metrics, `leaks list` and the journal
// all read back.
func TestConcurrentHostileSpansThroughTheCollector(t *testing.T) {
	srv := chserver.Start(t)                        // skips (or fails in CI) without the engine
	c := startCollector(t, withEnv("GOMAXPROCS=4"), // 4 shards, whatever the machine
		withStoreYAML("clickhouse:\n  protocol: http\n  endpoints: ["+srv.Addr()+"]\n  database: hostile_concurrent_test\n"+
			"  tls: {insecure: true}\n  batch_age: 50ms\n"))
	grpcClient := dialScaleOut(t, c.grpcAddr)
	const senders, requests, traces = 16, 12, 10
	huge := "SELECT * FROM stock WHERE sku = '" + strings.Repeat("\xfe", 16<<10) + "'"
	var (
		mu   sync.Mutex
		want = map[pcommon.TraceID][]string{}
		wg   sync.WaitGroup
		errs = make(chan error, senders)
	)
	for s := range senders {
		wg.Go(func() {
			for r := range requests {
				td, w := hostileCrossing(s, r, traces, huge)
				if err := exportAs(s, grpcClient, c.httpAddr, td); err != nil {
					errs <- fmt.Errorf("sender %d, request %d: %w", s, r, err)
					return
				}
				mu.Lock()
				for k, v := range w {
					want[k] = v
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Acknowledged, so in the journal already: no polling.
	got := map[string][]string{}
	for _, f := range c.findings(t) {
		for _, s := range append(append([]string{f.TraceID}, f.Tenants...), f.Services...) {
			if !utf8.ValidString(s) {
				t.Fatalf("finding %s reads back a string that is not UTF-8: %q", f.LeakID, s)
			}
		}
		if f.Rule == "cross_tenant_trace" {
			got[f.TraceID] = f.Tenants
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d crossings in the journal, want %d", len(got), len(want))
	}
	for tid, tenants := range want {
		exp := []string{asStored(t, tenants[0]), asStored(t, tenants[1])}
		if g, ok := got[tid.String()]; !ok {
			t.Errorf("trace %s: no crossing in the journal", tid)
		} else if !slices.Equal(g, exp) {
			t.Errorf("trace %s: tenants %q, want %q", tid, g, exp)
		}
	}
	raw, err := os.ReadFile(c.journal)
	if err != nil {
		t.Fatal(err)
	}
	marker := strings.Repeat("\uFFFD", 64)
	if bytes.Contains(raw, []byte(marker)) || bytes.Contains(raw, []byte(strings.Repeat("\xfe", 64))) {
		t.Error("the journal holds the 16 KiB query text (evidence values are digests unless clear-listed)")
	}

	// leaks list reads ClickHouse, once the shipper has caught up, as it
	// reads the journal, line for line.
	c.awaitClosedInClickHouse(t, len(want), "--rule", "cross_tenant_trace")
	var crossings, rejected float64
	for k, v := range c.scrapeMetrics(t) {
		switch {
		case strings.HasPrefix(k, "tenantguard_findings_total{") && strings.Contains(k, "rule=cross_tenant_trace"):
			crossings += v
		case strings.HasPrefix(k, "tenantguard_tenant_values_rejected_total{"):
			rejected += v
		}
	}
	if int(crossings) != len(want) {
		t.Errorf("tenantguard_findings_total counts %v crossings, want %d", crossings, len(want))
	}
	if int(rejected) != len(want) {
		t.Errorf("tenantguard_tenant_values_rejected_total is %v, want one per trace (%d)", rejected, len(want))
	}
	logs := c.logs.String()
	if !utf8.ValidString(logs) || strings.Contains(logs, marker) || strings.Contains(logs, strings.Repeat("\xfe", 64)) {
		t.Error("the collector's log holds bytes that are not UTF-8, or the query text")
	}
	for _, msg := range c.slack.messages() {
		if !utf8.ValidString(msg) || strings.Contains(msg, marker) || strings.Contains(msg, "zzzzzzzzzzzzzzzz") {
			t.Fatalf("a Slack message holds a value it must not: %.300q", msg)
		}
	}
}
