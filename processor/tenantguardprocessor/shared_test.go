package tenantguardprocessor

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/tenantguard/tenantguard/store/journal"
)

// Two processors of one factory naming one journal and one metrics
// endpoint share one open journal and one server: both write to the file,
// the first shutdown leaves them to the second, and the last one closes
// them. A processor shut down without start lets go of nothing it did not
// hold.
func TestProcessorsOfOneFactoryShareJournalAndServer(t *testing.T) {
	sh := newShared()
	addr := freeAddr(t)
	path := testConfig(t).Store.Journal.Path
	create := func(name string) processor.Traces {
		cfg := testConfig(t)
		cfg.Store.Journal.Path = path
		cfg.Metrics.Endpoint = addr
		set := processortest.NewNopSettings(Type)
		set.ID = component.MustNewIDWithName("tenantguard", fmt.Sprintf("%s%d", name, metricsRun.Add(1)))
		p, err := sh.createTraces(context.Background(), set, cfg, consumertest.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b, idle := create("a"), create("b"), create("idle")
	for _, p := range []processor.Traces{a, b} {
		if err := p.Start(context.Background(), componenttest.NewNopHost()); err != nil {
			t.Fatal(err)
		}
	}
	if err := idle.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, m := sh.journals.Holders(path), sh.telemetry.servers.Holders(addr); n != 2 || m != 2 {
		t.Fatalf("journal held by %d, server by %d; want 2 each", n, m)
	}
	if err := a.ConsumeTraces(context.Background(), leakingTrace(1)); err != nil {
		t.Fatal(err)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, m := sh.journals.Holders(path), sh.telemetry.servers.Holders(addr); n != 1 || m != 1 {
		t.Fatalf("after one shutdown: journal held by %d, server by %d; want 1 each", n, m)
	}
	// The survivor still writes to the shared file and is still scraped.
	if err := b.ConsumeTraces(context.Background(), leakingTrace(2)); err != nil {
		t.Fatal(err)
	}
	if fams := scrape(t, addr); fams["tenantguard_spans_total"] == nil {
		t.Fatal("the shared server stopped serving after the first shutdown")
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, m := sh.journals.Holders(path), sh.telemetry.servers.Holders(addr); n != 0 || m != 0 {
		t.Fatalf("after the last shutdown: journal held by %d, server by %d", n, m)
	}
	if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
		t.Fatal("the last shutdown left the metrics server up")
	}
	recs, _, err := journal.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	traces := map[string]bool{}
	for _, r := range recs {
		traces[r.TraceID] = true
	}
	if len(traces) != 2 {
		t.Fatalf("the shared journal holds findings of %d traces, want one from each processor: %+v", len(traces), recs)
	}
}
