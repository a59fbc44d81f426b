package tenantguardprocessor

import (
	"reflect"
	"slices"
	"strconv"
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

// Spans read ahead of their shard's hold keep their own tenants,
// identifiers and links while the buffers grow under them; once the
// request is fed, the buffers hold nothing of it, and a huge request's
// buffers are let go rather than kept for the next one.
func TestReadAheadKeepsEachSpansOwnValues(t *testing.T) {
	fill := func(r *readAhead, n int) {
		var s detector.Span // one span reused, as read reuses sc.cur
		for i := range n {
			v := strconv.Itoa(i)
			s.Tenants = append(s.Tenants[:0], detector.RawTenant{Value: detector.StringValue("t" + v)})
			s.Identifiers = append(s.Identifiers[:0], detector.Identifier{Value: "k" + v})
			s.Links = append(s.Links[:0], detector.Link{SpanID: detector.SpanID{byte(i), byte(i >> 8)}})
			s.Name = "span " + v
			if got := r.keep(&s); got != int32(i) {
				t.Fatalf("span %d kept at %d", i, got)
			}
		}
		for i, sp := range r.spans {
			v := strconv.Itoa(i)
			if sp.Name != "span "+v || len(sp.Tenants) != 1 || sp.Tenants[0].Value.Str != "t"+v ||
				len(sp.Identifiers) != 1 || sp.Identifiers[0].Value != "k"+v ||
				len(sp.Links) != 1 || sp.Links[0].SpanID != (detector.SpanID{byte(i), byte(i >> 8)}) {
				t.Fatalf("span %d read back as %+v", i, sp)
			}
		}
	}
	var r readAhead
	fill(&r, 300)
	r.reset()
	if len(r.spans) != 0 || cap(r.spans) == 0 {
		t.Fatalf("a small request's buffers: len %d cap %d, want emptied and kept", len(r.spans), cap(r.spans))
	}
	for i, sp := range r.spans[:300] {
		if sp.Name != "" || sp.Tenants != nil {
			t.Fatalf("span %d still aliases the request after reset: %+v", i, sp)
		}
	}
	for i, rt := range r.tenants[:300] {
		if rt.Value.Str != "" {
			t.Fatalf("tenant %d still aliases the request after reset: %q", i, rt.Value.Str)
		}
	}
	for i, id := range r.ids[:300] {
		if id.Value != "" {
			t.Fatalf("identifier %d still aliases the request after reset: %q", i, id.Value)
		}
	}
	fill(&r, maxReadAhead+1)
	r.reset()
	if cap(r.spans) != 0 || cap(r.tenants) != 0 || cap(r.ids) != 0 || cap(r.links) != 0 {
		t.Fatalf("a huge request's buffers were kept: caps %d %d %d %d", cap(r.spans), cap(r.tenants), cap(r.ids), cap(r.links))
	}
}
