package tenantguardprocessor

// Hostile input at scale (see hostile_test.go): ten thousand tenants in a
// trace, deep nesting, a hundred thousand spans in one request, and the
// heap the detector keeps for them.

import (
	"bytes"
	"fmt"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/detector"
)

// TestHostileTenThousandTenants: one trace naming 10,000 tenants, as
// 10,000 spans in one request, as one span whose tenant attribute is a
// 10,000-element array, and as 100 requests of 100 spans. Findings list at
// most 255 tenants, and the detector's memory does not grow with the
// number of tenants.
func TestHostileTenThousandTenants(t *testing.T) {
	const n = 10_000
	cfg := hostileConfig(t)
	tenant := func(i int) string { return fmt.Sprintf("tenant-%05d", i) }

	spans := []hSpan{{trace: hTrace(1), id: hID(1), service: "gateway", name: "GET /", attrs: hTenant(tenant(0))}}
	for i := 1; i < n; i++ {
		spans = append(spans, hSpan{trace: hTrace(1), id: hID(uint64(i + 1)), parent: hID(1), service: "svc", name: "op", attrs: hTenant(tenant(i))})
	}
	manySpans := hRequest(spans...)
	array := make([]any, n)
	for i := range array {
		array[i] = tenant(i)
	}
	oneSpan := hRequest(hSpan{trace: hTrace(2), id: hID(1), service: "gateway", name: "GET /", attrs: map[string]any{"tenant.id": array}})
	// 100 requests of 100 spans: judged again after each.
	streamed := []ptrace.Traces{}
	for r := 0; r < n/100; r++ {
		var req []hSpan
		for i := r * 100; i < (r+1)*100; i++ {
			parent := hID(1)
			if i == 0 {
				parent = hID(0)
			}
			req = append(req, hSpan{trace: hTrace(3), id: hID(uint64(i + 1)), parent: parent, service: "svc", name: "op", attrs: hTenant(tenant(i))})
		}
		streamed = append(streamed, hRequest(req...))
	}

	var run *hostileRun
	withTimeout(t, 2*time.Minute, "10,000 tenants", func() {
		run = runHostile(t, cfg, append([]ptrace.Traces{manySpans, oneSpan}, streamed...)...)
	})
	for _, f := range run.findings {
		if len(f.Tenants) > 255 {
			t.Fatalf("%s finding for trace %s lists %d tenants, at most 255", f.Rule, f.TraceID, len(f.Tenants))
		}
	}
	for _, tr := range []pcommon.TraceID{hTrace(1), hTrace(3)} {
		f := run.mustLatest(t, tr, detector.RuleCrossTenantTrace)
		if len(f.Tenants) != 255 || f.SpanCount != n {
			t.Errorf("trace %s: %d tenants over %d spans, want the first 255 over %d", tr, len(f.Tenants), f.SpanCount, n)
		}
	}
	f := run.mustLatest(t, hTrace(2), detector.RuleTenantMismatch)
	if len(f.Tenants) != 255 {
		t.Errorf("array of %d tenants: mismatch finding lists %d tenants, want 255", n, len(f.Tenants))
	}
	for _, ev := range run.evidence {
		if len(ev.Tenants) > 255 {
			t.Errorf("journal record %s lists %d tenants", ev.LeakID, len(ev.Tenants))
		}
	}

	// Memory: what the detector keeps of 10,000-tenant traces is bounded by
	// its caps, not by the number of tenants. Measured as the live heap
	// after the requests (built beforehand) are read, findings not kept.
	requests := append([]ptrace.Traces{manySpans, oneSpan}, streamed...)
	retained := hostileRetainedHeap(t, cfg, requests)
	t.Logf("detector state after 10,000-tenant traces: %d KiB", retained>>10)
	if retained > 4<<20 {
		t.Errorf("detector retains %d KiB after 10,000-tenant traces, want under 4 MiB", retained>>10)
	}

	// Allocations for one more span of a full trace do not grow with it.
	if !hostileRace() {
		d, ex, err := NewDetector(cfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		hostileFeed(d, ex, manySpans)
		extra := make([]ptrace.Traces, 101) // AllocsPerRun runs once more to warm up
		for i := range extra {
			extra[i] = hRequest(hSpan{trace: hTrace(1), id: hID(uint64(n + 1 + i)), parent: hID(1), service: "svc", name: "op", attrs: hTenant(tenant(n + i))})
		}
		i := 0
		allocs := testing.AllocsPerRun(100, func() {
			hostileFeed(d, ex, extra[i])
			i++
		})
		t.Logf("allocations per extra span of a 10,000-tenant trace: %.0f", allocs)
		if allocs > 300 {
			t.Errorf("%.0f allocations per extra span of a 10,000-tenant trace", allocs)
		}
	}
}

func hostileFeed(d *detector.Detector, ex *Extractor, tds ...ptrace.Traces) {
	for _, td := range tds {
		b := d.NewBatch()
		ex.Feed(b, td)
		b.Close()
	}
}

// hostileRetainedHeap is the live heap a detector holds after reading the
// requests (which exist before and after the measurement).
func hostileRetainedHeap(t *testing.T, cfg *Config, tds []ptrace.Traces) int64 {
	t.Helper()
	var before, after runtime.MemStats
	d, ex, err := NewDetector(cfg, func(detector.Finding) {}, func(dc *detector.Config) { dc.Shards = 1 })
	if err != nil {
		t.Fatal(err)
	}
	// After the detector is made: what it allocates for max_traces at once
	// (its entries and their span records) depends on the configuration,
	// not on the traces.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	hostileFeed(d, ex, tds...)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(d)
	runtime.KeepAlive(ex)
	runtime.KeepAlive(tds)
	return int64(after.HeapAlloc) - int64(before.HeapAlloc)
}

func hostileRace() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// TestHostileDeepNesting: tenant attributes holding arrays and maps nested
// 10,000 deep are rejected (a tenant is a string or a number), without
// recursion, and forwarded unchanged.
func TestHostileDeepNesting(t *testing.T) {
	const depth = 10_000
	cfg := hostileConfig(t)
	tr := hTrace(1)
	nest := func(m pcommon.Map) {
		sl := m.PutEmptySlice("tenant.id")
		for range depth {
			sl = sl.AppendEmpty().SetEmptySlice()
		}
		mp := m.PutEmptyMap("tenant_id")
		for range depth {
			mp = mp.PutEmptyMap("tenant_id")
		}
		deep := m.PutEmptySlice("url.path")
		for range depth {
			deep = deep.AppendEmpty().SetEmptySlice()
		}
	}
	td := hRequest(
		hSpan{trace: tr, id: hID(1), service: "gateway", name: "nested", set: nest},
		hSpan{trace: tr, id: hID(2), parent: hID(1), service: "svc", name: "acme", attrs: hTenant("acme")},
	)
	var run *hostileRun
	withTimeout(t, time.Minute, "deep nesting", func() { run = runHostile(t, cfg, td) })
	if run.stats.TenantsRejected != 2 {
		t.Errorf("%d tenant values rejected, want 2 (the array's only element, the map)", run.stats.TenantsRejected)
	}
	if run.stats.SpansWithoutTenant != 1 || len(run.findings) != 0 {
		t.Errorf("%d spans without tenant, %d findings; want 1 and none", run.stats.SpansWithoutTenant, len(run.findings))
	}
	// Over the wire: the protobuf unmarshaler may refuse such depth (the
	// receiver answers 400); what it accepts must be the same request.
	b := fzProto(t, td)
	if back, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b); err != nil {
		t.Logf("protobuf, %d levels: refused by the unmarshaler: %v", depth, err)
	} else if !bytes.Equal(fzProto(t, back), b) {
		t.Error("protobuf round trip changed the request")
	}
	js, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(js); err != nil {
		t.Logf("JSON, %d levels: refused by the unmarshaler: %v", depth, err)
	} else if run := runHostile(t, cfg, back); run.stats.TenantsRejected != 2 {
		t.Errorf("from JSON: %d tenant values rejected, want 2", run.stats.TenantsRejected)
	}
}

// TestHostileHundredThousandSpans: one request of 100,000 spans of one
// trace. max_spans_per_trace caps the span records (the rest are counted as
// over the cap), every span still counts, and evidence stays capped.
func TestHostileHundredThousandSpans(t *testing.T) {
	const n = 100_000
	cfg := hostileConfig(t)
	tr := hTrace(1)
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "fanout")
	ss := rs.ScopeSpans().AppendEmpty().Spans()
	ss.EnsureCapacity(n)
	for i := uint64(1); i <= n; i++ {
		sp := ss.AppendEmpty()
		sp.SetTraceID(tr)
		sp.SetSpanID(hID(i))
		sp.SetName("op")
		if i == 1 {
			sp.Attributes().PutStr("tenant.id", "acme")
			continue
		}
		sp.SetParentSpanID(hID(1))
		if i%10 == 0 {
			sp.Attributes().PutStr("tenant.id", "globex")
		}
	}
	var run *hostileRun
	withTimeout(t, 2*time.Minute, "100,000 spans", func() { run = runHostile(t, cfg, td) })
	if run.stats.Spans != n {
		t.Errorf("read %d spans, want %d", run.stats.Spans, n)
	}
	if want := uint64(n - cfg.MaxSpansPerTrace); run.stats.SpansOverCap != want {
		t.Errorf("%d spans over the cap, want %d", run.stats.SpansOverCap, want)
	}
	f := run.mustLatest(t, tr, detector.RuleCrossTenantTrace)
	if f.SpanCount != n || len(f.Spans) > cfg.MaxEvidenceSpans || len(f.Edges) > cfg.MaxSpansPerTrace {
		t.Errorf("span count %d (want %d), %d evidence spans (at most %d), %d edges (at most %d)",
			f.SpanCount, n, len(f.Spans), cfg.MaxEvidenceSpans, len(f.Edges), cfg.MaxSpansPerTrace)
	}
	if len(f.Edges) == 0 || f.Status != detector.StatusClosed {
		t.Errorf("%d edges, status %s; want the acme→globex edges, closed", len(f.Edges), f.Status)
	}
}

// BenchmarkHostileSpanOnDeepTrace is the cost of one more one-span request
// on a trace a client shaped to be expensive to judge: 500 tenantless spans
// in a parent ring (or a chain) with 499 tenant spans hanging off it. Every
// request that touches a trace re-judges it, so this is the span path's
// cost per request; finding the tenant ancestors is linear in the spans
// kept (it was quadratic: ~70 ms a request for the ring).
func BenchmarkHostileSpanOnDeepTrace(b *testing.B) {
	for _, shape := range []string{"ring", "chain"} {
		b.Run(shape, func(b *testing.B) {
			cfg := createDefaultConfig().(*Config)
			d, ex, err := NewDetector(cfg, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			tr := hTrace(1)
			spans := []hSpan{{trace: tr, id: hID(999), service: "gateway", name: "root", attrs: hTenant("root")}}
			for i := uint64(0); i < 500; i++ {
				parent := hID(1000 + (i+1)%500) // ring
				if shape == "chain" {
					parent = hID(999 + i)
				}
				spans = append(spans, hSpan{trace: tr, id: hID(1000 + i), parent: parent, service: "proxy", name: "hop"})
			}
			for i := uint64(0); i < 499; i++ {
				spans = append(spans, hSpan{trace: tr, id: hID(1 + i), parent: hID(1000 + i%500), service: "svc", name: "op", attrs: hTenant(fmt.Sprint("t", i%2))})
			}
			hostileFeed(d, ex, hRequest(spans...))
			reqs := make([]ptrace.Traces, b.N)
			for i := range reqs {
				reqs[i] = hRequest(hSpan{trace: tr, id: hID(100_000 + uint64(i)), parent: hID(1000), service: "svc", name: "op", attrs: hTenant("t1")})
			}
			b.ResetTimer()
			for i := range reqs {
				hostileFeed(d, ex, reqs[i])
			}
		})
	}
}
