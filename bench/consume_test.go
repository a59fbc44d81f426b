package bench

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/tenantguard/tenantguard/bench/benchkit"
	"github.com/tenantguard/tenantguard/bench/experiment"
)

// BenchmarkTenantguard: the processor alone, across the traffic parameters
// (leak rate, interleaving, one-span traces, bare spans) and with
// each optional rule on separately, then all together, on the reference load.
//
//	go test -run '^$' -bench '^BenchmarkTenantguard$' -benchtime 1000x -count 6
func BenchmarkTenantguard(b *testing.B) {
	type variant struct {
		rules string
		cfg   map[string]any
		shape benchkit.Shape
	}
	var variants []variant
	def := benchkit.DefaultShape()
	for _, leak := range []float64{0, 0.01} {
		for _, il := range []int{1, 2} {
			s := def
			s.LeakRate, s.Interleave = leak, il
			variants = append(variants, variant{"default", nil, s})
		}
	}
	s := def
	s.SpansPerTrace, s.TracesPerRequest = 1, 1000
	variants = append(variants, variant{"default", nil, s})
	s = def
	s.Bare = true
	variants = append(variants, variant{"default", nil, s})
	for _, r := range optionalRules {
		variants = append(variants, variant{r.name, r.cfg, def})
	}
	variants = append(variants, variant{"all", allOptional(), def})

	for _, v := range variants {
		b.Run(fmt.Sprintf("rules=%s/%s", v.rules, v.shape), func(b *testing.B) {
			h := newTenantguard(b, tgOpts{rules: v.cfg})
			benchkit.RunThroughput(b, h, benchkit.NewRing(v.shape), benchkit.WarmFor(v.shape, 100_000))
		})
	}
}

// BenchmarkCompare: tenantguard (default rules) on the reference load; the
// same benchmark in bench/peers runs tail_sampling and groupbytrace on the
// same load. Compare with benchstat -col /proc (see run.sh). The floor, the
// read experiment and the prototype (floor_test.go, an experiment) run on
// the same load as proc=floor, proc=read and proc=prototype.
func BenchmarkCompare(b *testing.B) {
	for _, bare := range []bool{false, true} {
		shape := benchkit.DefaultShape()
		shape.Bare = bare
		b.Run(benchkit.Name(benchkit.Tenantguard, shape), func(b *testing.B) {
			h := newTenantguard(b, tgOpts{})
			benchkit.RunThroughput(b, h, benchkit.NewRing(shape), benchkit.WarmFor(shape, 100_000))
		})
		for _, kind := range experiment.Kinds {
			b.Run(benchkit.Name(kind, shape), func(b *testing.B) {
				h := newExperiment(b, kind, 100_000)
				benchkit.RunThroughput(b, h, benchkit.NewRing(shape), benchkit.WarmFor(shape, 100_000))
			})
		}
	}
}

// BenchmarkCompareFresh: the fresh-state load (benchkit.FreshShape), each
// iteration a new, empty processor fed 20,000 new traces once; bench/peers
// has the same benchmark for the peers, and the experiments of
// floor_test.go run here too. One iteration is 200,000 spans.
//
//	go test -run '^$' -bench '^BenchmarkCompareFresh$' -benchtime 5x -count 6
func BenchmarkCompareFresh(b *testing.B) {
	shape := benchkit.FreshShape()
	ring := benchkit.NewRing(shape)
	b.Run(benchkit.Name(benchkit.Tenantguard, shape), func(b *testing.B) {
		benchkit.RunFresh(b, ring, func(b *testing.B) *benchkit.Harness { return newTenantguard(b, tgOpts{}) })
	})
	for _, kind := range experiment.FreshKinds {
		b.Run(benchkit.Name(kind, shape), func(b *testing.B) {
			benchkit.RunFresh(b, ring, func(*testing.B) *benchkit.Harness { return newExperiment(b, kind, 100_000) })
		})
	}
}

// BenchmarkParallel: concurrent ConsumeTraces into one tenantguard (a
// collector calls it from every receiver goroutine at once). Run with
// -cpu 1,2: the detector takes one shard per GOMAXPROCS. senders=1 is one
// sender per core, senders=4 four: a leaking request waits for its
// findings' fsync (durable acknowledgement), and while it waits its core has
// nothing to do unless other requests are in flight, as they are in a
// collector serving many clients. Each sender renews its own ring's trace
// ids inline (BenchmarkRenew is that cost). BenchmarkScalingCeiling is the
// same traffic into one private processor per core.
func BenchmarkParallel(b *testing.B) {
	for _, leak := range []float64{0, 0.01} {
		for _, senders := range []int{1, 4} {
			shape := benchkit.DefaultShape()
			shape.LeakRate = leak
			b.Run(fmt.Sprintf("senders=%d/", senders)+benchkit.Name(benchkit.Tenantguard, shape), func(b *testing.B) {
				h := newTenantguard(b, tgOpts{})
				warm := benchkit.NewRing(shape) // worker 0: its ids never come back
				for i := range benchkit.WarmFor(shape, 100_000) {
					if i > 0 && i%len(warm.Requests) == 0 {
						warm.Renew()
					}
					h.Consume(b, warm.Requests[i%len(warm.Requests)])
				}
				b.SetParallelism(senders) // RunParallel starts senders×GOMAXPROCS goroutines
				rings := make([]*benchkit.Ring, senders*runtime.GOMAXPROCS(0))
				for i := range rings {
					s := shape
					s.Worker = uint16(i + 1)
					rings[i] = benchkit.NewRing(s)
				}
				runParallel(b, shape, rings, func(int) *benchkit.Harness { return h })
			})
		}
	}
}

// BenchmarkParallelFresh: the fresh-state load (benchkit.FreshShape) with
// its 200 requests spread over senders×GOMAXPROCS concurrent senders, a new,
// empty processor per iteration (200,000 spans). Run with -cpu 1,2 and
// compare spans/s.
//
//	go test -run '^$' -bench '^BenchmarkParallelFresh$' -benchtime 5x -cpu 1,2 -count 4
func BenchmarkParallelFresh(b *testing.B) {
	shape := benchkit.FreshShape()
	ring := benchkit.NewRing(shape)
	for _, senders := range []int{1, 4} {
		b.Run(fmt.Sprintf("senders=%d/", senders)+benchkit.Name(benchkit.Tenantguard, shape), func(b *testing.B) {
			benchkit.RunFreshConcurrent(b, ring, senders*runtime.GOMAXPROCS(0),
				func(b *testing.B) *benchkit.Harness { return newTenantguard(b, tgOpts{}) })
		})
	}
}

// runParallel feeds each ring from its own goroutine into the harness
// pick gives it, and reports per span.
func runParallel(b *testing.B, shape benchkit.Shape, rings []*benchkit.Ring, pick func(sender int) *benchkit.Harness) {
	var claimed atomic.Int32
	var m benchkit.Meter
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	m.Start()
	b.RunParallel(func(pb *testing.PB) {
		w := int(claimed.Add(1)-1) % len(rings)
		feedRing(b, pb, pick(w), rings[w])
	})
	b.StopTimer()
	m.Stop()
	benchkit.ReportPerSpan(b, &m, b.N*shape.SpansPerRequest())
}

// feedRing feeds r's requests to h round and round while pb lets it,
// renewing the trace ids before each pass after the first (inline: a
// sender's ring is its own), and returns how many requests it fed.
func feedRing(b *testing.B, pb *testing.PB, h *benchkit.Harness, r *benchkit.Ring) int64 {
	n := len(r.Requests)
	i := 0
	for pb.Next() {
		if i > 0 && i%n == 0 {
			r.Renew()
		}
		h.Consume(b, r.Requests[i%n])
		i++
	}
	return int64(i)
}

// BenchmarkRenew is what renewing the trace ids of a ring costs per span
// (BenchmarkParallel pays it inline; the others outside the timer).
func BenchmarkRenew(b *testing.B) {
	ring := benchkit.NewRing(benchkit.DefaultShape())
	b.ReportAllocs()
	for b.Loop() {
		ring.Renew()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*ring.Spans()), "ns/span")
}
