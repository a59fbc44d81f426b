package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

// everyFieldRecord sets every field of the record, with a hostile span
// name, a span link from another trace, a global key and span details.
func everyFieldRecord() store.Evidence {
	t0 := time.Date(2026, 3, 2, 9, 30, 0, 123456789, time.UTC)
	return store.Evidence{
		LeakID: "leak-every-field", Version: 7, Rule: string(detector.RuleForeignSigningKey),
		Severity: string(detector.SeverityCritical), Status: string(detector.StatusAllowed), AllowedBy: "partner-sync",
		Reason:  "a token verified with another tenant's (or a global) key was accepted",
		TraceID: "5b8efff798038103d269b633813fc60c", Tenants: []string{"acme", "globex"}, Services: []string{"fulfilment", "partner-api"},
		CrossingEdges: []store.CrossingEdge{{
			From: store.EdgeEnd{TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331", Service: "checkout",
				Span: "publish orders", Tenant: "acme"},
			To:   store.EdgeEnd{SpanID: "c7ad6b7169203331", Service: "fulfilment", Span: "process orders", Tenant: "globex"},
			Hops: 3, Link: true, Outcome: detector.OutcomeSucceeded,
		}},
		Mismatches: []store.Mismatch{{SpanID: "d7ad6b7169203331", Service: "partner-api", Span: "POST /v1/sync",
			Values: []store.TenantSource{{Key: "tenant.id", Tenant: "acme"}, {Key: "x-tenant", Tenant: "globex", Resource: true}}}},
		Keys: []store.KeyUse{{SpanID: "e7ad6b7169203331", Service: "partner-api", Span: "POST /v1/sync", Attribute: "auth.jwt.kid",
			Identifier: "kid-partner-2024", KeyTenant: "initech", SpanTenant: "acme", Global: true}},
		Queries: []store.Query{{SpanID: "f7ad6b7169203331", Service: "fulfilment", Span: "SELECT orders", Tables: []string{"orders", "order_lines"}}},
		Spans: []store.Span{{SpanID: "e7ad6b7169203331", ParentID: "a7ad6b7169203331", Service: "partner-api",
			Name: "POST /v1/sync\n\x1b[31mforged line", Tenant: "acme", TenantKey: "tenant.id", Outcome: detector.OutcomeBlocked, Data: true,
			Kind: "server", StartTime: t0, DurationNs: 2_500_000, Status: "error",
			Attributes: map[string]string{"http.response.status_code": "403", "url.path": "hmac-sha256:99aa"}}},
		SpanCount: 11, FirstSeen: t0, LastSeen: t0.Add(3 * time.Second), DetectedAt: t0.Add(time.Second), Collector: "edge-7",
	}
}

// recordFacts is every value of ev as `leaks show` must print it.
func recordFacts(ev *store.Evidence) []string {
	facts := []string{ev.LeakID, fmt.Sprintf("(version %d)", ev.Version), ev.Message(store.Plain),
		ev.Rule + ", severity " + ev.Severity + ", status " + ev.Status, ev.Reason, ev.AllowedBy, ev.TraceID,
		strings.Join(ev.Tenants, ", "), strings.Join(ev.Services, ", "), plural(ev.SpanCount, "span", "spans"),
		ev.FirstSeen.Format(time.RFC3339Nano), ev.LastSeen.Format(time.RFC3339Nano), ev.DetectedAt.Format(time.RFC3339Nano), ev.Collector}
	for _, e := range ev.CrossingEdges {
		via := "parent"
		if e.Link {
			via = "span link"
		}
		facts = append(facts, e.From.Tenant, e.From.Service, e.From.Span, e.From.SpanID, e.From.TraceID, e.To.Tenant, e.To.Service,
			e.To.Span, e.To.SpanID, strconv.Itoa(e.Hops)+"  ", via, e.Outcome)
	}
	for _, m := range ev.Mismatches {
		facts = append(facts, m.SpanID, m.Service, m.Span)
		for _, v := range m.Values {
			src := "(span)"
			if v.Resource {
				src = "(resource)"
			}
			facts = append(facts, v.Key+"="+v.Tenant+" "+src)
		}
	}
	for _, k := range ev.Keys {
		facts = append(facts, k.SpanID, k.Service, k.Span, k.Attribute, k.Identifier, k.KeyTenant, k.SpanTenant)
		if k.Global {
			facts = append(facts, "global key")
		}
	}
	for _, q := range ev.Queries {
		facts = append(facts, q.SpanID, q.Service, q.Span, strings.Join(q.Tables, ", "))
	}
	for _, s := range ev.Spans {
		facts = append(facts, s.SpanID, s.ParentID, s.Service, s.Name, s.Tenant, s.TenantKey, s.Outcome, s.Kind, s.Status)
		if s.Data {
			facts = append(facts, "yes")
		}
		if !s.StartTime.IsZero() {
			facts = append(facts, s.StartTime.Format(time.RFC3339Nano))
		}
		if s.DurationNs > 0 {
			facts = append(facts, time.Duration(s.DurationNs).String())
		}
		for k, v := range s.Attributes {
			facts = append(facts, k, v)
		}
	}
	var out []string
	for _, f := range facts {
		if f = store.OneLine(f); strings.TrimSpace(f) != "" {
			out = append(out, f)
		}
	}
	return out
}

// scenarioRecords scans every golden scenario with the built binary and
// returns the records it reports, as the journal would hold them.
func scenarioRecords(t *testing.T) []store.Evidence {
	t.Helper()
	inputs, err := filepath.Glob(filepath.Join(scanScenarioDir, "*.json*"))
	if err != nil {
		t.Fatal(err)
	}
	var recs []store.Evidence
	rules := map[string]bool{}
	for _, in := range inputs {
		if strings.HasSuffix(in, ".golden.json") {
			continue
		}
		r := runCLI(t, "", "scan", "--config", scanConfigPath, "--format", "json", "--all", "--fail-on", "none", in)
		if r.code != exitClean {
			t.Fatalf("scan %s: exit %d\n%s", in, r.code, r.stderr)
		}
		got := evidenceLines(t, r.stdout)
		for _, ev := range got {
			rules[ev.Rule] = true
		}
		recs = append(recs, got...)
	}
	for _, rule := range detector.Rules {
		if !rules[string(rule)] {
			t.Errorf("no scenario raises %s", rule)
		}
	}
	return recs
}

// TestLeaksShowPrintsEveryFieldOfTheRecord: for the finding of every golden
// scenario, and for a record with every field set (hostile span name
// included), `leaks show` prints its message, its reason and every value
// of the record, each on its own line.
func TestLeaksShowPrintsEveryFieldOfTheRecord(t *testing.T) {
	recs := append(scenarioRecords(t), everyFieldRecord())
	cfg, _ := writeJournal(t, t.TempDir(), recs)
	for i := range recs {
		ev := &recs[i]
		r := runCLI(t, "", "leaks", "show", "--config", cfg, ev.LeakID)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("leaks show %s: exit %d\n%s", ev.LeakID, r.code, r.stderr)
		}
		if ev.Reason == "" {
			t.Errorf("%s %s: the record has no reason", ev.Rule, ev.LeakID)
		}
		for _, fact := range recordFacts(ev) {
			if !strings.Contains(r.stdout, fact) {
				t.Errorf("leaks show %s (%s) lacks %q:\n%s", ev.LeakID, ev.Rule, fact, r.stdout)
			}
		}
		if strings.Contains(r.stdout, "\x1b") || strings.Contains(r.stdout, "\nforged line") {
			t.Errorf("leaks show %s let a control character through:\n%q", ev.LeakID, r.stdout)
		}
	}
}

// TestLeaksListHidesWithdrawnFindings: allowed and reclassified findings
// are listed only with --all; the table's message column is the message.
func TestLeaksListHidesWithdrawnFindings(t *testing.T) {
	var recs []store.Evidence
	for i, st := range detector.Statuses {
		ev := everyFieldRecord()
		ev.LeakID, ev.Status, ev.Rule = "leak-"+string(st), string(st), string(detector.RuleCrossTenantTrace)
		ev.LastSeen = ev.LastSeen.Add(time.Duration(i) * time.Second)
		recs = append(recs, ev)
	}
	cfg, _ := writeJournal(t, t.TempDir(), recs)
	ids := func(r cliRun) []string {
		var out []string
		for _, ev := range evidenceLines(t, r.stdout) {
			out = append(out, ev.LeakID)
		}
		slices.Sort(out)
		return out
	}
	if got, want := ids(runCLI(t, "", "leaks", "list", "--config", cfg, "--json")), []string{"leak-closed", "leak-open"}; !slices.Equal(got, want) {
		t.Errorf("leaks list: %q, want %q", got, want)
	}
	if got := ids(runCLI(t, "", "leaks", "list", "--config", cfg, "--json", "--all")); len(got) != len(detector.Statuses) {
		t.Errorf("leaks list --all: %q, want every status", got)
	}
	table := runCLI(t, "", "leaks", "list", "--config", cfg)
	if !strings.Contains(table.stdout, "MESSAGE") || !strings.Contains(table.stdout, recs[0].Message(store.Plain)) {
		t.Errorf("table lacks the message %q:\n%s", recs[0].Message(store.Plain), table.stdout)
	}
	if strings.Contains(table.stdout, "reclassified") || strings.Contains(table.stdout, "leak-allowed") {
		t.Errorf("table lists a withdrawn finding:\n%s", table.stdout)
	}
}
