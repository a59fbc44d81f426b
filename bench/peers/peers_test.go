package peers

import (
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/groupbytraceprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor"

	"github.com/tenantguard/tenantguard/bench/benchkit"
)

var peers = []string{benchkit.TailSampling, benchkit.GroupByTrace}

// newPeer builds a peer configured as the nearest equivalent of tenantguard:
//   - groupbytrace holds every span of a trace for wait_duration, then hands
//     the whole trace on (where a cross-tenant check over it would run);
//   - tail_sampling with one string_attribute policy on tenant.id that every
//     trace matches, so that it forwards everything, as tenantguard does.
//
// num_traces is far above what is in flight, so neither drops traces.
func newPeer(tb testing.TB, kind string, wait time.Duration, tenants int) *benchkit.Harness {
	switch kind {
	case benchkit.GroupByTrace:
		return benchkit.New(tb, kind, benchkit.Options{
			Factory: groupbytraceprocessor.NewFactory(), Async: true, Wait: wait,
			Config: map[string]any{"wait_duration": wait.String(), "num_traces": 1_000_000, "num_workers": 1},
		})
	case benchkit.TailSampling:
		values := make([]any, tenants)
		for i := range values {
			values[i] = benchkit.TenantName(i)
		}
		cfg := map[string]any{
			"decision_wait": wait.String(),
			"num_traces":    1_000_000,
			"policies": []any{map[string]any{
				"name": "tenant", "type": "string_attribute",
				"string_attribute": map[string]any{"key": "tenant.id", "values": values},
			}},
		}
		if wait < time.Minute {
			// Sized for the throughput runs. Not when holding traces for the
			// heap measurement: each second of decision_wait preallocates a
			// batch of this many ids, memory that grows with the wait, not
			// with the traces held.
			cfg["expected_new_traces_per_sec"] = 100_000
		}
		return benchkit.New(tb, kind, benchkit.Options{
			Factory: tailsamplingprocessor.NewFactory(), Async: true, Wait: wait, Config: cfg,
		})
	}
	tb.Fatalf("unknown peer %q", kind)
	return nil
}

// BenchmarkCompare: the peers on the reference load (see ../consume_test.go).
//
//	go test -run '^$' -bench '^BenchmarkCompare$' -benchtime 600x -count 6
func BenchmarkCompare(b *testing.B) {
	for _, bare := range []bool{false, true} {
		shape := benchkit.DefaultShape()
		shape.Bare = bare
		for _, kind := range peers {
			b.Run(benchkit.Name(kind, shape), func(b *testing.B) {
				h := newPeer(b, kind, benchkit.Wait(kind), shape.Tenants)
				ring := benchkit.NewRing(shape)
				benchkit.RunThroughput(b, h, ring, len(ring.Requests))
			})
		}
	}
}

// BenchmarkCompareFresh: the peers on the fresh-state load (see
// ../consume_test.go), a new processor per iteration.
//
//	go test -run '^$' -bench '^BenchmarkCompareFresh$' -benchtime 2x -count 6
func BenchmarkCompareFresh(b *testing.B) {
	shape := benchkit.FreshShape()
	ring := benchkit.NewRing(shape)
	for _, kind := range peers {
		b.Run(benchkit.Name(kind, shape), func(b *testing.B) {
			benchkit.RunFresh(b, ring, func(b *testing.B) *benchkit.Harness {
				return newPeer(b, kind, benchkit.Wait(kind), shape.Tenants)
			})
		})
	}
}

// BenchmarkLiveHeap: the peers' live heap per in-flight trace, waits long
// enough that nothing is released while measuring, on the reference load's
// spans (semconv and bare) and on the fresh-state load's.
//
//	go test -run '^$' -bench '^BenchmarkLiveHeap$' -benchtime 1x -count 6
func BenchmarkLiveHeap(b *testing.B) {
	const traces = 20_000
	def, bare := benchkit.DefaultShape(), benchkit.DefaultShape()
	bare.Bare = true
	for _, shape := range []benchkit.Shape{def, bare, benchkit.FreshShape()} {
		for _, kind := range peers {
			b.Run(benchkit.Name(kind, shape), func(b *testing.B) {
				benchkit.LiveHeapBench(b, shape, traces, func(b *testing.B) *benchkit.Harness {
					return newPeer(b, kind, benchkit.HeldWait, shape.Tenants)
				})
			})
		}
	}
}

// BenchmarkDetectionLatency: how long the leaking trace takes to leave each
// peer whole, with the waits of the comparison.
//
//	go test -run '^$' -bench '^BenchmarkDetectionLatency$' -benchtime 5x -count 3
func BenchmarkDetectionLatency(b *testing.B) {
	shape := benchkit.DefaultShape()
	shape.Interleave = 1
	for _, kind := range peers {
		b.Run("proc="+kind+"/wait="+benchkit.Wait(kind).String(), func(b *testing.B) {
			h := newPeer(b, kind, benchkit.Wait(kind), shape.Tenants)
			benchkit.ReleaseLatency(b, h, benchkit.NewRing(shape))
		})
	}
}
