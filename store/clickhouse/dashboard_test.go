package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tenantguard/tenantguard/store"
)

// The Grafana dashboard and its provisioning, in config/grafana.
const (
	dashboardPath  = "../../config/grafana/tenantguard.json"
	datasourcePath = "../../config/grafana/provisioning/datasources/tenantguard-clickhouse.yaml"
	pluginType     = "grafana-clickhouse-datasource"
)

type dashboardDS struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string       `json:"name"`
			Type       string       `json:"type"`
			Datasource *dashboardDS `json:"datasource"`
			Query      string       `json:"query"`
			Definition string       `json:"definition"`
			IncludeAll bool         `json:"includeAll"`
			AllValue   string       `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int          `json:"id"`
		Title      string       `json:"title"`
		Type       string       `json:"type"`
		Datasource *dashboardDS `json:"datasource"`
		GridPos    *struct {
			X, Y, W, H int
		} `json:"gridPos"`
		Targets []struct {
			RefID      string       `json:"refId"`
			Datasource *dashboardDS `json:"datasource"`
			EditorType string       `json:"editorType"`
			QueryType  string       `json:"queryType"`
			Format     *int         `json:"format"`
			RawSQL     string       `json:"rawSql"`
		} `json:"targets"`
	} `json:"panels"`
}

// loadDashboard reads the dashboard and checks its structure: every panel
// and variable on the provisioned ClickHouse data source, unique panel ids,
// a place on the 24-column grid, one SQL target each.
func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var prov struct {
		Datasources []struct {
			Type string `yaml:"type"`
			UID  string `yaml:"uid"`
		} `yaml:"datasources"`
	}
	rawDS, err := os.ReadFile(datasourcePath)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(rawDS, &prov); err != nil || len(prov.Datasources) != 1 || prov.Datasources[0].Type != pluginType {
		t.Fatalf("%s: want one %s data source: %+v %v", datasourcePath, pluginType, prov, err)
	}
	uid := prov.Datasources[0].UID
	onSource := func(what string, ds *dashboardDS) {
		if ds == nil || ds.Type != pluginType || ds.UID != uid {
			t.Errorf("%s: data source %+v, want the provisioned %s %s", what, ds, pluginType, uid)
		}
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard without uid, title or panels")
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		what := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.ID <= 0 || ids[p.ID] {
			t.Errorf("%s: id missing or not unique", what)
		}
		ids[p.ID] = true
		if p.Title == "" || p.Type == "" {
			t.Errorf("%s: no title or type", what)
		}
		onSource(what, p.Datasource)
		if g := p.GridPos; g == nil || g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v is not on the 24-column grid", what, g)
		}
		if len(p.Targets) != 1 {
			t.Errorf("%s: %d targets, want 1", what, len(p.Targets))
			continue
		}
		tg := p.Targets[0]
		onSource(what+" target", tg.Datasource)
		if tg.RefID == "" || tg.EditorType != "sql" || tg.RawSQL == "" || tg.Format == nil {
			t.Errorf("%s: target %+v is not a raw SQL query", what, tg)
		}
		if series := p.Type == "timeseries"; series != (tg.QueryType == "timeseries") || series != (*tg.Format == 0) {
			t.Errorf("%s: a %s panel with a %s query (format %d)", what, p.Type, tg.QueryType, *tg.Format)
		}
	}
	for _, v := range d.Templating.List {
		onSource("variable "+v.Name, v.Datasource)
		if v.Type != "query" || v.Query == "" || v.Definition != v.Query || !v.IncludeAll || v.AllValue != "*" {
			t.Errorf("variable %s: %+v, want a query variable with All as '*'", v.Name, v)
		}
	}
	return d
}

// dashboardQueries maps each panel title and variable name to the name of
// the queries.sql entry whose text it holds, failing for text that is in
// no entry and for dashboard_ entries nothing uses.
func dashboardQueries(t *testing.T, d dashboard) map[string]Query {
	t.Helper()
	byText := map[string]Query{}
	for _, q := range Queries() {
		if isDashboard(q) {
			byText[q.SQL] = q
		}
	}
	out := map[string]Query{}
	used := map[string]bool{}
	find := func(what, sql string) {
		q, ok := byText[strings.TrimSpace(sql)]
		if !ok {
			t.Errorf("%s: its SQL is no dashboard_ entry of queries.sql (one source: copy the entry):\n%s", what, sql)
			return
		}
		out[what] = q
		used[q.Name] = true
	}
	for _, p := range d.Panels {
		find(p.Title, p.Targets[0].RawSQL)
	}
	for _, v := range d.Templating.List {
		find("$"+v.Name, v.Query)
	}
	for _, q := range byText {
		if !used[q.Name] {
			t.Errorf("queries.sql entry %s is used by no panel or variable", q.Name)
		}
	}
	return out
}

// grafanaRange is what the macros of grafana-clickhouse-datasource see.
type grafanaRange struct {
	from, to time.Time
	interval time.Duration
	vars     map[string]string // template variables; "*" is All
}

var (
	macroRE = regexp.MustCompile(`\$__(timeFilter|timeInterval)\(([^()]+)\)`)
	varRE   = regexp.MustCompile(`\$\{(\w+):sqlstring\}`)
)

// expand substitutes the plugin's macros as it documents them
// ($__timeFilter(c) is c >= toDateTime(from) AND c <= toDateTime(to);
// $__timeInterval(c) is toStartOfInterval(toDateTime(c), INTERVAL n
// second)), and Grafana's sqlstring variable format (quoted, ' doubled).
// Anything else that looks like a macro or a variable fails the test.
func (g grafanaRange) expand(t *testing.T, sql string) string {
	t.Helper()
	sql = macroRE.ReplaceAllStringFunc(sql, func(m string) string {
		p := macroRE.FindStringSubmatch(m)
		col := strings.TrimSpace(p[2])
		if p[1] == "timeFilter" {
			return fmt.Sprintf("%s >= toDateTime(%d) AND %s <= toDateTime(%d)", col, g.from.Unix(), col, g.to.Unix())
		}
		return fmt.Sprintf("toStartOfInterval(toDateTime(%s), INTERVAL %d second)", col, int(max(g.interval.Seconds(), 1)))
	})
	sql = varRE.ReplaceAllStringFunc(sql, func(m string) string {
		name := varRE.FindStringSubmatch(m)[1]
		v, ok := g.vars[name]
		if !ok {
			t.Fatalf("variable %s has no value", name)
		}
		return "'" + strings.ReplaceAll(v, "'", "''") + "'"
	})
	if strings.Contains(sql, "$") {
		t.Fatalf("a macro or variable left unexpanded:\n%s", sql)
	}
	return sql
}

// dashboardRows runs sql and returns its rows as text, one string per row.
func dashboardRows(t *testing.T, c *Client, sql string) []string {
	t.Helper()
	rows, err := c.conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var dest []any
		for _, ct := range rows.ColumnTypes() {
			dest = append(dest, reflect.New(ct.ScanType()).Interface())
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		var cells []string
		for _, d := range dest {
			v := reflect.ValueOf(d).Elem().Interface()
			if tm, ok := v.(time.Time); ok {
				v = tm.UTC().Format(time.RFC3339)
			}
			if f, ok := v.(float64); ok {
				v = fmt.Sprintf("%.3f", f)
			}
			cells = append(cells, fmt.Sprint(v))
		}
		out = append(out, strings.Join(cells, " | "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// seedDashboard writes findings and coverage whose answers are known:
// findings 1 and 4 are open and critical; 2 was withdrawn (allowed); 3 is
// a high tenant mismatch; 5's latest version is closed; 7 is a month
// before the range. Coverage: two collectors count acme at 09:00, globex
// is counted by one, and an hour two days earlier is out of range.
func seedDashboard(t *testing.T, c *Client) {
	t.Helper()
	ctx := context.Background()
	var evs []store.Evidence
	for _, i := range []int{1, 2, 3, 4, 5, 7} {
		ev := finding(i, 1)
		switch i {
		case 2:
			ev.Status = "allowed"
		case 4:
			ev.Tenants = []string{"acme", "globex", "initech"}
			ev.Services = append(ev.Services, "billing")
			ev.DetectedAt = ev.FirstSeen.Add(4500 * time.Millisecond)
		case 7:
			ev.FirstSeen, ev.LastSeen, ev.DetectedAt = ev.FirstSeen.AddDate(0, -1, 0), ev.LastSeen.AddDate(0, -1, 0), ev.DetectedAt.AddDate(0, -1, 0)
		}
		evs = append(evs, ev)
	}
	closed := finding(5, 2)
	closed.Status = "closed"
	evs = append(evs, closed)
	if err := c.Write(ctx, evs, "dashboard-findings"); err != nil {
		t.Fatal(err)
	}
	h := t0.Truncate(time.Hour)
	cov := []store.Coverage{
		{Collector: "edge-a", Hour: h, Tenant: "acme", Traces: 10, Spans: 40, SpansMissingTenant: 3, CrossingsRefused: 1,
			Services: map[string]store.ServiceCoverage{"gateway": {Traces: 10}, "inventory-svc": {Traces: 6, TracesWithoutTenant: 2}}},
		{Collector: "edge-b", Hour: h, Tenant: "acme", Traces: 5, Spans: 20, CrossingsRefused: 2, CrossingsSucceeded: 1,
			Services: map[string]store.ServiceCoverage{"gateway": {Traces: 5}}},
		{Collector: "edge-a", Hour: h, Tenant: "globex", Traces: 7, Spans: 7,
			Services: map[string]store.ServiceCoverage{"gateway": {Traces: 7, TracesWithoutTenant: 1}}},
		{Collector: "edge-a", Hour: h.Add(-48 * time.Hour), Tenant: "globex", Traces: 100, CrossingsRefused: 50},
	}
	if err := c.WriteCoverage(ctx, cov[:1], "dashboard-coverage-a"); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteCoverage(ctx, cov[1:], "dashboard-coverage-b"); err != nil {
		t.Fatal(err)
	}
}

// TestLiveDashboardQueries checks the Grafana dashboard's structure, that every
// panel and variable runs a query of queries.sql (one source), and runs
// each, as the plugin expands it, on the engine with seeded findings and
// coverage, checking the numbers, with All and with filters (a tenant with
// a quote in it among them).
func TestLiveDashboardQueries(t *testing.T) {
	d := loadDashboard(t)
	byPanel := dashboardQueries(t, d)
	if t.Failed() {
		t.FailNow()
	}
	cfg, _ := liveEngine(t)
	c := liveClient(t, cfg)
	seedDashboard(t, c)

	all := map[string]string{"tenant": "*", "service": "*", "rule": "*"}
	with := func(k, v string) map[string]string {
		m := maps.Clone(all)
		m[k] = v
		return m
	}
	g := grafanaRange{from: t0.Add(-time.Hour), to: t0.Add(time.Hour), interval: time.Hour, vars: all}
	for _, tc := range []struct {
		what string // a panel title or $variable
		vars map[string]string
		want []string
	}{
		{"$tenant", all, []string{"acme", "globex", "initech"}},
		{"$service", all, []string{"billing", "gateway", "inventory-svc"}},
		{"$rule", all, []string{"cross_tenant_trace", "tenant_mismatch"}},
		{"Open critical findings", all, []string{"2"}},
		{"Open critical findings", with("tenant", "initech"), []string{"1"}},
		{"Open critical findings", with("rule", "tenant_mismatch"), []string{"0"}},
		{"Open critical findings", with("tenant", "o'brien"), []string{"0"}},
		{"Findings over time by rule and severity", all, []string{
			"2026-03-02T09:00:00Z | cross_tenant_trace / critical | 3",
			"2026-03-02T09:00:00Z | tenant_mismatch / high | 1"}},
		{"Findings over time by rule and severity", with("service", "billing"), []string{
			"2026-03-02T09:00:00Z | cross_tenant_trace / critical | 1"}},
		{"Top tenant pairs", all, []string{"acme | globex | 4", "acme | initech | 1", "globex | initech | 1"}},
		{"Top crossing edges", all, []string{
			"gateway | GET /inventory | inventory-svc | SELECT stock | 4",
			"queue | publish | gateway | GET /inventory | 2"}},
		{"Mean time to detection", all, []string{"cross_tenant_trace | 3 | 2.500", "tenant_mismatch | 1 | 1.500"}},
		{"Coverage per tenant and service", all, []string{
			"acme | (all) | 15 | 0 | 3 | 1",
			"acme | gateway | 15 | 0 | 0 | 0",
			"acme | inventory-svc | 6 | 2 | 0 | 0",
			"globex | (all) | 7 | 0 | 0 | 0",
			"globex | gateway | 7 | 1 | 0 | 0"}},
		{"Coverage per tenant and service", with("service", "inventory-svc"), []string{
			"acme | (all) | 15 | 0 | 3 | 1",
			"acme | inventory-svc | 6 | 2 | 0 | 0",
			"globex | (all) | 7 | 0 | 0 | 0"}},
		{"Blocked attempts", all, []string{"2026-03-02T09:00:00Z | acme | 3"}},
		{"Blocked attempts", with("tenant", "globex"), nil},
	} {
		q, ok := byPanel[tc.what]
		if !ok {
			t.Errorf("the dashboard has no %s", tc.what)
			continue
		}
		g.vars = tc.vars
		got := dashboardRows(t, c, g.expand(t, q.SQL))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s (%s) with %v:\n got %q\nwant %q", tc.what, q.Name, tc.vars, got, tc.want)
		}
	}
	// The range cuts: two days back, only the old hour's attempts.
	g = grafanaRange{from: t0.Add(-49 * time.Hour), to: t0.Add(-47 * time.Hour), interval: time.Hour, vars: all}
	if got := dashboardRows(t, c, g.expand(t, byPanel["Blocked attempts"].SQL)); !slices.Equal(got, []string{"2026-02-28T09:00:00Z | globex | 50"}) {
		t.Errorf("blocked attempts two days back: %q", got)
	}
}
