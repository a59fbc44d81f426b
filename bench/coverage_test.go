package bench

import (
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/bench/benchkit"
	"github.com/tenantguard/tenantguard/detector"
	tenantguard "github.com/tenantguard/tenantguard/processor/tenantguardprocessor"
	"golang.org/x/sys/unix"
)

// BenchmarkCoverage: the processor on the reference load with per-tenant
// coverage counting off (coverage.max_tenants: 0) and on (the default,
// 1,000 tenants per hour; the load has 1,000 tenants). Both variants run in
// the same invocation, alternating with -count, so that the machine's load
// falls on both alike. State is full: every new trace evicts an old one,
// which is when coverage counts it.
//
//	go test -run '^$' -bench '^BenchmarkCoverage$' -benchtime 1000x -count 10
func BenchmarkCoverage(b *testing.B) {
	shape := benchkit.DefaultShape()
	for _, v := range []struct {
		name       string
		maxTenants int
	}{{"off", 0}, {"on", 1000}} {
		b.Run("coverage="+v.name+"/"+shape.String(), func(b *testing.B) {
			h := newTenantguard(b, tgOpts{rules: map[string]any{"coverage": map[string]any{"max_tenants": v.maxTenants}}})
			benchkit.RunThroughput(b, h, benchkit.NewRing(shape), benchkit.WarmFor(shape, 100_000))
		})
	}
}

// BenchmarkCoverageOverhead: the detector alone (the processor's extractor
// feeding it, as in production) on the reference load, twice side by side:
// one detector counts coverage, the other does not. Each iteration feeds
// the same request to both, in alternating order, and measures the CPU time
// of this thread for each (the goroutine is locked to it), so that time the
// thread spends descheduled on a busy machine counts for neither, and the
// garbage collector's assists fall on both alike. State is full, so every
// new trace evicts (and coverage counts) an old one. It reports each
// detector's CPU per span and coverage-% = (on - off) / off.
//
//	go test -run '^$' -bench '^BenchmarkCoverageOverhead$' -benchtime 2000x -count 10
//
// With TENANTGUARD_BENCH_AA=1 both detectors leave coverage off: the
// coverage-% it reports is then the harness' own bias (an A/A run).
func BenchmarkCoverageOverhead(b *testing.B) {
	shape := benchkit.DefaultShape()
	type side struct {
		det  *detector.Detector
		ext  *tenantguard.Extractor
		took time.Duration
	}
	build := func(maxTenants int) *side {
		cfg := tenantguard.NewFactory().CreateDefaultConfig().(*tenantguard.Config)
		cfg.IdleWindow = benchkit.TenantguardIdle
		cfg.Coverage.MaxTenants = maxTenants
		det, ext, err := tenantguard.NewDetector(cfg, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		return &side{det: det, ext: ext}
	}
	counting := detector.DefaultCoverageMaxTenants
	if os.Getenv("TENANTGUARD_BENCH_AA") != "" {
		// Calibration: both sides off, so coverage-% is the harness' own bias.
		counting = 0
	}
	// Both sides read the same requests (the extractor only reads them), so
	// that neither gets the luckier layout of its own copy. Their own
	// memory is allocated in the order they are built: alternate it from
	// one run (-count) to the next, so that whatever the heap's layout
	// favours falls on both alike (the testing package's b.N = 1 probe
	// before each run does not count).
	ring := benchkit.NewRing(shape)
	var off, on *side
	if b.N > 1 {
		coverageOverheadRuns++
	}
	if coverageOverheadRuns%2 == 0 {
		on = build(counting)
		off = build(0)
	} else {
		off = build(0)
		on = build(counting)
	}
	n := len(ring.Requests)
	feed := func(s *side, pos int, timed bool) {
		td := ring.Requests[pos%n]
		t0 := threadCPU()
		batch := s.det.NewBatch()
		s.ext.Feed(batch, td)
		batch.Close()
		if timed {
			s.took += threadCPU() - t0
		}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pos := 0
	// The ring renews before either side sees the next pass, outside the
	// timings (each side has its own state, so both see every id once).
	renew := func() {
		if pos > 0 && pos%n == 0 {
			ring.Renew()
		}
	}
	for range benchkit.WarmFor(shape, detector.DefaultMaxTraces) {
		renew()
		feed(off, pos, false)
		feed(on, pos, false)
		pos++
	}
	runtime.GC()
	b.ResetTimer()
	for i := range b.N {
		renew()
		// The side that goes first reads the request cold. The load's
		// requests alternate too (interleave 2: a request of new traces,
		// then one of their second halves), so the order flips every two
		// requests: each side goes first on as many of each kind.
		if i/2%2 == 0 {
			feed(off, pos, true)
			feed(on, pos, true)
		} else {
			feed(on, pos, true)
			feed(off, pos, true)
		}
		pos++
	}
	b.StopTimer()
	if counting > 0 && on.det.TakeCoverage(time.Time{}) == nil {
		b.Fatal("the detector counting coverage counted nothing")
	}
	spans := float64(b.N * shape.SpansPerRequest())
	offNs, onNs := float64(off.took.Nanoseconds())/spans, float64(on.took.Nanoseconds())/spans
	b.ReportMetric(offNs, "off-cpu-ns/span")
	b.ReportMetric(onNs, "on-cpu-ns/span")
	b.ReportMetric(100*(onNs-offNs)/offNs, "coverage-%")
}

// coverageOverheadRuns counts BenchmarkCoverageOverhead's runs, to
// alternate the order its two sides are built in.
var coverageOverheadRuns int

// threadCPU is the CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID).
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}
