package clickhouse

import (
	_ "embed"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// queriesSQL is the analyst query file; the readers run its texts verbatim.
//
//go:embed queries.sql
var queriesSQL string

// Query is one named query of queries.sql.
type Query struct {
	Name string
	// Doc is the comment under the name line.
	Doc string
	// SQL is the statement, without the trailing semicolon or comments
	// before it.
	SQL string
	// Params are the query parameters ({name:Type}) in order of first use.
	Params []Param
}

// Param is one ClickHouse query parameter of a query.
type Param struct {
	Name string
	Type string
}

// paramRE matches a query parameter, {name:Type}; ${name:format} is a
// Grafana template variable (the dashboard's queries).
var paramRE = regexp.MustCompile(`(?:^|[^$])\{(\w+):([^{}]+)\}`)

// parseQueries splits a query file at its "-- name: " lines. Comment lines
// right under a name line are the query's Doc.
func parseQueries(text string) ([]Query, error) {
	var (
		out []Query
		cur *Query
		sql []string
	)
	flush := func() error {
		if cur == nil {
			return nil
		}
		cur.SQL = strings.TrimSuffix(strings.TrimSpace(strings.Join(sql, "\n")), ";")
		if cur.SQL == "" {
			return fmt.Errorf("query %s has no SQL", cur.Name)
		}
		seen := map[string]string{}
		for _, m := range paramRE.FindAllStringSubmatch(cur.SQL, -1) {
			name, typ := m[1], strings.TrimSpace(m[2])
			if prev, ok := seen[name]; ok {
				if prev != typ {
					return fmt.Errorf("query %s: parameter %s is %s and %s", cur.Name, name, prev, typ)
				}
				continue
			}
			seen[name] = typ
			cur.Params = append(cur.Params, Param{Name: name, Type: typ})
		}
		out = append(out, *cur)
		cur, sql = nil, nil
		return nil
	}
	for _, line := range strings.Split(text, "\n") {
		if name, ok := strings.CutPrefix(line, "-- name: "); ok {
			if err := flush(); err != nil {
				return nil, err
			}
			name = strings.TrimSpace(name)
			if slices.ContainsFunc(out, func(q Query) bool { return q.Name == name }) {
				return nil, fmt.Errorf("query %s is defined twice", name)
			}
			cur = &Query{Name: name}
			continue
		}
		if cur == nil {
			continue // the file's preamble
		}
		if len(sql) == 0 && strings.HasPrefix(line, "--") {
			doc := strings.TrimSpace(strings.TrimPrefix(line, "--"))
			cur.Doc = strings.TrimSpace(cur.Doc + " " + doc)
			continue
		}
		sql = append(sql, line)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// Queries returns the analyst queries of queries.sql, in file order.
func Queries() []Query { return slices.Clone(queries) }

var queries = mustParseQueries()

func mustParseQueries() []Query {
	qs, err := parseQueries(queriesSQL)
	if err != nil {
		panic("store/clickhouse: queries.sql: " + err.Error())
	}
	return qs
}

// dashboardPrefix names the queries of the Grafana dashboard
// (config/grafana): Grafana runs them, after its macros, not the Go code.
const dashboardPrefix = "dashboard_"

func isDashboard(q Query) bool { return strings.HasPrefix(q.Name, dashboardPrefix) }

// The queries the Go code runs, by name.
const (
	qList        = "list_findings"
	qShow        = "show_finding"
	qTrace       = "findings_of_trace"
	qSpans       = "finding_spans"
	qTenantPairs = "findings_per_tenant_pair_per_day"
	qTopEdges    = "top_crossing_edges"
	qDetection   = "mean_time_to_detection"
	qOpenBySvc   = "open_findings_by_service"
	qCoverage    = "coverage_per_tenant_hour"
)

// query returns the text of a named query; a missing name is a programming
// error caught by the tests.
func query(name string) Query {
	for _, q := range queries {
		if q.Name == name {
			return q
		}
	}
	panic("store/clickhouse: queries.sql has no query " + name)
}
