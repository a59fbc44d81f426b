package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// hostileTraceSeq numbers the traces of serviceSpans, so every span is a
// trace of its own.
var hostileTraceSeq atomic.Uint64

// serviceSpans is one request with one untenanted span per service name,
// each in a resource of its own (service.name is a resource attribute).
func serviceSpans(services ...string) ptrace.Traces {
	td := ptrace.NewTraces()
	now := time.Now()
	for _, svc := range services {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", svc)
		sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		var tid pcommon.TraceID
		binary.BigEndian.PutUint64(tid[8:], hostileTraceSeq.Add(1))
		tid[0] = 0x5e
		sp.SetTraceID(tid)
		sp.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, 8})
		sp.SetName("op")
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Millisecond)))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
	}
	return td
}

// serviceSeries scrapes /metrics (HTTP 200 and parsed by the Prometheus
// text parser, or the test fails) and returns tenantguard_service_spans_total
// by service label. Every label value must be valid UTF-8 and bounded, and
// the series at most maxServices plus _other.
func serviceSeries(t *testing.T, c *collector, step string, maxServices int) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for key, v := range c.scrapeMetrics(t) {
		name, labels, _ := strings.Cut(key, "{")
		for _, l := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
			if !utf8.ValidString(l) || len(l) > 300 {
				t.Fatalf("%s: %s has a label that is not valid UTF-8 or longer than 256 bytes: %.80q", step, name, l)
			}
		}
		if name != "tenantguard_service_spans_total" {
			continue
		}
		for _, l := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
			if svc, ok := strings.CutPrefix(l, "service="); ok {
				out[svc] = v
			}
		}
	}
	if len(out) > maxServices+1 {
		t.Fatalf("%s: %d service series, want at most %d and _other", step, len(out), maxServices)
	}
	return out
}

// TestHostileServiceNamesCannotBreakMetrics sends the service names an
// attacker (or a broken client) would, over every OTLP transport, and
// scrapes /metrics after each: invalid UTF-8 used to make every later scrape
// answer 500, and a flood of invented names used to fill the per-service
// table for good, so a real service that came afterwards had no series.
func TestHostileServiceNamesCannotBreakMetrics(t *testing.T) {
	const (
		maxServices = 50
		serviceIdle = 3 * time.Second
	)
	c := startCollector(t, withMetricsYAML(fmt.Sprintf("max_services: %d\nservice_idle: %s", maxServices, serviceIdle)))
	grpcClient := dialScaleOut(t, c.grpcAddr)
	ctx := context.Background()

	serviceSeries(t, c, "at start", maxServices)

	// Invalid UTF-8, over OTLP/HTTP protobuf, OTLP/HTTP JSON and OTLP/gRPC.
	c.postOTLP(t, serviceSpans("proto-bad-\xff\xfe"))
	if got := serviceSeries(t, c, "invalid UTF-8 over HTTP protobuf", maxServices); got["proto-bad-\uFFFD"] != 1 {
		t.Fatalf("want service \"proto-bad-\\uFFFD\" with 1 span, got %v", got)
	}
	jsonBody := []byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-bad-` + "\xc3\x28" + `"}}]},` +
		`"scopeSpans":[{"spans":[{"traceId":"5e000000000000000000000000ffff01","spanId":"0102030405060708","name":"op"}]}]}]}`)
	c.post(t, "application/json", jsonBody)
	if got := serviceSeries(t, c, "invalid UTF-8 over HTTP JSON", maxServices); got["json-bad-\uFFFD("] != 1 {
		t.Fatalf("want service \"json-bad-\\uFFFD(\" with 1 span, got %v", got)
	}
	if _, err := grpcClient.Export(ctx, ptraceotlp.NewExportRequestFromTraces(serviceSpans("grpc-bad-\x80"))); err != nil {
		t.Fatalf("OTLP/gRPC export: %v", err)
	}
	if got := serviceSeries(t, c, "invalid UTF-8 over gRPC", maxServices); got["grpc-bad-\uFFFD"] != 1 {
		t.Fatalf("want service \"grpc-bad-\\uFFFD\" with 1 span, got %v", got)
	}

	// A 1 MB name becomes a cut label value, marked with "…".
	c.postOTLP(t, serviceSpans("big-"+strings.Repeat("x", 1<<20)))
	big := 0
	for svc := range serviceSeries(t, c, "1 MB name", maxServices) {
		if strings.HasPrefix(svc, "big-xxx") && strings.HasSuffix(svc, "…") {
			big++
		}
	}
	if big != 1 {
		t.Fatal("want one series for the 1 MB name, cut and marked with …")
	}

	// 100,000 distinct names, 1,000 requests of 100 spans from 20 senders
	// (half OTLP/gRPC, half OTLP/HTTP), scraped all the while; orders-svc
	// starts during the flood and so is counted under _other.
	const senders, requests, perRequest = 20, 50, 100
	var (
		wg      sync.WaitGroup
		failed  atomic.Value
		flooded atomic.Bool
	)
	for s := range senders {
		wg.Go(func() {
			for r := range requests {
				names := make([]string, perRequest)
				for i := range names {
					names[i] = fmt.Sprintf("junk-%d-%d-%d\xff", s, r, i)
				}
				td := serviceSpans(names...)
				if err := exportAs(s, grpcClient, c.httpAddr, td); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	go func() { wg.Wait(); flooded.Store(true) }()
	scrapes := 0
	for !flooded.Load() {
		serviceSeries(t, c, "during the flood", maxServices)
		scrapes++
	}
	if err := failed.Load(); err != nil {
		t.Fatalf("a sender failed: %v", err)
	}
	c.postOTLP(t, serviceSpans("orders-svc"))
	after := serviceSeries(t, c, "after the flood", maxServices)
	if len(after) != maxServices+1 || after["_other"] < 90_000 {
		t.Fatalf("after the flood: want %d names and _other counting most of the 100,000 spans, got %d names, _other=%v",
			maxServices+1, len(after), after["_other"])
	}
	if _, ok := after["orders-svc"]; ok {
		t.Fatal("orders-svc has a series while the table is full of junk: the flood did not fill it")
	}
	t.Logf("%d scrapes during the flood, all 200 and within the bound", scrapes)

	// The junk has sent nothing since the flood: within service_idle and a
	// sweep (at most 1s) it is forgotten, and orders-svc, still sending,
	// gets its own series.
	flood := time.Now()
	eventually(t, serviceIdle+10*time.Second, "orders-svc to get its own series", func() (bool, string) {
		c.postOTLP(t, serviceSpans("orders-svc"))
		got := serviceSeries(t, c, "after the idle period", maxServices)
		return got["orders-svc"] >= 1, fmt.Sprintf("%d series, orders-svc missing", len(got))
	})
	got := serviceSeries(t, c, "after the idle period", maxServices)
	for svc := range got {
		if strings.HasPrefix(svc, "junk-") {
			t.Fatalf("junk service %q still has a series after the idle period", svc)
		}
	}
	t.Logf("orders-svc had its own series %s after the flood (service_idle %s)", time.Since(flood).Round(100*time.Millisecond), serviceIdle)

	// promtool reads the exposition as Prometheus would (and lints it).
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool not on PATH (install Debian package prometheus): %v", err)
		}
		t.Log("promtool not on PATH: exposition not checked by promtool (install Debian package prometheus)")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(c.scrapeText(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// exportAs sends td as sender s of a concurrent test: even senders over
// OTLP/gRPC, odd ones over OTLP/HTTP protobuf.
func exportAs(s int, grpcClient ptraceotlp.GRPCClient, httpAddr string, td ptrace.Traces) error {
	if s%2 == 0 {
		_, err := grpcClient.Export(context.Background(), ptraceotlp.NewExportRequestFromTraces(td))
		return err
	}
	return postProto(httpAddr, td)
}

// postProto posts td as OTLP/HTTP protobuf and returns an error for
// anything but 200: it runs in sender goroutines, which must not fail the
// test themselves.
func postProto(addr string, td ptrace.Traces) error {
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		return err
	}
	resp, err := http.Post("http://"+addr+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /v1/traces: %s", resp.Status)
	}
	return nil
}
