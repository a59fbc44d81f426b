package experiment

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tenantguard/tenantguard/bench/benchkit"
)

// TestExperiments checks that the floor and the prototype do the work they
// are measured for, on the fresh-state load: the floor reads a tenant on
// every span; the prototype holds every trace and span, finds exactly the
// traces that cross tenants, and evicts the oldest traces once max_traces
// are held. It also checks the load is the issue's.
func TestExperiments(t *testing.T) {
	shape := benchkit.FreshShape()
	ring := benchkit.NewRing(shape)
	leaks := 0
	for _, l := range ring.Leaks {
		leaks += len(l)
	}
	const traces = 20_000
	if got := ring.Spans(); got != traces*10 || len(ring.Requests) != 200 {
		t.Fatalf("fresh load: %d spans in %d requests, want 200,000 in 200", got, len(ring.Requests))
	}
	if leaks != traces/100 {
		t.Fatalf("fresh load: %d crossing traces, want 1%% of %d", leaks, traces)
	}
	for _, td := range ring.Requests {
		if n := td.ResourceSpans().Len(); n != 3 {
			t.Fatalf("fresh load: %d services in a request, want 3", n)
		}
	}

	f := &floor{}
	for _, td := range ring.Requests {
		f.consume(td)
	}
	if f.tenants != traces*10 {
		t.Errorf("floor read tenant.id on %d spans, want every one of %d", f.tenants, traces*10)
	}

	r := newPrototype(1)
	r.stateless = true
	for _, td := range ring.Requests {
		r.consume(td)
	}
	if r.records != traces*10 || r.held != 0 {
		t.Errorf("read experiment: %d span records written, %d traces held, want %d and none", r.records, r.held, traces*10)
	}

	p := newPrototype(100_000)
	for _, td := range ring.Requests {
		p.consume(td)
	}
	spans := 0
	for i := range p.held {
		spans += int(p.traces[i].n)
	}
	if p.held != traces || spans != traces*10 || p.dropped != 0 || p.evicted != 0 {
		t.Errorf("prototype holds %d traces and %d spans (%d dropped, %d evicted), want %d and %d, none dropped or evicted",
			p.held, spans, p.dropped, p.evicted, traces, traces*10)
	}
	if p.crossed != leaks {
		t.Errorf("prototype found %d crossing traces, want %d", p.crossed, leaks)
	}
	for _, reqLeaks := range ring.Leaks {
		for _, id := range reqLeaks {
			if tr := p.find(binary.BigEndian.Uint64(id[:8]), binary.BigEndian.Uint64(id[8:])); tr.crossed != 1 || tr.n != 10 {
				t.Fatalf("crossing trace %x: crossed %d with %d spans", id, tr.crossed, tr.n)
			}
		}
	}

	// The durable and bounded prototypes: one line per crossing, one fsync
	// per request that holds any, and the file reads back as those lines.
	withLeaks := 0
	for _, l := range ring.Leaks {
		if len(l) > 0 {
			withLeaks++
		}
	}
	faults := map[string]int64{}
	for _, kind := range Durables {
		d, err := New(kind, 100_000, benchkit.DiskDir(t), &benchkit.CountSink{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Shutdown(t.Context()) })
		var m benchkit.Meter
		m.Start()
		for _, td := range ring.Requests {
			if err := d.ConsumeTraces(t.Context(), td); err != nil {
				t.Fatal(err)
			}
		}
		m.Stop()
		faults[kind] = m.PageFaults()
		dp := d.proto
		written, err := os.ReadFile(dp.journal.Name())
		if err != nil {
			t.Fatal(err)
		}
		if kind == Direct {
			// Each request's lines begin a block, padded with zeros; 200
			// requests fit in the file without wrapping.
			var kept []byte
			for b := range slices.Chunk(written, directBlock) {
				kept = append(kept, bytes.TrimRight(b, "\x00")...)
			}
			written = kept
		}
		lines := strings.Split(strings.TrimSuffix(string(written), "\n"), "\n")
		if dp.crossed != leaks || len(lines) != leaks || dp.syncs != withLeaks {
			t.Errorf("%s prototype: %d crossings, %d lines, %d fsyncs; want %d, %d and %d (requests with a crossing)",
				kind, dp.crossed, len(lines), dp.syncs, leaks, leaks, withLeaks)
		}
		for _, l := range lines {
			var ev struct {
				TraceID string   `json:"trace_id"`
				Tenants []string `json:"tenants"`
			}
			if err := json.Unmarshal([]byte(l), &ev); err != nil || len(ev.TraceID) != 32 || len(ev.Tenants) != 2 || ev.Tenants[0] == ev.Tenants[1] {
				t.Fatalf("%s prototype line %q: %v", kind, l, err)
			}
		}
	}

	// bounded-lazy faults its records in as traces arrive (20,000 of 512
	// bytes: 2,500 pages of 4 KiB, or 5 huge pages); bounded touched them
	// all when it was built.
	t.Logf("page faults while fed: %v", faults)
	if faults[BoundedLazy] < 5 || faults[BoundedLazy] <= 2*faults[Bounded] {
		t.Errorf("page faults while fed: bounded-lazy %d, bounded %d; want bounded-lazy's records faulted in as traces arrive",
			faults[BoundedLazy], faults[Bounded])
	}

	// Room for 5,000: the 15,000 oldest go, the newest stay findable and whole.
	small := newPrototype(5_000)
	for _, td := range ring.Requests {
		small.consume(td)
	}
	if small.held != 5_000 || small.evicted != traces-5_000 {
		t.Errorf("max_traces 5,000: %d held, %d evicted, want 5,000 and %d", small.held, small.evicted, traces-5_000)
	}
	for i := range small.traces {
		if tr := &small.traces[i]; small.find(tr.hi, tr.lo) != tr || tr.n != 10 {
			t.Fatalf("max_traces 5,000: held trace %d not found after evictions, or not whole (%d spans)", i, tr.n)
		}
	}
	if small.evicted != traces-5_000 {
		t.Errorf("finding held traces evicted some: %d evictions, want %d", small.evicted, traces-5_000)
	}
}
