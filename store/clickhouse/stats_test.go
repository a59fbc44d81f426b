package clickhouse

import (
	"reflect"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/store"
)

func statsFixture() []store.Evidence {
	day1 := time.Date(2026, 3, 1, 23, 59, 0, 0, time.UTC)
	day2 := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	edge := func(fs, fsp, ts, tsp string) store.CrossingEdge {
		return store.CrossingEdge{From: store.EdgeEnd{Service: fs, Span: fsp, Tenant: "a"}, To: store.EdgeEnd{Service: ts, Span: tsp, Tenant: "b"}}
	}
	inv := edge("gateway", "GET /inventory", "inventory-svc", "SELECT stock")
	rep := edge("reports", "render", "pdf-svc", "fetch")
	return []store.Evidence{
		{LeakID: "l1", Rule: "cross_tenant_trace", Status: "open", Tenants: []string{"acme", "globex"},
			Services: []string{"gateway", "inventory-svc"}, CrossingEdges: []store.CrossingEdge{inv},
			FirstSeen: day1, LastSeen: day2.Add(time.Hour), DetectedAt: day1.Add(2 * time.Second)},
		{LeakID: "l2", Rule: "cross_tenant_trace", Status: "closed", Tenants: []string{"acme", "globex", "initech"},
			Services: []string{"gateway", "inventory-svc"}, CrossingEdges: []store.CrossingEdge{inv, inv},
			FirstSeen: day2, LastSeen: day2.Add(time.Minute), DetectedAt: day2.Add(4 * time.Second)},
		{LeakID: "l3", Rule: "tenant_mismatch", Status: "open", Tenants: []string{"acme", "globex"},
			Services: []string{"reports"}, CrossingEdges: []store.CrossingEdge{rep},
			FirstSeen: day2, LastSeen: day2, DetectedAt: day2.Add(500 * time.Millisecond)},
		{LeakID: "l4", Rule: "cross_tenant_trace", Status: "allowed", Tenants: []string{"acme", "umbrella"},
			Services: []string{"admin-console"}, CrossingEdges: []store.CrossingEdge{rep},
			FirstSeen: day2, LastSeen: day2, DetectedAt: day2.Add(time.Hour)},
	}
}

func TestSummarize(t *testing.T) {
	st := Summarize(statsFixture(), store.Filter{}, 10)
	want := Stats{
		Findings: 3,
		TenantPairs: []TenantPairDay{
			{Day: "2026-03-01", TenantA: "acme", TenantB: "globex", Findings: 1},
			{Day: "2026-03-02", TenantA: "acme", TenantB: "globex", Findings: 2},
			{Day: "2026-03-02", TenantA: "acme", TenantB: "initech", Findings: 1},
			{Day: "2026-03-02", TenantA: "globex", TenantB: "initech", Findings: 1},
		},
		TopEdges: []EdgeCount{
			{FromService: "gateway", FromSpan: "GET /inventory", ToService: "inventory-svc", ToSpan: "SELECT stock", Findings: 2,
				LatestSeen: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)},
			{FromService: "reports", FromSpan: "render", ToService: "pdf-svc", ToSpan: "fetch", Findings: 1,
				LatestSeen: time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)},
		},
		Detection: []RuleDetection{
			{Rule: "cross_tenant_trace", Findings: 2, MeanSeconds: 3},
			{Rule: "tenant_mismatch", Findings: 1, MeanSeconds: 0.5},
		},
		OpenByService: []ServiceCount{
			{Service: "gateway", Findings: 1}, {Service: "inventory-svc", Findings: 1}, {Service: "reports", Findings: 1},
		},
	}
	if jsonOf(t, st) != jsonOf(t, want) {
		t.Fatalf("stats:\n got %s\nwant %s", jsonOf(t, st), jsonOf(t, want))
	}
}

func TestSummarizeFiltersAndLimits(t *testing.T) {
	recs := statsFixture()
	if st := Summarize(recs, store.Filter{IncludeAllowed: true}, 1); st.Findings != 4 || len(st.TopEdges) != 1 || st.TopEdges[0].FromService != "gateway" {
		t.Fatalf("--all, top 1: %+v", st)
	}
	st := Summarize(recs, store.Filter{Since: time.Date(2026, 3, 2, 8, 30, 0, 0, time.UTC)}, 0)
	if st.Findings != 1 || st.TenantPairs[0].Day != "2026-03-01" {
		t.Fatalf("since filters on last_seen and pairs count on the first_seen day: %+v", st)
	}
	if st := Summarize(recs, store.Filter{Tenant: "initech"}, 0); st.Findings != 1 || len(st.TenantPairs) != 3 {
		t.Fatalf("--tenant: %+v", st)
	}
	if st := Summarize(nil, store.Filter{}, 0); st.TenantPairs == nil || st.TopEdges == nil || st.Detection == nil || st.OpenByService == nil {
		t.Fatal("empty stats must print [] not null, like the ClickHouse side")
	}
}

func TestSpanHistory(t *testing.T) {
	a := store.Span{SpanID: "a", Service: "gw"}
	b := store.Span{SpanID: "b", Service: "inv"}
	bOld := store.Span{SpanID: "b", Service: "inv-old"}
	c := store.Span{SpanID: "c", Service: "cache"}
	versions := []store.Evidence{
		{LeakID: "l", Version: 3, Spans: []store.Span{b, a}},
		{LeakID: "l", Version: 1, Spans: []store.Span{c, bOld}},
	}
	got := SpanHistory(versions)
	if len(got) != 3 || !reflect.DeepEqual(got, []store.Span{b, a, c}) {
		t.Fatalf("want the latest version's spans in order, then older ones: %+v", got)
	}
	rows := []versionedSpan{{3, 1, a}, {3, 0, b}, {1, 0, c}}
	if got := latestSpans(rows, 3); !reflect.DeepEqual(got, []store.Span{b, a}) {
		t.Fatalf("latest spans: %+v", got)
	}
	if got := latestSpans(nil, 3); got == nil {
		t.Fatal("no spans is [] not null")
	}
}
