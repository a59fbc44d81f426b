package processor

import (
	"context"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/processor/processortest"

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
	proc, err := NewFactory().CreateTraces(context.Background(), set, cfg, sink)
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
	telemetry.Lock()
	for inst := range telemetry.instances {
		if inst.cfg == cfg {
			p = inst
		}
	}
	telemetry.Unlock()
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
