package tenantguardprocessor

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"
)

// soakRequest builds 100 ten-span traces with fresh trace ids; every
// hundredth trace leaks from acme into globex.
func soakRequest(seq uint64) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "shop")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	for tr := range 100 {
		id := pcommon.TraceID{byte(seq >> 40), byte(seq >> 32), byte(seq >> 24), byte(seq >> 16), byte(seq >> 8), byte(seq), byte(tr), 15: 1}
		for s := range 10 {
			sp := spans.AppendEmpty()
			sp.SetTraceID(id)
			sp.SetSpanID(pcommon.SpanID{byte(tr), byte(s), 7: 1})
			if s > 0 {
				sp.SetParentSpanID(pcommon.SpanID{byte(tr), byte(s - 1), 7: 1})
			}
			sp.SetName("op")
			tenant := "acme"
			if s == 9 && tr == 0 {
				tenant = "globex"
			}
			sp.Attributes().PutStr("tenant.id", tenant)
		}
	}
	return td
}

type soakSample struct {
	goroutines int
	heap       uint64
	fds        int
}

func sampleProcess() soakSample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds := -1
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = len(ents)
	}
	return soakSample{goroutines: runtime.NumGoroutine(), heap: ms.HeapAlloc, fds: fds}
}

// TestSoak drives the processor at a fixed rate with traces that come and
// go, and checks that goroutines, heap and file descriptors stay flat once
// the state has warmed up. TENANTGUARD_SOAK=3m runs it for longer; CI runs
// a few seconds of it.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
	duration := 6 * time.Second
	if v := os.Getenv("TENANTGUARD_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("TENANTGUARD_SOAK=%q: %v", v, err)
		}
		duration = d
	}
	cfg := testConfig(t)
	cfg.IdleWindow = 500 * time.Millisecond
	cfg.LateWindow = time.Second
	cfg.Alerts.Log.Enabled = false
	proc, err := NewFactory().CreateTraces(context.Background(), processortest.NewNopSettings(Type), cfg, consumertest.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := proc.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()

	// 20 requests of 1,000 spans a second: 20,000 spans/s, bounded in count.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var seq uint64
	var warm, mid soakSample
	for now := range tick.C {
		elapsed := now.Sub(start)
		if elapsed >= duration {
			break
		}
		seq++
		if err := proc.ConsumeTraces(context.Background(), soakRequest(seq)); err != nil {
			t.Fatal(err)
		}
		switch {
		case warm.goroutines == 0 && elapsed >= duration/3:
			warm = sampleProcess()
		case mid.goroutines == 0 && elapsed >= 2*duration/3:
			mid = sampleProcess()
		}
	}
	end := sampleProcess()
	t.Logf("%d requests (%d spans) in %s; warm %+v, two thirds %+v, end %+v",
		seq, seq*1000, time.Since(start).Round(time.Millisecond), warm, mid, end)
	if warm.goroutines == 0 {
		t.Fatal("the soak ran too briefly to sample")
	}
	if end.goroutines > warm.goroutines+2 {
		t.Errorf("goroutines grew from %d to %d", warm.goroutines, end.goroutines)
	}
	if end.fds > warm.fds+2 {
		t.Errorf("file descriptors grew from %d to %d", warm.fds, end.fds)
	}
	// State turns over every idle window; a leak would grow with the
	// number of traces seen, i.e. double between a third and the end.
	if end.heap > warm.heap+warm.heap/2+8<<20 {
		t.Errorf("heap grew from %d to %d bytes", warm.heap, end.heap)
	}
}
