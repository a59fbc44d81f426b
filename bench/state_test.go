package bench

import (
	"fmt"
	"testing"

	"github.com/tenantguard/tenantguard/bench/benchkit"
)

// BenchmarkStateSize: the reference load, clean and 1% leaking, with the
// state held for max_traces 100,000 (the reference), 20,000 and 2,000. At
// line rate every new trace pushes the oldest out of memory whatever the
// limit, so the work per span is the same; what changes is how much of the
// state the caches hold (a state of 2,000 traces and their tombs is a few
// MiB, most of it in this machine's 2 MiB L2). The gap between the limits
// is what the state's cache misses cost, and the 2,000 figure what the
// reference load would cost if its state never missed the cache
// (BENCHMARKS.md, section 11).
//
//	go test -run '^$' -bench '^BenchmarkStateSize$' -benchtime 2000x -count 4
func BenchmarkStateSize(b *testing.B) {
	for _, leak := range []float64{0, 0.01} {
		for _, limit := range []int{100_000, 20_000, 2_000} {
			shape := benchkit.DefaultShape()
			shape.LeakRate = leak
			b.Run(fmt.Sprintf("leak=%g/max_traces=%d", leak, limit), func(b *testing.B) {
				h := newTenantguard(b, tgOpts{maxTraces: limit})
				benchkit.RunThroughput(b, h, benchkit.NewRing(shape), benchkit.WarmFor(shape, limit))
			})
		}
	}
}
