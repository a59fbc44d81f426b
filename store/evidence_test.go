package store

import (
	"testing"
	"time"
)

func TestLatestKeepsHighestVersionAndOrdersByLastSeen(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	recs := []Evidence{
		{LeakID: "b", Version: 5, LastSeen: t0},
		{LeakID: "a", Version: 2, LastSeen: t0.Add(time.Minute), Status: "open"},
		{LeakID: "a", Version: 1, LastSeen: t0.Add(2 * time.Minute), Status: "stale"}, // older version arrives later
		{LeakID: "c", Version: 1, LastSeen: t0},
	}
	got := Latest(recs)
	if len(got) != 3 {
		t.Fatalf("want 3 findings, got %+v", got)
	}
	if got[0].LeakID != "a" || got[0].Status != "open" {
		t.Errorf("a must keep version 2 whatever the order: %+v", got[0])
	}
	if got[1].LeakID != "b" || got[2].LeakID != "c" {
		t.Errorf("ties on last_seen must order by leak id: %s %s", got[1].LeakID, got[2].LeakID)
	}
}

func TestFilter(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	ev := Evidence{Rule: "cross_tenant_trace", Status: "open", Tenants: []string{"acme", "globex"},
		Services: []string{"gateway"}, LastSeen: t0}
	for _, tc := range []struct {
		name string
		f    Filter
		want bool
	}{
		{"empty", Filter{}, true},
		{"tenant", Filter{Tenant: "globex"}, true},
		{"other tenant", Filter{Tenant: "initech"}, false},
		{"service", Filter{Service: "gateway"}, true},
		{"other service", Filter{Service: "billing"}, false},
		{"rule", Filter{Rule: "tenant_mismatch"}, false},
		{"since before", Filter{Since: t0.Add(-time.Hour)}, true},
		{"since after", Filter{Since: t0.Add(time.Hour)}, false},
	} {
		if got := tc.f.Match(&ev); got != tc.want {
			t.Errorf("%s: got %v", tc.name, got)
		}
	}
	allowed := ev
	allowed.Status = "allowed"
	if (Filter{}).Match(&allowed) || !(Filter{IncludeAllowed: true}).Match(&allowed) {
		t.Error("withdrawn findings are hidden unless asked for")
	}
}
