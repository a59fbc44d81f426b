package bench

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/bench/benchkit"
)

// BenchmarkDurableAck: what durable acknowledgement costs. A request that
// raises a finding returns only once the finding is in the journal
// (written and fsynced); requests waiting at the same time share one write
// and one fsync. The whole processor (journal in a temp dir, log notifier
// on), the reference load without interleaving (each trace whole in one
// request), clean (leak=0) and 1% leaking (about one new finding per
// request), from 1 and from 8 concurrent senders:
//
//   - ns/req: wall time of one ConsumeTraces, as the sender sees it;
//   - fsyncs/req: journal writes (one fsync each) per request;
//   - findings/req: finding versions raised per request;
//   - fsyncs/finding: below 1 when concurrent requests shared an fsync.
//
// The fsync cost per request is ns/req of leak=0.01 minus ns/req of leak=0
// at the same senders; per finding, that divided by findings/req.
//
//	go test -run '^$' -bench '^BenchmarkDurableAck$' -benchtime 400x -count 3
func BenchmarkDurableAck(b *testing.B) {
	for _, leak := range []float64{0, 0.01} {
		for _, senders := range []int{1, 8} {
			shape := benchkit.DefaultShape()
			shape.LeakRate, shape.Interleave = leak, 1
			b.Run(fmt.Sprintf("leak=%g/senders=%d", leak, senders), func(b *testing.B) {
				benchDurableAck(b, shape, senders)
			})
		}
	}
}

func benchDurableAck(b *testing.B, shape benchkit.Shape, senders int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	endpoint := ln.Addr().String()
	ln.Close()
	h := newTenantguard(b, tgOpts{metrics: endpoint, name: "durable"})
	rings := make([]*benchkit.Ring, senders)
	for i := range rings {
		s := shape
		s.Worker = uint16(i + 1)
		rings[i] = benchkit.NewRing(s)
	}
	// Warm the state (a clean ring: its findings would be written before
	// the measurement starts and count in it otherwise).
	warm := shape
	warm.LeakRate = 0
	wr := benchkit.NewRing(warm)
	for i := range benchkit.WarmFor(warm, 100_000) {
		if i > 0 && i%len(wr.Requests) == 0 {
			wr.Renew()
		}
		h.Consume(b, wr.Requests[i%len(wr.Requests)])
	}
	before := scrapeTenantguard(b, endpoint)
	var claimed atomic.Int32
	var requests atomic.Int64
	procs := runtime.GOMAXPROCS(0)
	// RunParallel starts parallelism×GOMAXPROCS goroutines.
	b.SetParallelism((senders + procs - 1) / procs)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := int(claimed.Add(1) - 1)
		if id >= senders {
			return
		}
		requests.Add(feedRing(b, pb, h, rings[id]))
	})
	b.StopTimer()
	after := scrapeTenantguard(b, endpoint)
	reqs := float64(requests.Load())
	writes := after["writes"] - before["writes"]
	findings := after["findings"] - before["findings"]
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())*float64(senders)/reqs, "ns/req")
	b.ReportMetric(writes/reqs, "fsyncs/req")
	b.ReportMetric(findings/reqs, "findings/req")
	if findings > 0 {
		b.ReportMetric(writes/findings, "fsyncs/finding")
	}
}

// scrapeTenantguard reads the journal writes that succeeded and the finding
// versions stored so far from /metrics.
func scrapeTenantguard(tb testing.TB, endpoint string) map[string]float64 {
	tb.Helper()
	// Both counters move before the request that raised a finding returns.
	resp, err := http.Get("http://" + endpoint + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var key string
		switch {
		case strings.HasPrefix(line, "tenantguard_store_writes_total{") && strings.Contains(line, `result="ok"`) &&
			strings.Contains(line, `store="journal"`):
			key = "writes"
		case strings.HasPrefix(line, "tenantguard_findings_total{"):
			key = "findings"
		default:
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			tb.Fatalf("metrics line %q: %v", line, err)
		}
		out[key] += v
	}
	return out
}

// BenchmarkDurabilityCost: what the disk adds to a leaking request, on the
// reference load (1% of traces crossing, interleave 2, default rules),
// taken apart. Each variant adds one thing to the one before:
//
//   - journal=disk/leak=0: clean traffic, nothing to write;
//
//   - journal=tmpfs/leak=0.01: the leak path (rules, evidence, the journal's
//     write, the hand-off to the evidence worker and back) with an fsync
//     that costs nothing (benchkit.MemDir);
//
//   - journal=tmpfs+idle/leak=0.01: the same, then 1 ms asleep after each
//     request that grew the journal, about what a request waits for its
//     fsync on this disk: what the wait alone costs the next request (its
//     caches cool while the core idles), without the fsync's own CPU;
//
//   - journal=disk/leak=0.01: the reference figure, the fsync on a disk.
//
//     go test -run '^$' -bench '^BenchmarkDurabilityCost$' -benchtime 2000x -count 4
func BenchmarkDurabilityCost(b *testing.B) {
	variants := []struct {
		journal string
		leak    float64
	}{{"disk", 0}, {"tmpfs", 0.01}, {"tmpfs+idle", 0.01}, {"disk", 0.01}}
	for _, v := range variants {
		b.Run(fmt.Sprintf("journal=%s/leak=%g", v.journal, v.leak), func(b *testing.B) {
			shape := benchkit.DefaultShape()
			shape.LeakRate = v.leak
			dir := ""
			if v.journal != "disk" {
				dir = benchkit.MemDir(b)
			}
			h := newTenantguard(b, tgOpts{journal: dir})
			if v.journal == "tmpfs+idle" {
				h.AfterConsume = idleAfterWrites(b, filepath.Join(dir, "leaks.jsonl"), time.Millisecond)
			}
			benchkit.RunThroughput(b, h, benchkit.NewRing(shape), benchkit.WarmFor(shape, 100_000))
		})
	}
}

// idleAfterWrites sleeps for d after each request that grew the journal at
// path, and counts those requests in idles/req.
func idleAfterWrites(b *testing.B, path string, d time.Duration) func() {
	var last int64
	var idles, reqs int
	b.Cleanup(func() {
		if reqs > 0 {
			b.ReportMetric(float64(idles)/float64(reqs), "idles/req")
		}
	})
	return func() {
		reqs++
		st, err := os.Stat(path)
		if err != nil || st.Size() == last {
			return
		}
		last = st.Size()
		idles++
		time.Sleep(d)
	}
}
