package bench

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/bench/benchkit"
)

// BenchmarkLiveHeap: tenantguard's live heap per in-flight trace and per
// buffered span (benchkit.LiveHeapBench), on the reference load's spans
// (semconv and bare) and on the fresh-state load's (benchkit.FreshShape);
// bench/peers has the same benchmark for the peers.
//
//	go test -run '^$' -bench '^BenchmarkLiveHeap$' -benchtime 1x -count 6
func BenchmarkLiveHeap(b *testing.B) {
	def, bare := benchkit.DefaultShape(), benchkit.DefaultShape()
	bare.Bare = true
	for _, shape := range []benchkit.Shape{def, bare, benchkit.FreshShape()} {
		b.Run(benchkit.Name(benchkit.Tenantguard, shape), func(b *testing.B) {
			benchkit.LiveHeapBench(b, shape, liveHeapTraces, func(b *testing.B) *benchkit.Harness {
				return newTenantguard(b, tgOpts{idle: benchkit.HeldWait, maxTraces: 2 * liveHeapTraces})
			})
		})
	}
}

// liveHeapTraces is how many traces are held while the heap is measured.
const liveHeapTraces = 20_000

// budgetStream is a stream budgetRun feeds at full speed: unique trace ids,
// one span each (the most state per span an attacker can force, the stated
// bound), or a leak storm (the reference load's traces, every one crossing:
// each keeps its finding's last version and evidence until its tomb ends).
type budgetStream struct {
	name  string
	shape benchkit.Shape
	// budget is the stated bound, bytes of live heap per trace of
	// max_traces (BENCHMARKS.md section 6, README).
	budget uint64
}

var (
	uniqueIDs = budgetStream{"unique", benchkit.Shape{SpansPerTrace: 1, TracesPerRequest: 1000, Tenants: 1000, Interleave: 1, Requests: 16}, 2048}
	leakStorm = budgetStream{"storm", benchkit.Shape{SpansPerTrace: 10, TracesPerRequest: 100, Tenants: 1000, LeakRate: 1, Interleave: 1, Requests: 16}, 8192}
)

type budgetResult struct {
	fed, evicted, inMemory int64
	base, peak, mid, end   uint64
}

// budgetRun feeds rounds × maxTraces traces of the stream into a
// tenantguard with the given max_traces, sampling the live heap as it goes.
func budgetRun(tb testing.TB, st budgetStream, maxTraces, rounds int) budgetResult {
	shape := st.shape
	addr := freeAddr(tb)
	var r budgetResult
	// Before the processor is built: the budget counts what it allocates
	// for max_traces at start.
	r.base = benchkit.LiveHeap()
	h := newTenantguard(tb, tgOpts{maxTraces: maxTraces, metrics: addr, name: "budget"})
	ring := benchkit.NewRing(shape)
	requests := rounds * maxTraces / shape.TracesPerRequest
	sampleEvery := max(requests/20, 1)
	for i := range requests {
		if i > 0 && i%len(ring.Requests) == 0 {
			ring.Renew()
		}
		h.Consume(tb, ring.Requests[i%len(ring.Requests)])
		if (i+1)%sampleEvery == 0 {
			live := benchkit.LiveHeap()
			r.peak = max(r.peak, live)
			if i+1 <= requests/2 {
				r.mid = live
			}
			r.end = live
		}
	}
	r.fed = int64(requests * shape.TracesPerRequest)
	m := scrape(tb, addr)
	r.evicted = int64(m["tenantguard_traces_evicted_total"])
	r.inMemory = int64(m["tenantguard_traces_in_memory"])
	return r
}

// BenchmarkMemoryBudget: the streams, for two max_traces (the storm at the
// smaller: its traces are ten times the spans).
//
//	go test -run '^$' -bench '^BenchmarkMemoryBudget$' -benchtime 1x -count 3
func BenchmarkMemoryBudget(b *testing.B) {
	for _, c := range []struct {
		st        budgetStream
		maxTraces int
	}{{uniqueIDs, 10_000}, {uniqueIDs, 100_000}, {leakStorm, 10_000}} {
		b.Run(fmt.Sprintf("stream=%s/max_traces=%d", c.st.name, c.maxTraces), func(b *testing.B) {
			var r budgetResult
			for range b.N {
				r = budgetRun(b, c.st, c.maxTraces, 20)
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(r.peak-r.base)/(1<<20), "peak-live-MiB")
			b.ReportMetric(float64(r.peak-r.base)/float64(c.maxTraces), "live-B/trace")
			b.ReportMetric(float64(r.evicted), "evicted")
			b.ReportMetric(float64(r.inMemory), "in-memory")
		})
	}
}

// TestMemoryBudget checks the budget holds under both streams: never more
// than max_traces in memory, every trace beyond it evicted and counted, the
// live heap flat once the state is full (no growth between the middle and
// the end of the run beyond noise), and within its stream's stated bound.
func TestMemoryBudget(t *testing.T) {
	for _, st := range []budgetStream{uniqueIDs, leakStorm} {
		t.Run(st.name, func(t *testing.T) {
			const maxTraces = 20_000
			r := budgetRun(t, st, maxTraces, 10)
			t.Logf("fed %d traces: %d evicted, %d in memory; live heap over base: peak %d B (%.0f B/trace), mid %d B, end %d B",
				r.fed, r.evicted, r.inMemory, r.peak-r.base, float64(r.peak-r.base)/maxTraces, r.mid-r.base, r.end-r.base)
			if r.inMemory > maxTraces {
				t.Errorf("%d traces in memory, max_traces is %d", r.inMemory, maxTraces)
			}
			if r.evicted < r.fed-maxTraces {
				t.Errorf("%d evictions counted, want at least %d (fed %d, max_traces %d)", r.evicted, r.fed-maxTraces, r.fed, maxTraces)
			}
			if grow := int64(r.end) - int64(r.mid); grow > int64(r.mid-r.base)/10+1<<20 {
				t.Errorf("live heap grew by %d B between the middle and the end of the run: state is not bounded", grow)
			}
			if limit := uint64(maxTraces) * st.budget; r.peak-r.base > limit {
				t.Errorf("peak live heap %d B over base, budget %d B (%d B per trace of max_traces)", r.peak-r.base, limit, st.budget)
			}
		})
	}
}

func freeAddr(tb testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// scrape reads tenantguard's /metrics (public: the Prometheus endpoint),
// summing series by metric name.
func scrape(tb testing.TB, addr string) map[string]float64 {
	var resp *http.Response
	var err error
	for range 50 {
		resp, err = http.Get("http://" + addr + "/metrics")
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("scraping tenantguard metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err == nil {
				_ = rest
				out[strings.TrimSpace(strings.Fields(name)[0])] += v
			}
		}
	}
	return out
}

// BenchmarkGCMark: what tenantguard's state costs the garbage collector.
// A collector allocates for every request it decodes, so its GC runs every
// second or so and marks whatever tenantguard holds each time (BENCHMARKS.md
// section 7). Here one processor holds gcMarkTraces traces of the reference
// load in memory (1% of them crossing, or none), and forced collections are
// timed (process CPU, all threads) against the same processor empty, side by
// side: the difference is what each of the collector's GC cycles pays for
// the state.
//
//	go test -run '^$' -bench '^BenchmarkGCMark$' -benchtime 20x -count 4
func BenchmarkGCMark(b *testing.B) {
	for _, c := range []struct {
		held int
		leak float64
	}{{0, 0}, {gcMarkTraces, 0.01}, {gcMarkTraces, 0}} {
		b.Run(fmt.Sprintf("traces=%d/leak=%g", c.held, c.leak), func(b *testing.B) {
			h := newTenantguard(b, tgOpts{idle: benchkit.HeldWait, maxTraces: gcMarkTraces})
			shape := benchkit.DefaultShape()
			shape.LeakRate = c.leak
			shape.Requests = max(c.held/shape.TracesPerRequest, shape.Interleave)
			if c.held > 0 {
				ring := benchkit.NewRing(shape)
				for _, td := range ring.Requests {
					h.Consume(b, td)
				}
			}
			runtime.GC()
			start := benchkit.ProcessCPU()
			for b.Loop() {
				runtime.GC()
			}
			cpu := benchkit.ProcessCPU() - start
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "gc-cpu-µs/cycle")
			// The next run's state must not be measured with this one's: the
			// harness's own cleanup holds h until the benchmark ends.
			h.Close(b)
			h.Proc = nil
		})
	}
}

// gcMarkTraces is the whole-collector load's state: its 100,000 traces
// stay in memory for the run (bench/load).
const gcMarkTraces = 100_000
