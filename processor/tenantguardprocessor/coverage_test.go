package tenantguardprocessor

import (
	"context"
	"os"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tenantguard/tenantguard/store"
)

// At shutdown the processor writes every tenant's coverage of the hour to
// the file next to the journal, named by its collector.
func TestCoverageIsWrittenNextToTheJournalAtShutdown(t *testing.T) {
	cfg := testConfig(t)
	p := startProcessor(t, cfg, nil)
	if err := p.start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	consume(t, p, leakingTrace(1))
	consume(t, p, leakingTrace(2))
	consume(t, p, request(spanSpec{3, 1, 0, "gateway", "GET /cart", map[string]any{"tenant.id": "acme"}}))
	if err := p.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs, rep, err := store.ReadCoverageFile(store.CoveragePath(cfg.Store.Journal.Path))
	if err != nil || len(rep.Corrupt) > 0 {
		t.Fatalf("reading coverage: %v %+v", err, rep)
	}
	sum := store.SumCoverage(recs)
	if len(sum) != 2 {
		t.Fatalf("coverage %+v, want acme and globex", sum)
	}
	acme, globex := sum[0], sum[1]
	// acme leads every trace: all 7 spans count for it.
	if acme.Tenant != "acme" || acme.Traces != 3 || acme.CrossingsSucceeded != 2 || acme.Spans != 7 || acme.Collector != "test-collector" {
		t.Errorf("acme %+v, want 3 traces, 7 spans, 2 crossings", acme)
	}
	if s := acme.Services["inventory-svc"]; s.Traces != 2 || s.TracesWithoutTenant != 2 {
		t.Errorf("acme's inventory-svc %+v, want 2 traces with a span without a tenant", s)
	}
	if s := acme.Services["gateway"]; s.Traces != 3 || s.TracesWithoutTenant != 0 {
		t.Errorf("acme's gateway %+v, want 3 traces, covered", s)
	}
	if globex.Tenant != "globex" || globex.Traces != 2 || globex.CrossingsSucceeded != 2 || globex.Spans != 0 {
		t.Errorf("globex %+v", globex)
	}
	if h := time.Now().UTC().Truncate(time.Hour); !acme.Hour.Equal(h) && !acme.Hour.Equal(h.Add(-time.Hour)) {
		t.Errorf("hour %s, want this hour", acme.Hour)
	}
	st, err := os.Stat(store.CoveragePath(cfg.Store.Journal.Path))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("coverage file: %v, mode %v", err, st.Mode())
	}
}

// A coverage file that cannot be written keeps its records in memory, and
// the next write delivers all of them.
func TestUnwritableCoverageFileLosesNothing(t *testing.T) {
	cfg := testConfig(t)
	core, logs := observer.New(zap.WarnLevel)
	p := startProcessor(t, cfg, zap.New(core))
	path := store.CoveragePath(cfg.Store.Journal.Path)
	if err := os.Mkdir(path, 0o700); err != nil { // a directory where the file should be
		t.Fatal(err)
	}
	consume(t, p, leakingTrace(1))
	p.det.Flush()
	p.coverage.write(p.det, time.Now(), true)
	if logs.FilterMessageSnippet("coverage records not written").Len() != 1 || len(p.coverage.pending) != 2 {
		t.Fatalf("failed write: %d pending, logs %v", len(p.coverage.pending), logs.All())
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	consume(t, p, leakingTrace(2))
	p.det.Flush()
	p.coverage.write(p.det, time.Now(), true)
	recs, _, err := store.ReadCoverageFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var traces uint64
	for _, r := range store.SumCoverage(recs) {
		traces += r.Traces
	}
	if traces != 4 || len(p.coverage.pending) != 0 {
		t.Errorf("after recovery: %d tenant-traces written, %d pending; want 4 and 0", traces, len(p.coverage.pending))
	}
}
