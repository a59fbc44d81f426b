package detector_test

import (
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

const (
	benchTracesPerBatch = 100
	benchSpansPerTrace  = 10
	benchSpansPerBatch  = benchTracesPerBatch * benchSpansPerTrace
)

// benchFeed is the steady state of a collector: batches of 100 traces of
// 10 single-tenant spans, fresh trace ids every batch, the clock moving 1ms
// per batch and the idle sweep running after every batch, so that about 100
// batches (10,000 traces) are live and state is recycled as fast as it is
// created.
type benchFeed struct {
	d     *detector.Detector
	clock *fakeClock
	spans []detector.Span
	next  int
}

func newBenchFeed(tb testing.TB) *benchFeed {
	clock := newFakeClock()
	cfg := detector.DefaultConfig()
	cfg.Now = clock.Now
	cfg.IdleWindow = 100 * time.Millisecond
	cfg.Shards = 4
	d, err := detector.New(cfg, func(detector.Finding) { tb.Fatal("single-tenant traces produced a finding") })
	if err != nil {
		tb.Fatal(err)
	}
	f := &benchFeed{d: d, clock: clock, spans: make([]detector.Span, benchSpansPerBatch)}
	tenants := make([]detector.RawTenant, benchTracesPerBatch)
	for t := range benchTracesPerBatch {
		tenants[t] = detector.RawTenant{Value: detector.StringValue(string(rune('a'+t%26)) + "-tenant")}
	}
	services := []string{"gateway", "orders", "billing", "search", "db"}
	for t := range benchTracesPerBatch {
		for s := range benchSpansPerTrace {
			sp := &f.spans[t*benchSpansPerTrace+s]
			sp.SpanID = sid(s + 1)
			sp.ParentID = sid(s) // a chain; sid(0) makes span 1 the root
			sp.Service = services[s%len(services)]
			sp.Name = "op"
			sp.Tenants = tenants[t : t+1]
		}
	}
	return f
}

func (f *benchFeed) batch() {
	for t := range benchTracesPerBatch {
		id := tid(f.next)
		f.next++
		for s := range benchSpansPerTrace {
			f.spans[t*benchSpansPerTrace+s].TraceID = id
		}
	}
	b := f.d.NewBatch()
	for i := range f.spans {
		b.Add(&f.spans[i])
	}
	b.Close()
	f.clock.Advance(time.Millisecond)
	f.d.Sweep()
}

func BenchmarkBatch(b *testing.B) {
	f := newBenchFeed(b)
	for range 300 { // reach the steady state: full shards, warm free lists and interners
		f.batch()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		f.batch()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchSpansPerBatch), "ns/span")
	// allocs/op is per batch of 1,000 spans; divide to read it per span.
}

// TestSteadyStateAllocations keeps the hot path allocation-free per span once
// state is warm. The bound is loose (maps may still grow now and then); it
// catches a per-span allocation creeping in, not noise.
func TestSteadyStateAllocations(t *testing.T) {
	if raceEnabled() {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items)")
	}
	if testing.Short() {
		t.Skip("short")
	}
	f := newBenchFeed(t)
	for range 300 {
		f.batch()
	}
	perBatch := testing.AllocsPerRun(200, f.batch)
	perSpan := perBatch / benchSpansPerBatch
	t.Logf("steady state: %.2f allocs per batch of %d spans (%.4f per span)", perBatch, benchSpansPerBatch, perSpan)
	if perSpan > 0.05 {
		t.Errorf("%.4f allocations per span in steady state, want about 0", perSpan)
	}
}
