package bench

import (
	"reflect"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/bench/benchkit"
	"github.com/tenantguard/tenantguard/detector"
	tenantguard "github.com/tenantguard/tenantguard/processor/tenantguardprocessor"
)

// feeder is what the processor does with a request: read its spans into a
// detector batch (processor.Extractor.Feed).
type feeder interface {
	Feed(*detector.Batch, ptrace.Traces) int
}

// newFeeder builds the processor's own Extractor for det. Its constructor
// takes the tenant keys today and the detector once the detection-depth work
// lands; reflection picks whichever it is, so this file compiles with both.
func newFeeder(tb testing.TB, det *detector.Detector, keys []string) feeder {
	fn := reflect.ValueOf(tenantguard.NewExtractor)
	var arg reflect.Value
	switch in := fn.Type().In(0); {
	case in == reflect.TypeOf(keys):
		arg = reflect.ValueOf(keys)
	case in == reflect.TypeOf(det):
		arg = reflect.ValueOf(det)
	default:
		tb.Skipf("processor.NewExtractor takes %s: update newFeeder", in)
	}
	f, ok := fn.Call([]reflect.Value{arg})[0].Interface().(feeder)
	if !ok {
		tb.Skip("processor.Extractor has no Feed(*detector.Batch, ptrace.Traces) int: update newFeeder")
	}
	return f
}

// BenchmarkDetectionLatency: from the moment the request holding the
// crossing span is handed over to the moment the finding is out.
//
//   - proc=tenantguard/at=queue: the detector with the processor's own
//     extractor, at full speed on the reference load, state full; the
//     finding is timed when the detector hands it to its sink (the
//     processor's sink only pushes it onto the evidence queue).
//   - proc=tenantguard/at=journal: the whole processor, one leaking request
//     at a time; timed when ConsumeTraces returns, which for a request that
//     raised a finding is after the journal append and its fsync (durable
//     acknowledgement).
//
// The peers' half (when the leaking trace leaves them whole) is in
// bench/peers.
//
//	go test -run '^$' -bench '^BenchmarkDetectionLatency$' -benchtime 20x -count 6
func BenchmarkDetectionLatency(b *testing.B) {
	b.Run("proc=tenantguard/at=queue", benchLatencyDetector)
	b.Run("proc=tenantguard/at=journal", benchLatencyJournal)
}

func benchLatencyDetector(b *testing.B) {
	shape := benchkit.DefaultShape()
	var (
		mu    sync.Mutex
		found []time.Time
	)
	cfg := detector.DefaultConfig()
	cfg.IdleWindow = benchkit.TenantguardIdle
	det, err := detector.New(cfg, func(f detector.Finding) {
		if f.New && f.Rule == detector.RuleCrossTenantTrace {
			now := time.Now()
			mu.Lock()
			found = append(found, now)
			mu.Unlock()
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	ext := newFeeder(b, det, cfg.TenantKeys)
	ring := benchkit.NewRing(shape)
	pos := 0
	var samples []time.Duration
	feed := func(record bool) {
		if pos > 0 && pos%len(ring.Requests) == 0 {
			b.StopTimer()
			ring.Renew()
			b.StartTimer()
		}
		td := ring.Requests[pos%len(ring.Requests)]
		mu.Lock()
		found = found[:0]
		mu.Unlock()
		t0 := time.Now()
		batch := det.NewBatch()
		ext.Feed(batch, td)
		batch.Close()
		if record {
			mu.Lock()
			for _, t := range found {
				samples = append(samples, t.Sub(t0))
			}
			mu.Unlock()
		}
		pos++
	}
	// Full state first: the latency that matters is the one under load.
	for range benchkit.WarmFor(shape, cfg.MaxTraces) {
		feed(false)
	}
	b.ResetTimer()
	for range max(b.N, len(ring.Requests)) {
		feed(true)
	}
	b.StopTimer()
	benchkit.ReportLatencies(b, samples, "ns-to-finding")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(b.N, len(ring.Requests))*shape.SpansPerRequest()), "ns/span")
}

func benchLatencyJournal(b *testing.B) {
	shape := benchkit.DefaultShape()
	shape.Interleave = 1
	h := newTenantguard(b, tgOpts{})
	ring := benchkit.NewRing(shape)
	var samples []time.Duration
	for i := range b.N {
		td := ring.Requests[i%len(ring.Requests)]
		if i > 0 && i%len(ring.Requests) == 0 {
			ring.Renew()
		}
		t0 := time.Now()
		h.Consume(b, td)
		if len(ring.Leaks[i%len(ring.Requests)]) > 0 {
			samples = append(samples, time.Since(t0))
		}
	}
	b.StopTimer()
	benchkit.ReportLatencies(b, samples, "ns-to-finding")
}
