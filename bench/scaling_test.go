package bench

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tenantguard/tenantguard/bench/benchkit"
	"github.com/tenantguard/tenantguard/bench/experiment"
)

// BenchmarkScalingCeiling is the experiment behind issue 15's 2-core
// target: how far can this machine's cores scale this work at all? Each
// core gets its own processor, fed by its own senders with their own
// requests, so nothing is shared between the cores' work: no lock, no
// table, no interner, no journal. Whatever a design of cores that do not
// share memory could reach inside one processor, this reaches at least as
// well, so its -cpu 1,2 ratio is the ceiling for BenchmarkParallel, which
// has the same senders and traffic. Three kinds of work:
//
//   - proc=spin: arithmetic on registers only (no memory traffic): the
//     ceiling of the cores themselves;
//   - proc=prototype: the minimal per-span work of floor_test.go (one
//     sender per core: the prototype is not safe for concurrent use);
//   - proc=bounded: the prototype with the durable acknowledgement's least
//     work (floor_test.go: a writer goroutine that writes and fsyncs one
//     line per crossing while the request waits, at most 2 s), each core
//     with its own journal file, on the leaking load (one sender per core);
//   - proc=tenantguard: a whole tenantguard per core (its own state,
//     journal and workers), clean (leak=0) and leaking (leak=0.01).
//
// Compare spans/s (ops/s for spin) between -cpu 1 and -cpu 2.
//
//	go test -run '^$' -bench '^BenchmarkScalingCeiling$' -benchtime 2000x -cpu 1,2 -count 4
func BenchmarkScalingCeiling(b *testing.B) {
	b.Run("proc=spin", func(b *testing.B) {
		var sink atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			x := uint64(1)
			for pb.Next() {
				for range 100_000 { // ~0.15 ms of xorshift per op
					x ^= x << 13
					x ^= x >> 7
					x ^= x << 17
				}
			}
			sink.Add(x)
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
	for _, leak := range []float64{0, 0.01} {
		for _, kind := range []string{experiment.Prototype, experiment.Bounded, benchkit.Tenantguard} {
			for _, senders := range []int{1, 4} {
				if kind == experiment.Prototype && (leak > 0 || senders > 1) {
					continue // no evidence, so leaking traffic is the same work; not concurrent
				}
				if kind == experiment.Bounded && (leak == 0 || senders > 1) {
					continue // the prototype's work when nothing leaks; not concurrent
				}
				shape := benchkit.DefaultShape()
				shape.LeakRate = leak
				b.Run(fmt.Sprintf("senders=%d/", senders)+benchkit.Name(kind, shape), func(b *testing.B) {
					cores := runtime.GOMAXPROCS(0)
					hs := make([]*benchkit.Harness, cores)
					for i := range hs {
						if kind != benchkit.Tenantguard {
							hs[i] = newExperiment(b, kind, 100_000)
						} else {
							hs[i] = newTenantguard(b, tgOpts{name: fmt.Sprint("core", i)})
						}
						warm := benchkit.NewRing(shape)
						for j := range benchkit.WarmFor(shape, 100_000) {
							if j > 0 && j%len(warm.Requests) == 0 {
								warm.Renew()
							}
							hs[i].Consume(b, warm.Requests[j%len(warm.Requests)])
						}
					}
					b.SetParallelism(senders)
					rings := make([]*benchkit.Ring, senders*cores)
					for i := range rings {
						s := shape
						s.Worker = uint16(i + 1)
						rings[i] = benchkit.NewRing(s)
					}
					runParallel(b, shape, rings, func(sender int) *benchkit.Harness { return hs[sender%cores] })
				})
			}
		}
	}
}

// BenchmarkScalingCeilingFresh is BenchmarkScalingCeiling on the fresh-state
// load: each core gets a new processor per iteration and its own 200
// requests, fed by 4 senders per core, as BenchmarkParallelFresh does for
// one processor.
//
//	go test -run '^$' -bench '^BenchmarkScalingCeilingFresh$' -benchtime 5x -cpu 1,2 -count 4
func BenchmarkScalingCeilingFresh(b *testing.B) {
	fresh := benchkit.FreshShape()
	b.Run("senders=4/"+benchkit.Name(benchkit.Tenantguard, fresh), func(b *testing.B) {
		const senders = 4
		cores := runtime.GOMAXPROCS(0)
		rings := make([]*benchkit.Ring, cores)
		for i := range rings {
			s := fresh
			s.Worker = uint16(i + 1)
			rings[i] = benchkit.NewRing(s)
		}
		var m benchkit.Meter
		b.ReportAllocs()
		b.StopTimer()
		b.ResetTimer()
		for it := range b.N {
			hs := make([]*benchkit.Harness, cores)
			for i := range hs {
				if it > 0 {
					rings[i].Renew()
				}
				hs[i] = newTenantguard(b, tgOpts{name: fmt.Sprint("core", i)})
			}
			runtime.GC()
			var wg sync.WaitGroup
			b.StartTimer()
			m.Start()
			for c := range cores {
				for k := range senders {
					wg.Go(func() {
						reqs := rings[c].Requests
						for j := k; j < len(reqs); j += senders {
							if err := hs[c].Proc.ConsumeTraces(context.Background(), reqs[j]); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
			}
			wg.Wait()
			b.StopTimer()
			m.Stop()
			for _, h := range hs {
				h.Close(b)
			}
		}
		benchkit.ReportPerSpan(b, &m, b.N*cores*rings[0].Spans())
	})
}
