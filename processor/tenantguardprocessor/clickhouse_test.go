package tenantguardprocessor

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/tenantguard/tenantguard/internal/chserver"
	"github.com/tenantguard/tenantguard/store"
	"github.com/tenantguard/tenantguard/store/clickhouse"
	"github.com/tenantguard/tenantguard/store/journal"
)

// closedPort is a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// With ClickHouse configured where nothing listens, spans still flow,
// findings land in the journal, the backlog is visible, and shutdown is
// clean: the records wait in the journal for the next start.
func TestDeadClickHouseLosesNothing(t *testing.T) {
	cfg := testConfig(t)
	cfg.Store.ClickHouse.Endpoints = []string{closedPort(t)}
	cfg.Store.ClickHouse.DialTimeout = 200 * time.Millisecond
	cfg.Store.ClickHouse.RetryInitial = 50 * time.Millisecond
	cfg.Store.ClickHouse.RetryMax = 200 * time.Millisecond
	cfg.Store.ClickHouse.BatchAge = 50 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	sink := new(consumertest.TracesSink)
	set := processortest.NewNopSettings(Type)
	sh := newShared() // the factory's, reachable: the test finds its processor there
	proc, err := sh.createTraces(context.Background(), set, cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	for i := byte(1); i <= 5; i++ {
		if err := proc.ConsumeTraces(context.Background(), leakingTrace(i)); err != nil {
			t.Fatal(err)
		}
	}
	if sink.SpanCount() != 15 {
		t.Fatalf("forwarded %d spans, want 15", sink.SpanCount())
	}
	// The processor behind the factory's wrapper: find it through the registry.
	var p *tenantguard
	sh.telemetry.mu.Lock()
	for inst := range sh.telemetry.instances {
		if inst.cfg == cfg {
			p = inst
		}
	}
	sh.telemetry.mu.Unlock()
	if p == nil {
		t.Fatal("processor not registered")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, _, _ := journal.ReadFile(cfg.Store.Journal.Path)
		b := p.backlogs()
		if len(recs) >= 5 && len(b) == 1 && b[0].records >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal %d records, backlog %+v", len(recs), b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b := p.backlogs()[0]; b.store != "clickhouse" || !b.lastSuccess.IsZero() {
		t.Fatalf("backlog %+v", b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := proc.Shutdown(ctx); err != nil {
		t.Fatalf("a dead ClickHouse must not fail shutdown: %v", err)
	}
	recs, _, err := journal.ReadFile(cfg.Store.Journal.Path)
	if err != nil || len(recs) < 5 {
		t.Fatalf("journal after shutdown: %d records, %v", len(recs), err)
	}
}

// A ClickHouse error code the shipper does not know (439, here injected on
// the real engine) is retried, never dead-lettered, and counted on
// /metrics, so an operator sees why the backlog does not drain.
func TestUnknownClickHouseFailuresAreOnMetrics(t *testing.T) {
	srv := chserver.Start(t)
	var failing atomic.Bool
	failing.Store(true)
	srv.InjectFault(func(query string, _ []byte) *chserver.Exception {
		if failing.Load() && strings.HasPrefix(query, "INSERT INTO tenant_leaks ") {
			return &chserver.Exception{Code: 439, Message: "DB::Exception: Cannot schedule a task: injected by the test. (CANNOT_SCHEDULE_TASK)"}
		}
		return nil
	})
	cfg := testConfig(t)
	addr := freeAddr(t)
	cfg.Metrics.Endpoint = addr
	cfg.Store.ClickHouse.Protocol = "http"
	cfg.Store.ClickHouse.Endpoints = []string{srv.Addr()}
	cfg.Store.ClickHouse.Database = "tenantguard_processor_test"
	cfg.Store.ClickHouse.TLS.Insecure = true
	cfg.Store.ClickHouse.BatchAge = 20 * time.Millisecond
	cfg.Store.ClickHouse.RetryInitial, cfg.Store.ClickHouse.RetryMax = 5*time.Millisecond, 50*time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p := startProcessor(t, cfg, nil)
	if err := p.start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	consume(t, p, leakingTrace(1))
	labels := map[string]string{"processor": p.id, "store": "clickhouse"}
	waitFor(t, "unknown ClickHouse failures counted on /metrics", func() (bool, string) {
		fams := scrape(t, addr)
		unknown, _ := value(fams, "tenantguard_store_unknown_failures_total", labels)
		backlog, _ := value(fams, "tenantguard_store_backlog_records", labels)
		return unknown >= 2 && backlog >= 1, fmt.Sprintf("unknown failures %v, backlog %v", unknown, backlog)
	})
	failing.Store(false)
	waitFor(t, "the backlog to drain once the cause is gone", func() (bool, string) {
		fams := scrape(t, addr)
		backlog, _ := value(fams, "tenantguard_store_backlog_records", labels)
		dead, _ := value(fams, "tenantguard_store_dead_letters_total", labels)
		return backlog == 0 && dead == 0, fmt.Sprintf("backlog %v, dead letters %v", backlog, dead)
	})
	if err := p.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing with its last word after 20s.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 20s for %s: %s", what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With ClickHouse on, the coverage file next to the journal ships to
// tenant_coverage: the records of a run (written at its shutdown) arrive
// after the next start, summed as the file's reader sums them.
func TestCoverageShipsToClickHouse(t *testing.T) {
	srv := chserver.Start(t)
	cfg := testConfig(t)
	cfg.Store.ClickHouse.Protocol = "http"
	cfg.Store.ClickHouse.Endpoints = []string{srv.Addr()}
	cfg.Store.ClickHouse.Database = "tenantguard_processor_coverage_test"
	cfg.Store.ClickHouse.TLS.Insecure = true
	cfg.Store.ClickHouse.BatchAge = 20 * time.Millisecond
	cfg.Store.ClickHouse.RetryInitial, cfg.Store.ClickHouse.RetryMax = 5*time.Millisecond, 50*time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	run := func(traces ...ptrace.Traces) *tenantguard {
		p := startProcessor(t, cfg, nil)
		if err := p.start(context.Background(), componenttest.NewNopHost()); err != nil {
			t.Fatal(err)
		}
		for _, td := range traces {
			consume(t, p, td)
		}
		return p
	}
	p := run(leakingTrace(1), leakingTrace(2))
	if err := p.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs, _, err := store.ReadCoverageFile(store.CoveragePath(cfg.Store.Journal.Path))
	if err != nil || len(recs) == 0 {
		t.Fatalf("coverage file: %d records, %v", len(recs), err)
	}
	want := store.SumCoverage(recs)

	p = run()
	defer func() {
		if err := p.shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	c, err := clickhouse.Open(context.Background(), cfg.Store.ClickHouse, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "the first run's coverage in tenant_coverage", func() (bool, string) {
		got, _, err := c.Coverage(context.Background(), time.Time{}, time.Time{}, "")
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		return err == nil && string(g) == string(w), fmt.Sprintf("got %s (%v), want %s", g, err, w)
	})
}
