package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/internal/demoapp"
)

// demoRun is how long the README's demo runs the shop: a few minutes, so
// that traces close on the idle window while others arrive, the journal
// and the coverage see thousands of traces, and spans reach the collector
// as the SDK batches them. TENANTGUARD_DEMO_DURATION shortens it for a
// quick local run.
func demoRun(t *testing.T) time.Duration {
	if v := os.Getenv("TENANTGUARD_DEMO_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("TENANTGUARD_DEMO_DURATION: %v", err)
		}
		return d
	}
	return 3 * time.Minute
}

// demoShopSummary is what cmd/demoshop prints when its run ends.
type demoShopSummary struct {
	Rounds      int            `json:"rounds"`
	Requests    map[string]int `json:"requests"`
	Refused     int            `json:"refused"`
	LeakTraceID string         `json:"leak_trace_id"`
}

// TestDemoShopReportShowsIsolationHeldButForTheInjectedLeak is the README's
// "Proving isolation" demo: cmd/demoshop, built, runs the demo shop against
// the built collector (with config/demo.yaml's settings) for a few minutes:
// every round acme, globex and initech read their own stock and acme tries
// globex's URL and is refused; halfway, a forgetful inventory-svc serves
// globex's row to acme once. The report must show every tenant's traffic
// checked, every refused attempt, and no succeeded crossing but the
// injected one.
func TestDemoShopReportShowsIsolationHeldButForTheInjectedLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs the demo shop against the collector for minutes")
	}
	t.Parallel() // it mostly waits: let the other end-to-end tests run meanwhile
	// As in production (config/local.yaml: 60s), the idle window outlasts the
	// SDK's batching (5s), so a trace's spans are judged together.
	c := startCollector(t, withIdleWindow("30s"), withProcessorYAML(demoProcessorYAML(t)))
	run := demoRun(t)
	cmd := exec.Command(demoshopBinary(t), "--otlp-grpc", c.grpcAddr, "--otlp-http", c.httpAddr,
		"--duration", run.String(), "--interval", "50ms")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("demoshop: %v\n%s", err, stderr.String())
	}
	var sum demoShopSummary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("demoshop's summary %q: %v", stdout.String(), err)
	}
	if sum.Rounds == 0 || sum.LeakTraceID == "" {
		t.Fatalf("demoshop ran %d rounds and injected no leak: %s", sum.Rounds, stdout.String())
	}
	c.stop(t) // closes every trace and writes the coverage

	var r isolationReport
	if err := json.Unmarshal([]byte(c.report(t, "--format", "json")), &r); err != nil {
		t.Fatal(err)
	}
	var id detector.TraceID
	if _, err := hex.Decode(id[:], []byte(sum.LeakTraceID)); err != nil {
		t.Fatal(err)
	}
	leakID := detector.LeakID(id, detector.RuleCrossTenantTrace)
	rows := map[string]tenantReport{}
	for _, tr := range r.Tenants {
		rows[tr.Tenant] = tr
	}
	// Each round is one trace of each tenant's own and acme's refused try,
	// which touched globex too; the leak touched both.
	rounds := uint64(sum.Rounds)
	for tenant, traces := range map[string]uint64{demoapp.TenantAcme: 2*rounds + 1, demoapp.TenantGlobex: 2*rounds + 1, "initech": rounds} {
		tr, ok := rows[tenant]
		if !ok {
			t.Fatalf("no row for %s in %+v", tenant, r.Tenants)
		}
		if tr.TracesChecked != traces {
			t.Errorf("%s: %d traces checked, want %d", tenant, tr.TracesChecked, traces)
		}
		wantLeaks := []string{leakID}
		if tenant == "initech" {
			wantLeaks = nil
		}
		if !slices.Equal(tr.Leaks, wantLeaks) || tr.CrossingsSucceeded != len(wantLeaks) || tr.IsolationHeld != (wantLeaks == nil) {
			t.Errorf("%s: crossings %d %v, isolation held %v; want only the injected leak %v", tenant, tr.CrossingsSucceeded, tr.Leaks, tr.IsolationHeld, wantLeaks)
		}
		if len(tr.ServicesNotCovered) != 0 {
			t.Errorf("%s: services not covered %+v, want none (every span of the shop carries a tenant)", tenant, tr.ServicesNotCovered)
		}
	}
	if r.Totals.CrossingsSucceeded != 1 {
		t.Errorf("%d crossings succeeded, want the injected one", r.Totals.CrossingsSucceeded)
	}
	if r.Totals.BlockedAttempts != sum.Refused || rows[demoapp.TenantAcme].BlockedAttempts != sum.Refused {
		t.Errorf("blocked attempts %d (acme %d), want one per refused request: %d", r.Totals.BlockedAttempts, rows[demoapp.TenantAcme].BlockedAttempts, sum.Refused)
	}
	t.Logf("demoshop ran %s: %d rounds, requests %v; report:\n%s", run, sum.Rounds, sum.Requests, c.report(t))
}

// demoProcessorYAML is config/demo.yaml's tenantguard settings, so that the
// file the README tells users to run with is the one tested.
func demoProcessorYAML(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Processors struct {
			Tenantguard map[string]any `yaml:"tenantguard"`
		} `yaml:"processors"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil || len(cfg.Processors.Tenantguard) == 0 {
		t.Fatalf("config/demo.yaml: no processors.tenantguard settings (%v)", err)
	}
	out, err := yaml.Marshal(cfg.Processors.Tenantguard)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
