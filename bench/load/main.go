// Command load runs the whole tenantguard collector on loopback twice per
// repetition — the reference config with tenantguard, and the same config
// without it — feeds each the same OTLP/gRPC traffic at a fixed rate for a
// fixed number of spans, and compares the collector process's CPU seconds
// (utime+stime from /proc/<pid>/stat, from ready to the last span exported)
// and peak RSS (VmHWM from /proc/<pid>/status).
//
//	cd bench && go run ./load -spans 1000000 -rate 50000 -reps 3 | tee results/load.txt
//
// With -experiment KIND (bounded, prototype, ...: package experiment) each
// repetition runs a third variant, the same config with that experiment
// where tenantguard stands, and the collector is ./load/collector, which
// holds all three, so the floor of the work is measured in the same
// collector, the same run:
//
//	cd bench && go run ./load -experiment bounded -reps 6
//
// Results are printed in the benchmark format, so benchstat reads them:
//
//	go run golang.org/x/perf/cmd/benchstat@latest -col /collector results/load.txt
//
// Traffic goes only to 127.0.0.1; every loop is bounded in count and time.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // the collector's otlp exporter compresses with gzip by default

	"github.com/tenantguard/tenantguard/bench/benchkit"
	"github.com/tenantguard/tenantguard/bench/experiment"
)

func main() {
	var (
		spans = flag.Int("spans", 1_000_000, "spans to send to each collector run")
		rate  = flag.Int("rate", 50_000, "spans per second the generator sends")
		reps  = flag.Int("reps", 3, "repetitions of the pair (with, without); runs alternate")
		repo  = flag.String("repo", "..", "repository root (where cmd/tenantguard is)")
		bin   = flag.String("bin", "", "a built collector: cmd/tenantguard, or ./load/collector with -experiment (default: go build it from -repo)")
		leak  = flag.Float64("leak", 0.01, "fraction of traces that cross tenants")
		exp   = flag.String("experiment", "", "also run the collector with this experiment (package experiment) where tenantguard stands; the collector is then ./load/collector")
	)
	flag.Parse()
	if *exp != "" && !slices.Contains(experiment.Kinds, *exp) {
		fmt.Fprintf(os.Stderr, "load: -experiment %q is not one of %v\n", *exp, experiment.Kinds)
		os.Exit(2)
	}
	if err := run(*spans, *rate, *reps, *repo, *bin, *leak, *exp); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

type result struct {
	variant          string
	cpu              time.Duration
	peakRSS          int64 // bytes
	sendWall         time.Duration
	achievedRate     float64
	spans            int
	collectorLogSize int64
}

// The variants of a repetition: the collector without tenantguard, with it,
// and (-experiment) with an experiment in its place.
const (
	without = "without"
	withTG  = "with-tenantguard"
)

func run(spans, rate, reps int, repo, bin string, leak float64, exp string) error {
	tmp, err := os.MkdirTemp("", "tenantguard-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if bin == "" {
		bin = filepath.Join(tmp, "tenantguard")
		start := time.Now()
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/tenantguard")
		cmd.Dir = repo
		if exp != "" {
			cmd = exec.Command("go", "build", "-o", bin, "./load/collector")
			cmd.Dir = filepath.Join(repo, "bench")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building the collector: %w\n%s", err, out)
		}
		fmt.Fprintf(os.Stderr, "built %s in %s\n", bin, time.Since(start).Round(time.Millisecond))
	}
	sink, err := startSink()
	if err != nil {
		return err
	}
	defer sink.srv.Stop()

	shape := benchkit.DefaultShape()
	shape.LeakRate = leak
	ring := benchkit.NewRing(shape)

	variants := []string{without, withTG}
	if exp != "" {
		variants = append(variants, "with-"+exp)
	}
	fmt.Printf("# whole collector: OTLP/gRPC in, memory_limiter[, tenantguard], batch, otlp_grpc out to a loopback sink\n")
	if exp != "" {
		fmt.Printf("# collector ./load/collector; variant with-%s: the experiment %s where tenantguard stands\n", exp, exp)
	}
	fmt.Printf("# %d spans per run at %d spans/s, traffic %s\n", spans, rate, shape)
	fmt.Printf("goos: linux\ngoarch: amd64\npkg: github.com/tenantguard/tenantguard/bench/load\n")
	var all []result
	for rep := range reps {
		// Each repetition starts one variant later, so every variant runs
		// first, second, ... equally often.
		for i := range variants {
			variant := variants[(rep+i)%len(variants)]
			r, err := runOnce(bin, tmp, sink, ring, spans, rate, variant)
			if err != nil {
				return err
			}
			all = append(all, r)
			fmt.Printf("BenchmarkLoad/collector=%s 1 %.3f cpu-s %.1f cpu-ns/span %.1f peak-rss-MiB %.0f sent-spans/s\n",
				r.variant, r.cpu.Seconds(), float64(r.cpu.Nanoseconds())/float64(r.spans), float64(r.peakRSS)/(1<<20), r.achievedRate)
		}
	}
	med := func(v string, f func(result) float64) float64 {
		var xs []float64
		for _, r := range all {
			if r.variant == v {
				xs = append(xs, f(r))
			}
		}
		sort.Float64s(xs)
		if n := len(xs); n%2 == 0 {
			return (xs[n/2-1] + xs[n/2]) / 2 // an even count's median: not its upper middle
		}
		return xs[len(xs)/2]
	}
	cpu := func(r result) float64 { return r.cpu.Seconds() }
	rss := func(r result) float64 { return float64(r.peakRSS) / (1 << 20) }
	for _, v := range variants[1:] {
		fmt.Printf("# medians over %d runs each: CPU %.2fs %s, %.2fs without: ratio %.3f; peak RSS %.0f MiB %s, %.0f MiB without: ratio %.3f\n",
			reps, med(v, cpu), v, med(without, cpu), med(v, cpu)/med(without, cpu),
			med(v, rss), v, med(without, rss), med(v, rss)/med(without, rss))
	}
	return nil
}

const configTmpl = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %[1]s
processors:
  memory_limiter:
    check_interval: 1s
    limit_percentage: 80
    spike_limit_percentage: 20
%[3]s  batch:
exporters:
  otlp_grpc/sink:
    endpoint: %[2]s
    tls:
      insecure: true
service:
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
  pipelines:
    traces:
      receivers: [otlp]
      processors: [%[4]s]
      exporters: [otlp_grpc/sink]
`

const tenantguardTmpl = `  tenantguard:
    tenant_attributes: [tenant.id, tenant_id]
    allow:
      shared_tenants: [system]
    idle_window: 60s
    max_traces: 100000
    instance: load
    store:
      journal:
        path: %s
    metrics:
      endpoint: ""
`

// senders is how many exports may be in flight at once.
const senders = 4

// experimentTmpl puts an experiment where tenantguard stands, with the
// same max_traces and its file on the same disk.
const experimentTmpl = `  experiment:
    kind: %s
    max_traces: 100000
    dir: %s
`

func runOnce(bin, tmp string, sink *sink, ring *benchkit.Ring, spans, rate int, variant string) (result, error) {
	procs := "memory_limiter, batch"
	tg := ""
	expFile := "" // a durable experiment's file of crossings, checked after the run
	switch {
	case variant == withTG:
		procs = "memory_limiter, tenantguard, batch"
		tg = fmt.Sprintf(tenantguardTmpl, filepath.Join(tmp, fmt.Sprintf("leaks-%d.jsonl", time.Now().UnixNano())))
	case variant != without:
		dir, err := os.MkdirTemp(tmp, "experiment-")
		if err != nil {
			return result{}, err
		}
		kind := strings.TrimPrefix(variant, "with-")
		procs = "memory_limiter, experiment, batch"
		tg = fmt.Sprintf(experimentTmpl, kind, dir)
		if kind == experiment.Durable || kind == experiment.Bounded {
			expFile = filepath.Join(dir, "evidence.jsonl")
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return result{}, err
	}
	cfgPath := filepath.Join(tmp, variant+".yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(configTmpl, addr, sink.addr, tg, procs)), 0o600); err != nil {
		return result{}, err
	}
	logPath := filepath.Join(tmp, variant+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return result{}, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = tmp
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
	}()

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		return result{}, err
	}
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	// Ready: the receiver answers an empty export.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := client.Export(ctx, ptraceotlp.NewExportRequest())
		cancel()
		if err == nil {
			break
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			return result{}, fmt.Errorf("collector (%s) exited before it was ready: %v\n%s", variant, err, log)
		default:
		}
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("collector (%s) not ready within 60s: %v", variant, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // let start-up work settle before the first CPU reading
	pid := cmd.Process.Pid
	cpu0, err := procCPU(pid)
	if err != nil {
		return result{}, err
	}
	sink.spans.Store(0)

	spr := ring.Shape.SpansPerRequest()
	n := spans / spr
	interval := time.Duration(float64(time.Second) * float64(spr) / float64(rate))
	// Senders: requests go out on schedule even when one export is slow.
	// Each pass's requests are marshalled once; senders decode their own
	// copy, so renewing the ring's trace ids never races a send.
	work := make(chan []byte, senders)
	errs := make(chan error, senders)
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range work {
				req := ptraceotlp.NewExportRequest()
				if err := req.UnmarshalProto(body); err != nil {
					errs <- err
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := client.Export(ctx, req)
				cancel()
				if err != nil {
					select {
					case errs <- fmt.Errorf("export to the collector (%s): %w", variant, err):
					default:
					}
				}
			}
		}()
	}
	bodies := make([][]byte, len(ring.Requests))
	start := time.Now()
	var sendErr error
	crossings := 0 // crossing traces sent
	for i := range n {
		slot := i % len(ring.Requests)
		if slot == 0 {
			if i > 0 {
				ring.Renew()
			}
			for k, td := range ring.Requests {
				if bodies[k], err = ptraceotlp.NewExportRequestFromTraces(td).MarshalProto(); err != nil {
					return result{}, err
				}
			}
		}
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		select {
		case err := <-errs:
			sendErr = err
		default:
		}
		if sendErr != nil {
			break
		}
		work <- bodies[slot]
		crossings += len(ring.Leaks[slot])
	}
	close(work)
	wg.Wait()
	if sendErr != nil {
		return result{}, sendErr
	}
	select {
	case err := <-errs:
		return result{}, err
	default:
	}
	sendWall := time.Since(start)
	want := int64(n * spr)
	deadline = time.Now().Add(2 * time.Minute)
	for sink.spans.Load() < want {
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("collector (%s) exported %d of %d spans", variant, sink.spans.Load(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cpu1, err := procCPU(pid)
	if err != nil {
		return result{}, err
	}
	hwm, err := procHWM(pid)
	if err != nil {
		return result{}, err
	}
	if expFile != "" {
		// The experiment writes each request's crossings before the
		// request goes on, so all are in its file by now: one line each.
		b, err := os.ReadFile(expFile)
		if err != nil {
			return result{}, err
		}
		if lines := bytes.Count(b, []byte("\n")); lines != crossings {
			return result{}, fmt.Errorf("collector (%s) wrote %d crossings, want the %d sent", variant, lines, crossings)
		}
	}
	st, _ := logf.Stat()
	return result{variant: variant, cpu: cpu1 - cpu0, peakRSS: hwm, sendWall: sendWall,
		achievedRate: float64(want) / sendWall.Seconds(), spans: int(want), collectorLogSize: st.Size()}, nil
}

// sink is the backend: an OTLP/gRPC traces server that counts spans.
type sink struct {
	ptraceotlp.UnimplementedGRPCServer
	srv   *grpc.Server
	addr  string
	spans atomic.Int64
}

func (s *sink) Export(_ context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	s.spans.Add(int64(req.Traces().SpanCount()))
	return ptraceotlp.NewExportResponse(), nil
}

func startSink() (*sink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{srv: grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20)), addr: l.Addr().String()}
	ptraceotlp.RegisterGRPCServer(s.srv, s)
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// procCPU is utime+stime of pid, from /proc/<pid>/stat (clock ticks).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc/pid/stat")
	}
	f := strings.Fields(s[i+1:])
	// After the command: state is field 3, utime field 14, stime field 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const ticks = 100 // sysconf(_SC_CLK_TCK) on Linux
	return time.Duration(ut+st) * time.Second / ticks, nil
}

// procHWM is the peak resident set size of pid (VmHWM), in bytes.
func procHWM(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc/pid/status")
}
