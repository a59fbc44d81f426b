package benchkit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The processors compared, by the name used in benchmark names (/proc=...).
const (
	Tenantguard  = "tenantguard"
	GroupByTrace = "groupbytrace"
	TailSampling = "tailsampling"
)

// Waits used when the processors are compared: groupbytrace with a short
// wait, tail_sampling with the shortest decision_wait its one-second
// decision tick supports (its default is 30s). tenantguard keeps its default
// idle window; it forwards spans at once whatever the window.
const (
	GroupByTraceWait = 200 * time.Millisecond
	TailSamplingWait = time.Second
	TenantguardIdle  = 60 * time.Second
	// HeldWait keeps everything in memory while live heap is measured.
	HeldWait = 5 * time.Minute
)

// Wait is the wait a processor is compared with.
func Wait(kind string) time.Duration {
	switch kind {
	case GroupByTrace:
		return GroupByTraceWait
	case TailSampling:
		return TailSamplingWait
	}
	return TenantguardIdle
}

// Options say how to build a processor.
type Options struct {
	Factory processor.Factory
	// Config is applied over the factory's default config, as a collector
	// config file would be.
	Config map[string]any
	// Name, when set, names the component instance (metric labels).
	Name string
	// Logger replaces the nop logger.
	Logger *zap.Logger
	// Async: spans reach the next consumer only after the processor's wait.
	Async bool
	// Wait is the processor's wait (drain time limits scale with it).
	Wait time.Duration
	// Next replaces the counting sink.
	Next consumer.Traces
}

// ErrUnknownKeys: the config names settings this build of the processor
// does not have (yet).
var ErrUnknownKeys = errors.New("the processor does not know these settings")

// Harness is one started processor and the sink behind it.
type Harness struct {
	Kind  string
	Proc  processor.Traces
	Sink  *CountSink
	Async bool
	Wait  time.Duration
	// Lost counts the spans a peer never forwarded (see Drain).
	Lost int64
	// AfterConsume, when set, runs after every ConsumeTraces, inside the
	// measurement (an experiment's probe, e.g. BenchmarkDurabilityCost's).
	AfterConsume func()
	// closed makes Close idempotent (it also runs at the benchmark's end).
	closed sync.Once
}

// New builds and starts a processor through its factory, exactly as a
// collector does, and shuts it down when the benchmark (run) ends. A config
// with keys the processor does not know skips the benchmark.
func New(tb testing.TB, kind string, o Options) *Harness {
	tb.Helper()
	cfg := o.Factory.CreateDefaultConfig()
	if err := confmap.NewFromStringMap(o.Config).Unmarshal(cfg); err != nil {
		if strings.Contains(err.Error(), "invalid keys") {
			tb.Skipf("%s: %v: %v (rerun once they land)", kind, ErrUnknownKeys, err)
		}
		tb.Fatalf("%s config: %v", kind, err)
	}
	if err := confmap.Validate(cfg); err != nil {
		tb.Fatalf("%s config: %v", kind, err)
	}
	set := processortest.NewNopSettings(o.Factory.Type())
	if o.Name != "" {
		set.ID = component.NewIDWithName(o.Factory.Type(), o.Name)
	}
	if o.Logger != nil {
		set.Logger = o.Logger
	}
	h := &Harness{Kind: kind, Sink: &CountSink{}, Async: o.Async, Wait: o.Wait}
	next := consumer.Traces(h.Sink)
	if o.Next != nil {
		next = o.Next
	}
	p, err := o.Factory.CreateTraces(context.Background(), set, cfg, next)
	if err != nil {
		tb.Fatalf("%s: %v", kind, err)
	}
	if err := p.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		tb.Fatalf("%s start: %v", kind, err)
	}
	h.Proc = p
	tb.Cleanup(func() { h.Close(tb) })
	return h
}

// Close shuts the processor down (once; New also arranges it for the end
// of the benchmark). Benchmarks that build a processor per iteration call
// it after each, so that no iteration runs beside an earlier one's workers.
func (h *Harness) Close(tb testing.TB) {
	h.closed.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.Proc.Shutdown(ctx); err != nil {
			tb.Logf("%s shutdown: %v", h.Kind, err)
		}
	})
}

// Consume feeds one request; a processor error fails the benchmark.
func (h *Harness) Consume(tb testing.TB, td ptrace.Traces) {
	if err := h.Proc.ConsumeTraces(context.Background(), td); err != nil {
		tb.Fatalf("%s ConsumeTraces: %v", h.Kind, err)
	}
	if h.AfterConsume != nil {
		h.AfterConsume()
	}
}

// Drain waits until the sink has seen want spans (the peers release traces
// only after their wait), or until nothing more has come for 10 waits plus
// 5 s. tenantguard must forward every span: a shortfall fails the
// benchmark. groupbytrace drops a few traces of a fast fresh load (its
// event queue times out): a peer's shortfall is counted in Lost and
// reported as lost-spans/op, the CPU it spent on them still counted.
func (h *Harness) Drain(tb testing.TB, want int64) {
	quiet := 10*h.Wait + 5*time.Second
	last, since := h.Sink.Spans.Load(), time.Now()
	for {
		got := h.Sink.Spans.Load()
		if got >= want {
			return
		}
		if got != last {
			last, since = got, time.Now()
		}
		if time.Since(since) > quiet {
			if h.Kind == Tenantguard {
				tb.Fatalf("%s forwarded %d of %d spans, none more for %s", h.Kind, got, want, quiet)
			}
			tb.Logf("%s forwarded %d of %d spans, none more for %s: %d lost", h.Kind, got, want, quiet, want-got)
			h.Lost += want - got
			h.Sink.Spans.Add(want - got) // later drains wait for their own spans only
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// CountSink counts what the processor forwards and, when asked, notes when
// given traces arrive (for the latency benchmarks).
type CountSink struct {
	Spans atomic.Int64
	mu    sync.Mutex
	watch map[pcommon.TraceID]chan struct{}
}

// ConsumeTraces implements consumer.Traces.
func (s *CountSink) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	s.Spans.Add(int64(td.SpanCount()))
	s.mu.Lock()
	if len(s.watch) > 0 {
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, sp := range ss.Spans().All() {
					if ch, ok := s.watch[sp.TraceID()]; ok {
						close(ch)
						delete(s.watch, sp.TraceID())
					}
				}
			}
		}
	}
	s.mu.Unlock()
	return nil
}

// Capabilities implements consumer.Traces.
func (*CountSink) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

// WatchFor returns a channel closed when a span of id reaches the sink.
func (s *CountSink) WatchFor(id pcommon.TraceID) <-chan struct{} {
	ch := make(chan struct{})
	s.mu.Lock()
	if s.watch == nil {
		s.watch = map[pcommon.TraceID]chan struct{}{}
	}
	s.watch[id] = ch
	s.mu.Unlock()
	return ch
}

// WarmFor is how many requests bring tenantguard to its steady state: state
// full (max_traces) and as much again, so evictions and free lists are warm.
func WarmFor(shape Shape, maxTraces int) int {
	return 2*maxTraces/shape.TracesPerRequest + 1
}

// RunThroughput feeds b.N requests from the ring through h and reports, per
// span: wall time inside ConsumeTraces (ns/span, and its inverse spans/s),
// process CPU time until every span has been forwarded (cpu-ns/span:
// includes the peers' worker goroutines and the garbage collector), and
// allocations (allocs/span, B/span: process-wide, also until forwarded)
// and page faults (pagefaults/kspan, per 1,000 spans: memory fresh from the
// kernel, touched for the first time).
//
// warm requests go through first, unmeasured, so that state is at its
// steady size; the peers then drain before measuring starts.
func RunThroughput(b *testing.B, h *Harness, ring *Ring, warm int) {
	spr := ring.Shape.SpansPerRequest()
	n := len(ring.Requests)
	pos := 0
	var m Meter
	var renewing time.Duration // wall time renewing ids while the timer ran
	next := func() {
		if pos > 0 && pos%n == 0 {
			// New trace ids for the next pass, outside every measurement.
			// Not with b.StopTimer or Meter.Stop: they read runtime.MemStats,
			// stopping the world (see Meter); the renewal's wall time is
			// taken off the timer's instead.
			if !m.running {
				ring.Renew()
			} else {
				m.Pause()
				t0 := time.Now()
				ring.Renew()
				renewing += time.Since(t0)
				m.Resume()
			}
		}
		h.Consume(b, ring.Requests[pos%n])
		pos++
	}
	if b.N == 1 {
		// The framework's probe run (-benchtime=Nx runs N=1 first): nothing
		// to measure; skip the warm-up and the peers' wait.
		next()
		return
	}
	for range warm {
		next()
	}
	if h.Async {
		h.Drain(b, int64(pos*spr))
	}
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	m.Start()
	for range b.N {
		next()
	}
	b.StopTimer()
	if h.Async {
		h.Drain(b, int64(pos*spr))
	}
	m.Stop()
	reportPerSpan(b, &m, b.N*spr, b.Elapsed()-renewing)
}

// RunFresh is the fresh-state load: every iteration builds a new processor
// (outside the timer and the meter), feeds it every request of the ring once,
// in order, and measures until the sink has every span, so that the state
// grows from empty as after a collector's restart; then it shuts the
// processor down, renews the ring's trace ids and collects garbage, outside
// the measurement. The metrics are RunThroughput's.
func RunFresh(b *testing.B, ring *Ring, build func(b *testing.B) *Harness) {
	RunFreshConcurrent(b, ring, 1, build)
}

// RunFreshConcurrent is RunFresh with the ring's requests spread over
// senders goroutines that feed the processor at once (request i goes to
// sender i mod senders).
func RunFreshConcurrent(b *testing.B, ring *Ring, senders int, build func(b *testing.B) *Harness) {
	spans := ring.Spans()
	if discardedProbe(b) {
		// -benchtime=Nx (N > 1) runs one iteration first and throws its
		// result away: feed one request, skip the rest (and the peers' wait).
		h := build(b)
		h.Consume(b, ring.Requests[0])
		h.Close(b)
		return
	}
	var m Meter
	var lost int64
	b.ReportAllocs()
	b.StopTimer()
	b.ResetTimer()
	for i := range b.N {
		if i > 0 {
			ring.Renew()
		}
		h := build(b)
		runtime.GC()
		b.StartTimer()
		m.Start()
		if senders <= 1 {
			for _, td := range ring.Requests {
				h.Consume(b, td)
			}
		} else {
			var wg sync.WaitGroup
			for k := range senders {
				wg.Go(func() {
					for j := k; j < len(ring.Requests); j += senders {
						if err := h.Proc.ConsumeTraces(context.Background(), ring.Requests[j]); err != nil {
							b.Errorf("%s ConsumeTraces: %v", h.Kind, err) // not Fatal: not the benchmark's goroutine
							return
						}
					}
				})
			}
			wg.Wait()
		}
		b.StopTimer() // wall time is the time inside ConsumeTraces, as in RunThroughput
		h.Drain(b, int64(spans))
		m.Stop()
		h.Close(b)
		lost += h.Lost
	}
	ReportPerSpan(b, &m, b.N*spans)
	if lost > 0 {
		b.ReportMetric(float64(lost)/float64(b.N), "lost-spans/op")
	}
}

// discardedProbe: this is the framework's first run (b.N = 1), whose result
// it discards because -benchtime asks for a fixed count above 1. Under a
// duration -benchtime (or 1x) the first run counts and must be real.
func discardedProbe(b *testing.B) bool {
	if b.N != 1 {
		return false
	}
	f := flag.Lookup("test.benchtime")
	if f == nil {
		return false
	}
	v := f.Value.String()
	return strings.HasSuffix(v, "x") && v != "1x"
}

// ReportPerSpan reports the per-span metrics of a measured stretch, whose
// wall time is the benchmark timer's.
func ReportPerSpan(b *testing.B, m *Meter, spans int) {
	reportPerSpan(b, m, spans, b.Elapsed())
}

func reportPerSpan(b *testing.B, m *Meter, spans int, wall time.Duration) {
	s := float64(spans)
	b.ReportMetric(float64(wall.Nanoseconds())/s, "ns/span")
	b.ReportMetric(s/wall.Seconds(), "spans/s")
	b.ReportMetric(float64(m.CPU().Nanoseconds())/s, "cpu-ns/span")
	b.ReportMetric(float64(m.Mallocs())/s, "allocs/span")
	b.ReportMetric(float64(m.Bytes())/s, "B/span")
	b.ReportMetric(float64(m.PageFaults())/s*1000, "pagefaults/kspan")
}

// LiveHeapBench measures the live heap a processor holds per in-flight
// trace: the heap after a forced GC with `traces` traces held, minus the heap
// of the started, empty processor, divided by the traces held. The requests
// are built, fed and dropped, so what remains is the processor's own state.
// build must return a processor that holds everything (HeldWait).
func LiveHeapBench(b *testing.B, shape Shape, traces int, build func(b *testing.B) *Harness) {
	shape.Requests = traces / shape.TracesPerRequest
	var perTrace, atStart float64
	for range b.N {
		// Settled: what earlier runs left behind (their processors' async
		// workers) must be gone before the processor is built, and the
		// empty processor weighed.
		before := settledHeap(LiveHeap())
		h := build(b)
		base := settledHeap(LiveHeap())
		atStart += float64(int64(base)-int64(before)) / float64(traces)
		ring := NewRing(shape)
		for _, td := range ring.Requests {
			h.Consume(b, td)
		}
		ring = nil
		after := settledHeap(base)
		want := int64(traces * shape.SpansPerTrace)
		if !h.Async && h.Sink.Spans.Load() != want {
			b.Fatalf("%s forwarded %d spans, want %d", h.Kind, h.Sink.Spans.Load(), want)
		}
		if h.Async && h.Sink.Spans.Load() != 0 {
			b.Fatalf("%s released %d spans before its wait: the measurement would miss them", h.Kind, h.Sink.Spans.Load())
		}
		if after < base {
			b.Fatalf("%s: live heap fell from %d B (started, empty) to %d B holding %d traces: memory from before was still being freed", h.Kind, base, after, traces)
		}
		perTrace += float64(int64(after)-int64(base)) / float64(traces)
	}
	perTrace /= float64(b.N)
	atStart /= float64(b.N)
	b.ReportMetric(0, "ns/op")
	// What the processor holds once built, before any trace (tenantguard
	// allocates its entries and span records for max_traces then), per
	// trace held afterwards: live-B/trace is what each trace adds to it.
	b.ReportMetric(atStart, "start-B/trace")
	b.ReportMetric(perTrace, "live-B/trace")
	b.ReportMetric(perTrace/float64(shape.SpansPerTrace), "live-B/span")
}

// settledHeap waits for asynchronous processors to finish ingesting (their
// workers run behind ConsumeTraces), or for what a shut-down processor's
// workers still held to be freed: until the live heap has not moved by
// more than 0.5% of what the processor holds for three samples in a row,
// or 30 seconds at most (a processor whose heap grows with time rather
// than with traces never settles).
func settledHeap(base uint64) uint64 {
	prev := LiveHeap()
	stable := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		cur := LiveHeap()
		d := int64(cur) - int64(prev)
		if d < 0 {
			d = -d
		}
		if grown := int64(cur) - int64(base); d*200 <= grown || d < 64<<10 {
			stable++
		} else {
			stable = 0
		}
		prev = cur
		if stable == 3 {
			break
		}
	}
	return prev
}

// ReportLatencies summarises latency samples as benchstat metrics.
func ReportLatencies(b *testing.B, samples []time.Duration, unit string) {
	if len(samples) == 0 {
		b.Fatal("no finding observed")
	}
	slices.Sort(samples)
	q := func(p float64) float64 { return float64(samples[int(p*float64(len(samples)-1))].Nanoseconds()) }
	b.ReportMetric(q(0.50), unit+"-p50")
	b.ReportMetric(q(0.99), unit+"-p99")
	b.ReportMetric(float64(samples[len(samples)-1].Nanoseconds()), unit+"-max")
}

// ReleaseLatency feeds one leaking request per iteration and times how long
// the leaking trace takes to leave the processor whole: for the peers, the
// first moment a check over the whole trace could run.
func ReleaseLatency(b *testing.B, h *Harness, ring *Ring) {
	var samples []time.Duration
	for i := range b.N {
		if i > 0 && i%len(ring.Requests) == 0 {
			ring.Renew()
		}
		leaks := ring.Leaks[i%len(ring.Requests)]
		if len(leaks) == 0 {
			b.Fatal("the latency load needs a leaking trace in every request")
		}
		done := h.Sink.WatchFor(leaks[0])
		t0 := time.Now()
		h.Consume(b, ring.Requests[i%len(ring.Requests)])
		select {
		case <-done:
			samples = append(samples, time.Since(t0))
		case <-time.After(30*h.Wait + 10*time.Second):
			b.Fatalf("%s never released the leaking trace", h.Kind)
		}
	}
	b.StopTimer()
	ReportLatencies(b, samples, "ns-to-finding")
}

// Name is a sub-benchmark name: /proc=kind/shape.
func Name(kind string, shape Shape) string { return fmt.Sprintf("proc=%s/%s", kind, shape) }

// MemDir is a temporary directory in memory (tmpfs under /dev/shm), where
// an fsync costs nothing: for experiments that take the disk out of the
// cost (BenchmarkDurabilityCost), never for a processor's reference figure.
func MemDir(tb testing.TB) string {
	dir, err := os.MkdirTemp("/dev/shm", "tenantguard-bench-")
	if err != nil {
		tb.Fatalf("a directory in memory: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		tb.Fatalf("statfs %s: %v", dir, err)
	}
	if st.Type != unix.TMPFS_MAGIC && st.Type != unix.RAMFS_MAGIC {
		tb.Fatalf("%s is not in memory (tmpfs): the experiment needs a journal whose fsync costs nothing", dir)
	}
	return dir
}

// DiskDir is a temporary directory for a journal, checked to be on a real
// file system: on tmpfs an fsync costs nothing, which would flatter every
// processor that waits for its journal. TMPDIR picks another place.
func DiskDir(tb testing.TB) string {
	dir := tb.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		tb.Fatalf("statfs %s: %v", dir, err)
	}
	if st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC {
		tb.Fatalf("%s is in memory (tmpfs), where fsync is free: set TMPDIR to a directory on a disk", dir)
	}
	return dir
}
