package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/store"
	"github.com/tenantguard/tenantguard/store/journal"
)

func writeConfig(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadProcessorConfigMergesFilesAndSet(t *testing.T) {
	dir := t.TempDir()
	base := writeConfig(t, dir, "base.yaml", `
processors:
  batch:
  tenantguard:
    idle_window: 30s
    store:
      journal:
        path: /first/leaks.jsonl
`)
	over := writeConfig(t, dir, "over.yaml", `
processors:
  tenantguard:
    store:
      journal:
        path: /second/leaks.jsonl
`)
	cfg, err := loadProcessorConfig(context.Background(), []string{base, over}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Journal.Path != "/second/leaks.jsonl" || cfg.IdleWindow != 30*time.Second {
		t.Fatalf("later --config must win, earlier keys stay: %+v", cfg)
	}
	cfg, err = loadProcessorConfig(context.Background(), []string{base, over},
		[]string{"processors.tenantguard.store.journal.path=/third/leaks.jsonl"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Journal.Path != "/third/leaks.jsonl" {
		t.Fatalf("--set must override: %s", cfg.Store.Journal.Path)
	}
	// Defaults fill what the file does not say.
	if len(cfg.TenantAttributes) != 2 || cfg.MaxTraces != 100_000 {
		t.Fatalf("defaults missing: %+v", cfg)
	}
}

func TestLoadProcessorConfigErrorsNameTheProblem(t *testing.T) {
	dir := t.TempDir()
	two := writeConfig(t, dir, "two.yaml", `
processors:
  tenantguard/eu: {}
  tenantguard/us:
    store: {journal: {path: /us.jsonl}}
`)
	none := writeConfig(t, dir, "none.yaml", "processors:\n  batch:\n")
	bad := writeConfig(t, dir, "bad.yaml", "processors:\n  tenantguard:\n    idle_window: -1s\n")
	for _, tc := range []struct {
		name    string
		configs []string
		sets    []string
		proc    string
		want    string
	}{
		{"no config", nil, nil, "", "--config is required"},
		{"several processors", []string{two}, nil, "", "choose one with --processor"},
		{"unknown processor", []string{two}, nil, "tenantguard/asia", `no such tenantguard processor`},
		{"no processor", []string{none}, nil, "", "no tenantguard processor"},
		{"invalid value", []string{bad}, nil, "", "idle_window"},
		{"bad set", []string{none}, []string{"processors.tenantguard"}, "", "missing '='"},
		{"missing file", []string{filepath.Join(dir, "absent.yaml")}, nil, "", "absent.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadProcessorConfig(context.Background(), tc.configs, tc.sets, tc.proc)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
	cfg, err := loadProcessorConfig(context.Background(), []string{two}, nil, "tenantguard/us")
	if err != nil || cfg.Store.Journal.Path != "/us.jsonl" {
		t.Fatalf("--processor tenantguard/us: %v %+v", err, cfg)
	}
}

func TestLeaksListFiltersAndPrintsTheContract(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "leaks.jsonl")
	cfgPath := writeConfig(t, dir, "c.yaml", "processors:\n  tenantguard:\n    store: {journal: {path: "+path+"}}\n")
	j, err := journal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	edge := store.CrossingEdge{
		From: store.EdgeEnd{SpanID: "a000000000000001", Service: "gateway", Span: "GET /inventory", Tenant: "acme"},
		To:   store.EdgeEnd{SpanID: "a000000000000003", Service: "inventory-svc", Span: "SELECT stock", Tenant: "globex"},
		Hops: 1,
	}
	recs := []store.Evidence{
		{LeakID: "old", Version: 1, Rule: "cross_tenant_trace", Status: "closed", TraceID: "00000000000000000000000000000001",
			Tenants: []string{"acme", "initech"}, LastSeen: now.Add(-48 * time.Hour), FirstSeen: now.Add(-48 * time.Hour)},
		{LeakID: "new", Version: 1, Rule: "cross_tenant_trace", Status: "open", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			Tenants: []string{"acme", "globex"}, LastSeen: now, FirstSeen: now},
		{LeakID: "new", Version: 2, Rule: "cross_tenant_trace", Status: "closed", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			Tenants: []string{"acme", "globex"}, CrossingEdges: []store.CrossingEdge{edge}, LastSeen: now, FirstSeen: now},
		{LeakID: "withdrawn", Version: 1, Rule: "cross_tenant_trace", Status: "allowed", TraceID: "00000000000000000000000000000002",
			Tenants: []string{"acme", "globex"}, LastSeen: now, FirstSeen: now},
	}
	if err := j.Append(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	j.Close()

	run := func(lf leaksFlags) []map[string]any {
		t.Helper()
		lf.configs = []string{cfgPath}
		lf.json = true
		var out, errOut bytes.Buffer
		if err := runLeaksList(context.Background(), &lf, &out, &errOut); err != nil {
			t.Fatal(err)
		}
		var got []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if line == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("not one JSON object per line: %q: %v", line, err)
			}
			got = append(got, m)
		}
		return got
	}
	all := run(leaksFlags{})
	if len(all) != 2 || all[0]["leak_id"] != "new" || all[1]["leak_id"] != "old" {
		t.Fatalf("want new then old (withdrawn hidden), got %v", all)
	}
	for _, key := range []string{"leak_id", "trace_id", "rule", "tenants", "crossing_edges", "first_seen", "last_seen"} {
		if _, ok := all[0][key]; !ok {
			t.Errorf("contract field %s missing from --json output", key)
		}
	}
	if all[0]["status"] != "closed" || len(all[0]["crossing_edges"].([]any)) != 1 {
		t.Errorf("latest version not shown: %v", all[0])
	}
	if got := run(leaksFlags{since: 24 * time.Hour}); len(got) != 1 || got[0]["leak_id"] != "new" {
		t.Errorf("--since 24h: %v", got)
	}
	if got := run(leaksFlags{tenant: "initech"}); len(got) != 1 || got[0]["leak_id"] != "old" {
		t.Errorf("--tenant initech: %v", got)
	}
	if got := run(leaksFlags{all: true}); len(got) != 3 {
		t.Errorf("--all must include withdrawn findings: %v", got)
	}

	var table, errOut bytes.Buffer
	lf := leaksFlags{configs: []string{cfgPath}}
	if err := runLeaksList(context.Background(), &lf, &table, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "from tenant acme reached tenant globex at inventory-svc `SELECT stock`, from gateway `GET /inventory`") {
		t.Errorf("table lacks the summary:\n%s", table.String())
	}
}
