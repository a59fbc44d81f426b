package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/store"
)

// Two collectors append their counts for the same tenant and hour; the
// reader sums them, keeps other hours apart, skips a torn line and loses
// nothing of a hostile tenant id.
func TestCoverageFileAddsUpAcrossCollectors(t *testing.T) {
	path := store.CoveragePath(filepath.Join(t.TempDir(), "leaks.jsonl"))
	h := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	hostile := strings.Repeat("x", 300) + "\u202e<script>"
	a := []store.Coverage{
		{Collector: "a", Hour: h, Tenant: "acme", Traces: 3, Spans: 10, SpansMissingTenant: 1, CrossingsSucceeded: 1,
			Services: map[string]store.ServiceCoverage{"api": {Traces: 3, TracesWithoutTenant: 1}}},
		{Collector: "a", Hour: h.Add(time.Hour), Tenant: "acme", Traces: 1, Spans: 1},
	}
	b := []store.Coverage{
		{Collector: "b", Hour: h, Tenant: "acme", Traces: 2, Spans: 5, CrossingsRefused: 2, UnscopedQueries: 4,
			Services: map[string]store.ServiceCoverage{"api": {Traces: 2}, "db": {Traces: 1, TracesWithoutTenant: 1}}},
		{Collector: "b", Hour: h, Tenant: hostile, Traces: 7},
	}
	if err := store.AppendCoverage(path, a); err != nil {
		t.Fatal(err)
	}
	if err := store.AppendCoverage(path, b); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Errorf("coverage file mode %o, want 600", perm)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("{\"collector\":\"a\",\"hour\":\"2026-03-01T1"); err != nil { // torn by a crash
		t.Fatal(err)
	}
	_ = f.Close()

	recs, rep, err := store.ReadCoverageFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 4 || len(rep.Corrupt) != 1 || rep.Corrupt[0] != 5 {
		t.Fatalf("read report %+v, want 4 records and line 5 corrupt", rep)
	}
	sum := store.SumCoverage(recs)
	if len(sum) != 3 {
		t.Fatalf("sums %+v, want acme@10, hostile@10, acme@11", sum)
	}
	got := sum[0]
	if got.Tenant != "acme" || !got.Hour.Equal(h) || got.Collector != "" {
		t.Fatalf("first sum %+v", got)
	}
	if got.Traces != 5 || got.Spans != 15 || got.SpansMissingTenant != 1 || got.CrossingsSucceeded != 1 ||
		got.CrossingsRefused != 2 || got.UnscopedQueries != 4 {
		t.Errorf("acme@10 summed to %+v", got)
	}
	if got.Services["api"] != (store.ServiceCoverage{Traces: 5, TracesWithoutTenant: 1}) || got.Services["db"] != (store.ServiceCoverage{Traces: 1, TracesWithoutTenant: 1}) {
		t.Errorf("services summed to %+v", got.Services)
	}
	if sum[1].Tenant != hostile || sum[1].Traces != 7 || sum[1].Collector != "b" {
		t.Errorf("hostile tenant came back as %+v", sum[1])
	}
	if sum[2].Traces != 1 || !sum[2].Hour.Equal(h.Add(time.Hour)) {
		t.Errorf("next hour %+v", sum[2])
	}
}

func TestMissingCoverageFileIsEmpty(t *testing.T) {
	recs, rep, err := store.ReadCoverageFile(filepath.Join(t.TempDir(), "none"))
	if err != nil || len(recs) != 0 || rep.Records != 0 {
		t.Fatalf("missing file: %v %v %+v", recs, err, rep)
	}
}
