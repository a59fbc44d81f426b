package clickhouse

import (
	"cmp"
	"slices"
	"time"

	"github.com/tenantguard/tenantguard/store"
)

// Stats answers "which tenants leaked into which, through which service,
// and how fast did we notice". Every figure counts findings (latest version
// of each, the same set `leaks list` shows for the same filter), never
// versions or rows. Client.Stats computes it with the queries of
// queries.sql; Summarize computes the same from journal records, so both
// stores give the same answer.
type Stats struct {
	// Findings is how many findings match the filter.
	Findings int `json:"findings"`
	// TenantPairs counts findings per unordered tenant pair (TenantA <
	// TenantB) per UTC day of first_seen; a finding with three tenants counts
	// for each of its three pairs. Ordered by day, then tenants.
	TenantPairs []TenantPairDay `json:"tenant_pairs_per_day"`
	// TopEdges are the crossing edges (service and span on both sides) in
	// the most findings, most first.
	TopEdges []EdgeCount `json:"top_crossing_edges"`
	// Detection is the mean time from the first span of the trace to the
	// first version of the finding, per rule.
	Detection []RuleDetection `json:"detection"`
	// OpenByService counts open findings per service their trace passed
	// through, most first.
	OpenByService []ServiceCount `json:"open_by_service"`
}

// TenantPairDay is one row of findings per tenant pair per day.
type TenantPairDay struct {
	Day      string `json:"day"` // YYYY-MM-DD, UTC
	TenantA  string `json:"tenant_a"`
	TenantB  string `json:"tenant_b"`
	Findings int    `json:"findings"`
}

// EdgeCount is a crossing edge and the findings it appears in.
type EdgeCount struct {
	FromService string    `json:"from_service"`
	FromSpan    string    `json:"from_span"`
	ToService   string    `json:"to_service"`
	ToSpan      string    `json:"to_span"`
	Findings    int       `json:"findings"`
	LatestSeen  time.Time `json:"latest_seen"`
}

// RuleDetection is the mean detection time of one rule's findings.
type RuleDetection struct {
	Rule        string  `json:"rule"`
	Findings    int     `json:"findings"`
	MeanSeconds float64 `json:"mean_seconds"`
}

// ServiceCount is the number of open findings through one service.
type ServiceCount struct {
	Service  string `json:"service"`
	Findings int    `json:"findings"`
}

// DefaultTopEdges is how many crossing edges Stats reports unless told.
const DefaultTopEdges = 10

// Summarize computes Stats from the latest version of each finding (as
// store.Latest returns them), keeping those that pass f. It mirrors the
// stats queries of queries.sql one for one.
func Summarize(latest []store.Evidence, f store.Filter, top int) Stats {
	if top <= 0 {
		top = DefaultTopEdges
	}
	type pairKey struct{ day, a, b string }
	type edgeKey struct{ fromService, fromSpan, toService, toSpan string }
	pairs := map[pairKey]map[string]bool{}
	edges := map[edgeKey]*struct {
		leaks  map[string]bool
		latest time.Time
	}{}
	type detection struct {
		n   int
		sum float64
	}
	rules := map[string]*detection{}
	open := map[string]map[string]bool{}
	st := Stats{}
	for i := range latest {
		ev := &latest[i]
		if !f.Match(ev) {
			continue
		}
		st.Findings++
		day := ev.FirstSeen.UTC().Format(time.DateOnly)
		for _, a := range ev.Tenants {
			for _, b := range ev.Tenants {
				if a < b {
					k := pairKey{day, a, b}
					if pairs[k] == nil {
						pairs[k] = map[string]bool{}
					}
					pairs[k][ev.LeakID] = true
				}
			}
		}
		for _, e := range ev.CrossingEdges {
			k := edgeKey{e.From.Service, e.From.Span, e.To.Service, e.To.Span}
			c := edges[k]
			if c == nil {
				c = &struct {
					leaks  map[string]bool
					latest time.Time
				}{leaks: map[string]bool{}}
				edges[k] = c
			}
			c.leaks[ev.LeakID] = true
			if ev.LastSeen.After(c.latest) {
				c.latest = ev.LastSeen
			}
		}
		d := rules[ev.Rule]
		if d == nil {
			d = &detection{}
			rules[ev.Rule] = d
		}
		d.n++
		d.sum += float64(ev.DetectedAt.UnixNano() - ev.FirstSeen.UnixNano())
		if ev.Status == "open" {
			for _, s := range ev.Services {
				if open[s] == nil {
					open[s] = map[string]bool{}
				}
				open[s][ev.LeakID] = true
			}
		}
	}
	st.TenantPairs = []TenantPairDay{}
	for k, leaks := range pairs {
		st.TenantPairs = append(st.TenantPairs, TenantPairDay{Day: k.day, TenantA: k.a, TenantB: k.b, Findings: len(leaks)})
	}
	slices.SortFunc(st.TenantPairs, func(x, y TenantPairDay) int {
		return cmp.Or(cmp.Compare(x.Day, y.Day), cmp.Compare(x.TenantA, y.TenantA), cmp.Compare(x.TenantB, y.TenantB))
	})
	st.TopEdges = []EdgeCount{}
	for k, c := range edges {
		st.TopEdges = append(st.TopEdges, EdgeCount{FromService: k.fromService, FromSpan: k.fromSpan,
			ToService: k.toService, ToSpan: k.toSpan, Findings: len(c.leaks), LatestSeen: c.latest.UTC()})
	}
	slices.SortFunc(st.TopEdges, compareEdges)
	if len(st.TopEdges) > top {
		st.TopEdges = st.TopEdges[:top]
	}
	st.Detection = []RuleDetection{}
	for rule, d := range rules {
		st.Detection = append(st.Detection, RuleDetection{Rule: rule, Findings: d.n, MeanSeconds: d.sum / float64(d.n) / 1e9})
	}
	slices.SortFunc(st.Detection, func(x, y RuleDetection) int { return cmp.Compare(x.Rule, y.Rule) })
	st.OpenByService = []ServiceCount{}
	for s, leaks := range open {
		st.OpenByService = append(st.OpenByService, ServiceCount{Service: s, Findings: len(leaks)})
	}
	slices.SortFunc(st.OpenByService, func(x, y ServiceCount) int {
		return cmp.Or(cmp.Compare(y.Findings, x.Findings), cmp.Compare(x.Service, y.Service))
	})
	return st
}

// compareEdges orders edges as the top_crossing_edges query does: most
// findings first, then by the edge's names.
func compareEdges(x, y EdgeCount) int {
	return cmp.Or(cmp.Compare(y.Findings, x.Findings),
		cmp.Compare(x.FromService, y.FromService), cmp.Compare(x.FromSpan, y.FromSpan),
		cmp.Compare(x.ToService, y.ToService), cmp.Compare(x.ToSpan, y.ToSpan))
}

// SpanHistory returns every evidence span any version of one finding
// recorded, each in the form of the latest version that recorded it: first
// the spans of the latest version in evidence order, then spans only earlier
// versions had, newest version first. versions are the finding's records in
// any order. It is what tenant_leak_spans holds for the finding, so Show
// answers the same from the journal and from ClickHouse.
func SpanHistory(versions []store.Evidence) []store.Span {
	var rows []versionedSpan
	best := map[string]int{}
	var latest uint64
	for i := range versions {
		ev := &versions[i]
		latest = max(latest, ev.Version)
		for j, s := range ev.Spans {
			v := versionedSpan{Version: ev.Version, Index: j, Span: s}
			if k, ok := best[s.SpanID]; ok {
				if ev.Version > rows[k].Version {
					rows[k] = v
				}
				continue
			}
			best[s.SpanID] = len(rows)
			rows = append(rows, v)
		}
	}
	return orderSpans(rows)
}

// orderSpans sorts one finding's spans newest version first, then by their
// position in that version's evidence.
func orderSpans(rows []versionedSpan) []store.Span {
	slices.SortFunc(rows, func(x, y versionedSpan) int {
		return cmp.Or(cmp.Compare(y.Version, x.Version), cmp.Compare(x.Index, y.Index), cmp.Compare(x.Span.SpanID, y.Span.SpanID))
	})
	out := make([]store.Span, len(rows))
	for i, r := range rows {
		out[i] = r.Span
	}
	return out
}

// latestSpans keeps the spans recorded by version, in evidence order.
func latestSpans(rows []versionedSpan, version uint64) []store.Span {
	var keep []versionedSpan
	for _, r := range rows {
		if r.Version == version {
			keep = append(keep, r)
		}
	}
	spans := orderSpans(keep)
	if spans == nil {
		spans = []store.Span{}
	}
	return spans
}
