package main

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/internal/chserver"
	"github.com/tenantguard/tenantguard/internal/tcpproxy"
	"github.com/tenantguard/tenantguard/store/journal"
)

// ClickHouse goes down under load and comes back, behind the built
// collector: 12 senders (OTLP/gRPC and OTLP/HTTP) send crossing traces
// before, during and after an outage of the ClickHouse engine (a proxy in
// front of it stopped, its connections cut, then started on the same
// address). Every request is acknowledged throughout: the spans never wait
// for ClickHouse. The outage shows on /metrics (failed writes, a backlog)
// and in the log; once the shipper has caught up, the backlog is 0 and ClickHouse
// holds what the journal holds: `leaks list` reads the same from both, and
// no finding version is stored twice.
func TestClickHouseOutageUnderLoadThroughTheCollector(t *testing.T) {
	srv := chserver.Start(t) // skips (or fails in CI) without the engine
	eng, err := chserver.Shared()
	if err != nil {
		t.Fatal(err)
	}
	px := tcpproxy.New(t, srv.Addr())
	const db = "outage_under_load_test"
	if _, err := eng.Query("", nil, "DROP DATABASE IF EXISTS "+db, "TSV", nil); err != nil { // the engine lives as long as the process
		t.Fatal(err)
	}
	c := startCollector(t, withStoreYAML("clickhouse:\n  protocol: http\n  endpoints: ["+px.Addr()+"]\n  database: "+db+"\n"+
		"  tls: {insecure: true}\n  batch_size: 20\n  batch_age: 20ms\n  retry_initial_interval: 50ms\n  retry_max_interval: 200ms\n"))
	grpcClient := dialScaleOut(t, c.grpcAddr)
	const senders, requests, traces = 12, 8, 5
	sent := 0
	// send runs one phase: every sender sends its requests at once.
	send := func(phase int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, senders)
		for s := range senders {
			wg.Go(func() {
				for r := range requests {
					td := ptrace.NewTraces()
					for i := range traces {
						crossingTrace(pcommon.TraceID{0x0c, 0x4a, byte(phase), byte(s), byte(r), byte(i), 15: 1}).
							ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
					}
					if err := exportAs(s, grpcClient, c.httpAddr, td); err != nil {
						errs <- fmt.Errorf("phase %d, sender %d, request %d: %w", phase, s, r, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		sent += senders * requests * traces
	}
	metric := func(prefix string, labels ...string) float64 {
		var sum float64
		for k, v := range c.scrapeMetrics(t) {
			if strings.HasPrefix(k, prefix+"{") && !slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(k, l) }) {
				sum += v
			}
		}
		return sum
	}

	send(1)
	// Merges would collapse a version stored twice (the table keeps the last
	// version of each finding): once the first findings have made the shipper
	// create the schema and ship, stop them, so that every row stays
	// counted. The traces close (a second version each) only after
	// idle_window.
	eventually(t, 30*time.Second, "the first findings in ClickHouse", func() (bool, string) {
		out, err := eng.Query(db, nil, "SELECT count() FROM tenant_leaks", "TSV", nil)
		return err == nil && strings.TrimSpace(string(out)) != "0", fmt.Sprint(string(out), err)
	})
	if _, err := eng.Query(db, nil, "SYSTEM STOP MERGES tenant_leaks", "TSV", nil); err != nil {
		t.Fatal(err)
	}
	px.Stop()
	failedBefore := metric("tenantguard_store_writes_total", "store=clickhouse", "result=error")
	send(2)
	eventually(t, 30*time.Second, "the shipper to fail against the stopped server", func() (bool, string) {
		failures := metric("tenantguard_store_writes_total", "store=clickhouse", "result=error") - failedBefore
		backlog := metric("tenantguard_store_backlog_records", "store=clickhouse")
		logged := strings.Contains(c.logs.String(), "clickhouse shipper: shipping")
		return failures > 0 && backlog > 0 && logged, fmt.Sprintf("%v failed writes, backlog %v, logged %v", failures, backlog, logged)
	})
	if err := px.Start(); err != nil {
		t.Fatal(err)
	}
	send(3)

	// The traces close after idle_window (2 s), and their closing versions
	// ship too: compare once every finding is closed.
	if n := len(c.leaks(t, "--journal")); n != sent {
		t.Fatalf("the journal lists %d findings after %d crossing traces were acknowledged", n, sent)
	}
	c.awaitClosedInClickHouse(t, sent)
	eventually(t, 10*time.Second, "the ClickHouse backlog to read 0", func() (bool, string) {
		backlog := metric("tenantguard_store_backlog_records", "store=clickhouse")
		return backlog == 0, fmt.Sprintf("backlog %v once ClickHouse holds everything", backlog)
	})
	recs, _, err := journal.ReadFile(c.journal)
	if err != nil {
		t.Fatal(err)
	}
	out, err := eng.Query(db, nil, "SELECT count(), uniqExact(leak_id, version) FROM tenant_leaks", "TSV", nil)
	if err != nil {
		t.Fatal(err)
	}
	var rows, versions int
	if _, err := fmt.Sscanf(string(out), "%d\t%d", &rows, &versions); err != nil {
		t.Fatalf("reading %q: %v", out, err)
	}
	if rows != len(recs) || versions != len(recs) {
		t.Errorf("ClickHouse holds %d rows of %d distinct finding versions; the journal %d versions: each must be stored once",
			rows, versions, len(recs))
	}
	if ok := metric("tenantguard_store_writes_total", "store=clickhouse", "result=ok"); ok < 1 {
		t.Errorf("store_writes_total{store=clickhouse,result=ok} is %v after everything shipped", ok)
	}
	t.Logf("%d findings, %d versions, each once in ClickHouse; %v failed writes", sent, len(recs),
		metric("tenantguard_store_writes_total", "store=clickhouse", "result=error"))
}
