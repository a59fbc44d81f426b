package tenantguardprocessor

import (
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/detector"
)

// A sender alone has its requests read in order; once requests overlap,
// the next groupingMemory requests are grouped by shard, overlapping or not
// (a sender waiting for its fsync leaves the other alone for a moment), and
// then reading goes back to order.
func TestExtractorGroupsOnlyWhileRequestsOverlap(t *testing.T) {
	det, err := detector.New(detector.DefaultConfig(), func(detector.Finding) {})
	if err != nil {
		t.Fatal(err)
	}
	e := NewExtractor(det)
	alone := func() bool { // one request, started and done
		g := e.concurrent()
		e.feeding.Add(-1)
		return g
	}
	for i := range 3 * groupingMemory {
		if alone() {
			t.Fatalf("request %d of a single sender grouped", i+1)
		}
	}
	e.concurrent() // in flight...
	if !e.concurrent() {
		t.Fatal("a request overlapping another was read in order")
	}
	e.feeding.Add(-2)
	for i := range groupingMemory - 1 {
		if !alone() {
			t.Fatalf("request %d after an overlap read in order", i+1)
		}
	}
	if alone() {
		t.Fatalf("still grouping %d requests after the last overlap", groupingMemory)
	}
}

// Requests fed from many goroutines at once (so grouped by shard, and
// taking shards in whatever order they find them free) find what the same
// requests find fed one after the other: every leaking trace's crossing,
// with the same edges, and the same coverage.
func TestConcurrentRequestsFindWhatSequentialOnesFind(t *testing.T) {
	const senders, perRequest = 8, 30
	var requests []ptrace.Traces
	for k := range senders {
		requests = append(requests, storm(k*perRequest+1, (k+1)*perRequest))
	}
	cfg := testConfig(t)
	run := func(concurrent bool) ([]string, []string, []detector.TenantHour, map[string]detector.ServiceCoverage) {
		var mu sync.Mutex
		var all []detector.Finding
		d, ex, err := NewDetector(cfg, func(f detector.Finding) {
			mu.Lock()
			all = append(all, f)
			mu.Unlock()
		}, func(c *detector.Config) { c.Shards = 8 })
		if err != nil {
			t.Fatal(err)
		}
		feed := func(td ptrace.Traces) {
			b := d.NewBatch()
			ex.Feed(b, td)
			b.Close()
		}
		if concurrent {
			var wg sync.WaitGroup
			for _, td := range requests {
				wg.Go(func() { feed(td) })
			}
			wg.Wait()
		} else {
			for _, td := range requests {
				feed(td)
			}
		}
		d.Flush()
		final := latestFindings(all)
		hours := d.TakeCoverage(time.Now().Add(24 * time.Hour))
		slices.SortFunc(hours, func(a, b detector.TenantHour) int { return strings.Compare(a.Tenant, b.Tenant) })
		return findingKeys(final), edgeKeys(final), hours, d.Coverage()
	}
	wantF, wantE, wantC, wantS := run(false)
	if len(wantC) == 0 || len(wantS) == 0 {
		t.Fatal("no coverage counted")
	}
	if len(wantF) != senders*perRequest {
		t.Fatalf("sequential requests found %d findings, want one per leaking trace (%d)", len(wantF), senders*perRequest)
	}
	for round := range 5 {
		f, e, c, sv := run(true)
		if !slices.Equal(f, wantF) || !slices.Equal(e, wantE) {
			t.Fatalf("round %d: concurrent requests found %d findings and %d edges, sequential %d and %d",
				round, len(f), len(e), len(wantF), len(wantE))
		}
		if !reflect.DeepEqual(c, wantC) || !reflect.DeepEqual(sv, wantS) {
			t.Fatalf("round %d: coverage differs: concurrent %+v %+v, sequential %+v %+v", round, c, sv, wantC, wantS)
		}
	}
}
