package clickhouse

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tenantguard/tenantguard/store"
)

func TestQueriesFileGolden(t *testing.T) {
	var b strings.Builder
	for _, q := range Queries() {
		fmt.Fprintf(&b, "%s(", q.Name)
		for i, p := range q.Params {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s %s", p.Name, p.Type)
		}
		fmt.Fprintf(&b, ")\n    %s\n", q.Doc)
	}
	golden(t, "queries.golden", b.String())
}

// The Go code runs every query of the file and no other analyst query.
func TestEveryQueryInTheFileIsUsedByGo(t *testing.T) {
	used := []string{qList, qShow, qTrace, qSpans, qTenantPairs, qTopEdges, qDetection, qOpenBySvc, qCoverage}
	var inFile []string
	for _, q := range Queries() {
		if isDashboard(q) {
			continue // the dashboard's (TestLiveDashboardQueries)
		}
		inFile = append(inFile, q.Name)
		if strings.HasSuffix(q.SQL, ";") || strings.Contains(q.SQL, "-- name:") {
			t.Errorf("%s: text not cut cleanly", q.Name)
		}
		if q.Doc == "" {
			t.Errorf("%s: no description", q.Name)
		}
	}
	slices.Sort(used)
	slices.Sort(inFile)
	if !slices.Equal(used, inFile) {
		t.Fatalf("queries.sql has %v, the Go code runs %v", inFile, used)
	}
}

// selectList returns the names of a query's outermost SELECT list.
func selectList(sql string) []string {
	body := sql[strings.Index(sql, "SELECT")+len("SELECT") : strings.Index(sql, "\nFROM")]
	var out []string
	depth, start := 0, 0
	for i, c := range body {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, lastWord(body[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, lastWord(body[start:]))
}

func lastWord(s string) string {
	f := strings.Fields(s)
	return f[len(f)-1]
}

// The readers scan result columns by position: the SELECT lists must be
// the columns the scan structs expect.
func TestQueriesSelectWhatTheReadersScan(t *testing.T) {
	for _, name := range []string{qList, qShow, qTrace} {
		if got := selectList(query(name).SQL); !slices.Equal(got, names(leakColumns)) {
			t.Errorf("%s selects %v, the reader scans %v", name, got, names(leakColumns))
		}
	}
	if got := selectList(query(qSpans).SQL); !slices.Equal(got, spanReadColumns) {
		t.Errorf("%s selects %v, the reader scans %v", qSpans, got, spanReadColumns)
	}
	for name, want := range map[string][]string{
		qTenantPairs: {"day", "tenant_a", "tenant_b", "findings"},
		qTopEdges:    {"from_service", "from_span", "to_service", "to_span", "findings", "latest_seen"},
		qDetection:   {"rule", "findings", "mean_seconds"},
		qOpenBySvc:   {"service", "findings"},
	} {
		if got := selectList(query(name).SQL); !slices.Equal(got, want) {
			t.Errorf("%s selects %v, Stats scans %v", name, got, want)
		}
	}
}

// Against a ReplacingMergeTree the mutable columns may only be read through
// the latest-version view; the spans query collapses versions itself.
func TestQueriesReadLatestVersionsOnly(t *testing.T) {
	for _, q := range Queries() {
		if isDashboard(q) {
			continue // TestLiveDashboardQueries checks their numbers
		}
		switch q.Name {
		case qCoverage:
			// Summed rows: every count is read through sum().
			for _, c := range coverageSums() {
				if !strings.Contains(q.SQL, "sum("+c+") AS sum_"+c) {
					t.Errorf("%s does not sum %s", q.Name, c)
				}
			}
		case qSpans:
			if !strings.Contains(q.SQL, "ORDER BY leak_id, span_id, version DESC") || !strings.Contains(q.SQL, "LIMIT 1 BY leak_id, span_id") {
				t.Errorf("%s must keep the highest version of each span", q.Name)
			}
		default:
			if !strings.Contains(q.SQL, "FROM tenant_leaks_latest") {
				t.Errorf("%s does not read tenant_leaks_latest", q.Name)
			}
			// The only direct read of tenant_leaks is the trace lookup, on
			// trace_id, which never changes between versions.
			if rest := strings.ReplaceAll(q.SQL, "tenant_leaks_latest", ""); strings.Contains(rest, "FROM tenant_leaks ") &&
				!strings.Contains(rest, "SELECT leak_id FROM tenant_leaks WHERE trace_id = ") {
				t.Errorf("%s reads tenant_leaks directly", q.Name)
			}
		}
	}
}

// The filtered queries take the same five filter parameters that
// filterArgs sends, with the same meaning as store.Filter.
func TestFilterParametersMatchFilterArgs(t *testing.T) {
	want := argNames(t, filterArgs(store.Filter{}))
	for _, name := range []string{qList, qTenantPairs, qDetection, qOpenBySvc} {
		if got := paramNames(query(name)); !slices.Equal(got, want) {
			t.Errorf("%s takes %v, filterArgs sends %v", name, got, want)
		}
	}
	if got := paramNames(query(qTopEdges)); !slices.Equal(got, sortedWith(want, "top")) {
		t.Errorf("%s takes %v", qTopEdges, got)
	}
	filtered := "last_seen >= {since:DateTime64(9)}\n" +
		"    AND ({tenant:String} = '' OR has(tenants, {tenant:String}))\n" +
		"    AND ({service:String} = '' OR has(services, {service:String}))\n" +
		"    AND ({rule:String} = '' OR rule = {rule:String})\n" +
		"    AND ({include_allowed:UInt8} = 1 OR status != 'allowed')"
	for _, name := range []string{qList, qTopEdges, qDetection, qOpenBySvc} {
		if !strings.Contains(query(name).SQL, filtered) {
			t.Errorf("%s does not apply the standard filter", name)
		}
	}
	if !strings.Contains(query(qTenantPairs).SQL, strings.ReplaceAll(filtered, "\n    AND", "\n        AND")) {
		t.Errorf("%s does not apply the standard filter", qTenantPairs)
	}
}

func sortedWith(xs []string, x string) []string {
	out := append(slices.Clone(xs), x)
	slices.Sort(out)
	return out
}

func TestParseQueriesRejectsMistakes(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"twice", "-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n", "defined twice"},
		{"empty", "-- name: a\n-- only a comment\n", "no SQL"},
		{"param types", "-- name: a\nSELECT {x:String}, {x:UInt8}\n", "parameter x"},
	} {
		if _, err := parseQueries(tc.text); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	qs, err := parseQueries("preamble\n-- name: a\n-- doc one\n-- doc two\nSELECT {x:String}\nFROM t;\n")
	if err != nil || len(qs) != 1 || qs[0].Doc != "doc one doc two" || qs[0].SQL != "SELECT {x:String}\nFROM t" ||
		len(qs[0].Params) != 1 || qs[0].Params[0] != (Param{"x", "String"}) {
		t.Fatalf("%v %+v", err, qs)
	}
}
