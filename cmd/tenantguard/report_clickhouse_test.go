package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/internal/chserver"
	"github.com/tenantguard/tenantguard/store"
)

// reportCoverage is coverage of the scenarios' tenants by two collectors
// over six hours around the findings: both count the first hour, one
// tenant is quiet for an hour, a service sends spans without a tenant, and
// a tenant id is invalid UTF-8.
func reportCoverage(recs []store.Evidence) []store.Coverage {
	first := recs[0].DetectedAt
	var tenants []string
	for _, ev := range recs {
		if ev.DetectedAt.Before(first) {
			first = ev.DetectedAt
		}
		for _, tn := range ev.Tenants {
			if !slices.Contains(tenants, tn) {
				tenants = append(tenants, tn)
			}
		}
	}
	tenants = append(tenants, "\xff\xfeodd")
	hour := first.UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	var cov []store.Coverage
	for h := range 6 {
		for i, tn := range tenants {
			if h == 3 && i == 0 {
				continue // the first tenant is quiet for an hour
			}
			n := uint64(h*10 + i + 1)
			c := store.Coverage{Collector: "edge-a", Hour: hour.Add(time.Duration(h) * time.Hour), Tenant: tn,
				Traces: n, Spans: 5 * n, SpansMissingTenant: n % 3, CrossingsRefused: n % 2, UnscopedQueries: n % 4,
				Services: map[string]store.ServiceCoverage{
					"gateway":   {Traces: n},
					"inventory": {Traces: n / 2, TracesWithoutTenant: n % 3},
				}}
			cov = append(cov, c)
			if h == 0 {
				c.Collector = "edge-b"
				cov = append(cov, c)
			}
		}
	}
	return cov
}

// `leaks report` reads ClickHouse when the config names it, and gives the
// report the journal and coverage files give, in every format and for a
// tenant and a period: the scenarios' findings and two collectors'
// coverage, shipped by the collector's shippers to the engine.
func TestLeaksReportFromClickHouseEqualsTheJournal(t *testing.T) {
	srv := chserver.Start(t) // skips (or fails in CI) without the engine
	dir := t.TempDir()
	journalPath, recs := scenarioJournal(t, dir)
	cov := reportCoverage(recs)
	if err := store.AppendCoverage(store.CoveragePath(journalPath), cov); err != nil {
		t.Fatal(err)
	}
	cfg := config.DefaultClickHouse()
	cfg.Protocol, cfg.Endpoints, cfg.Database, cfg.TLS.Insecure = "http", []string{srv.Addr()}, "leaks_report_test", true
	cfg.BatchSize, cfg.BatchAge = 7, 10*time.Millisecond
	dropDatabase(t, cfg)
	shipJournal(t, cfg, journalPath, len(recs))
	cfgPath := writeConfig(t, dir, "c.yaml", "processors:\n  tenantguard:\n    store:\n      journal: {path: "+journalPath+"}\n"+
		"      clickhouse:\n        protocol: http\n        endpoints: ["+srv.Addr()+"]\n        database: leaks_report_test\n        tls: {insecure: true}\n")

	report := func(journal bool, rf reportFlags) string {
		t.Helper()
		lf := &leaksFlags{configs: []string{cfgPath}, journal: journal}
		var out, errOut bytes.Buffer
		if err := runLeaksReport(context.Background(), lf, &rf, &out, &errOut); err != nil {
			t.Fatalf("report %+v (journal %v): %v\n%s", rf, journal, err, errOut.String())
		}
		return out.String()
	}
	since := cov[0].Hour.Add(time.Hour).Format(time.RFC3339)
	until := cov[0].Hour.Add(5 * time.Hour).Format(time.RFC3339)
	var tenantRows int
	var traces uint64
	for _, c := range cov {
		traces += c.Traces
	}
	for _, rf := range []reportFlags{
		{format: "json"},
		{format: "text"},
		{format: "markdown"},
		{format: "json", tenant: recs[0].Tenants[0]},
		{format: "json", since: since, until: until},
		{format: "text", tenant: "\ufffd\ufffdodd", since: since},
	} {
		fromCH, fromJournal := report(false, rf), report(true, rf)
		if rf.format == "json" {
			var c, j isolationReport
			if err := json.Unmarshal([]byte(fromCH), &c); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(fromJournal), &j); err != nil {
				t.Fatal(err)
			}
			if len(c.Sources) != 1 || !bytes.Contains([]byte(c.Sources[0]), []byte("ClickHouse at "+srv.Addr())) ||
				!slices.Equal(j.Sources, []string{journalPath}) {
				t.Errorf("sources: ClickHouse %q, journal %q", c.Sources, j.Sources)
			}
			if !slices.Equal(c.Collectors, j.Collectors) || !slices.Contains(c.Collectors, "edge-a") || !slices.Contains(c.Collectors, "edge-b") {
				t.Errorf("collectors %q, journal's %q, want both edge collectors", c.Collectors, j.Collectors)
			}
			if rf.tenant == "" && rf.since == "" && c.Totals.TenantTracesChecked != traces {
				t.Errorf("traces checked %d from ClickHouse, want the %d the coverage records count", c.Totals.TenantTracesChecked, traces)
			}
			c.Sources, j.Sources = nil, nil
			cb, _ := json.Marshal(c)
			jb, _ := json.Marshal(j)
			fromCH, fromJournal = string(cb), string(jb)
			tenantRows += len(c.Tenants)
		}
		if fromCH != fromJournal {
			t.Errorf("report %+v from ClickHouse differs from the journal's:\n--- ClickHouse\n%s\n--- journal\n%s", rf, fromCH, fromJournal)
		}
	}
	if tenantRows == 0 {
		t.Fatal("the reports compared hold no tenant")
	}
}
