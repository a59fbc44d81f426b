package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tenantguard/tenantguard/store/journal"
)

// ackConfig: OTLP over gRPC and HTTP into tenantguard with a journal; the
// debug exporter logs one request in a thousand.
const ackConfig = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %[1]s
      http:
        endpoint: %[2]s
processors:
  tenantguard:
    idle_window: 30s
    store:
      journal:
        path: %[3]s
    metrics:
      endpoint: ""
exporters:
  debug:
    verbosity: basic
    sampling_initial: 1
    sampling_thereafter: 1000
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tenantguard]
      exporters: [debug]
`

// acked records the leaking traces whose request the collector acknowledged.
type acked struct {
	mu     sync.Mutex
	traces map[string]bool
	n      atomic.Int64 // len(traces), read without the lock while waiting
}

func (a *acked) add(id pcommon.TraceID) {
	a.mu.Lock()
	a.traces[id.String()] = true
	a.mu.Unlock()
	a.n.Add(1)
}

// TestKillNineLosesNoAcknowledgedFinding is the durable-acknowledgement
// guarantee under fire: 40 senders (32 over OTLP/HTTP, 8 over OTLP/gRPC)
// post one leaking trace per request as fast as the collector answers, and
// the collector is killed with SIGKILL 20 times mid-load, restarted each
// time on the same journal. Every leak whose request got HTTP 200 (or a
// gRPC OK) must be in the journal after the last restart.
func TestKillNineLosesNoAcknowledgedFinding(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the collector binary")
	}
	const (
		kills       = 20
		httpSenders = 32
		grpcSenders = 8
	)
	dir := t.TempDir()
	grpcAddr := "127.0.0.1:" + strconv.Itoa(restartPort(t))
	c := &crashCollector{
		bin: tenantguardBinary(t), dir: dir, cfg: filepath.Join(dir, "collector.yaml"),
		http: "127.0.0.1:" + strconv.Itoa(restartPort(t)),
	}
	journalPath := filepath.Join(dir, "data", "leaks.jsonl")
	if err := os.WriteFile(c.cfg, []byte(fmt.Sprintf(ackConfig, grpcAddr, c.http, strconv.Quote(journalPath))), 0o600); err != nil {
		t.Fatal(err)
	}

	ack := &acked{traces: map[string]bool{}}
	var inflight, cut atomic.Int64 // requests in flight now; in flight at a kill
	var seq atomic.Uint64
	run := uint64(time.Now().UnixNano())
	nextTrace := func() pcommon.TraceID {
		var id pcommon.TraceID
		binary.BigEndian.PutUint64(id[:8], run)
		binary.BigEndian.PutUint64(id[8:], seq.Add(1))
		return id
	}
	ctx, cancel := context.WithCancel(context.Background())
	var senders sync.WaitGroup
	failed := func() { time.Sleep(10 * time.Millisecond) } // down: try again shortly
	hc := &http.Client{Timeout: 10 * time.Second}
	for range httpSenders {
		senders.Go(func() {
			for ctx.Err() == nil {
				id := nextTrace()
				body, err := ptraceotlp.NewExportRequestFromTraces(crossingTrace(id)).MarshalProto()
				if err != nil {
					t.Error(err)
					return
				}
				inflight.Add(1)
				resp, err := hc.Post("http://"+c.http+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
				inflight.Add(-1)
				if err != nil {
					failed()
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ack.add(id)
				} else {
					failed()
				}
			}
		})
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.5, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gc := ptraceotlp.NewGRPCClient(conn)
	for range grpcSenders {
		senders.Go(func() {
			for ctx.Err() == nil {
				id := nextTrace()
				rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
				inflight.Add(1)
				_, err := gc.Export(rctx, ptraceotlp.NewExportRequestFromTraces(crossingTrace(id)))
				inflight.Add(-1)
				rcancel()
				if err != nil {
					failed()
					continue
				}
				ack.add(id)
			}
		})
	}
	defer func() { cancel(); senders.Wait() }()

	for round := 1; round <= kills; round++ {
		c.start(t)
		// Kill once this round has acknowledged some requests, at a random
		// moment among the next ones: many requests are in flight then.
		from := ack.n.Load()
		deadline := time.Now().Add(20 * time.Second)
		for ack.n.Load() < from+20 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: only %d requests acknowledged in 20s\n--- collector output ---\n%s",
					round, ack.n.Load()-from, tail(c.logs.String(), 8<<10))
			}
			time.Sleep(2 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
		cut.Add(inflight.Load())
		c.kill()
	}
	cancel()
	senders.Wait()

	// After the last restart the journal is what the collector resumes from.
	c.start(t)
	defer c.stop(t)
	recs, rep, err := journal.ReadFile(journalPath)
	if err != nil || len(rep.Corrupt) != 0 || rep.TornTail {
		t.Fatalf("journal after restart: report %+v, err %v", rep, err)
	}
	inJournal := map[string]bool{}
	for _, r := range recs {
		inJournal[r.TraceID] = true
	}
	ack.mu.Lock()
	defer ack.mu.Unlock()
	var missing []string
	for id := range ack.traces {
		if !inJournal[id] {
			missing = append(missing, id)
		}
	}
	t.Logf("%d kills: %d leaking requests acknowledged, %d in flight at the kills, %d journal records",
		kills, len(ack.traces), cut.Load(), len(recs))
	if len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged leaks are not in the journal after %d kills, e.g. %v",
			len(missing), len(ack.traces), kills, missing[:min(5, len(missing))])
	}
	// The kills must have landed mid-load, or the test proved nothing.
	if cut.Load() < kills {
		t.Errorf("only %d requests were in flight at %d kills: the collector was not killed under load", cut.Load(), kills)
	}
}
