package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
	"github.com/tenantguard/tenantguard/store/journal"
)

// `tenantguard leaks report`: the evidence that isolation held, per tenant,
// for a period, from the journals and the coverage files beside them. One
// model (isolationReport), four renderings (text, JSON, Markdown, HTML).

type reportFlags struct {
	since, until string
	tenant       string
	format       string
	output       string
	journals     []string
}

func newReportCommand(lf *leaksFlags) *cobra.Command {
	rf := &reportFlags{}
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Per tenant, for a period: traces checked, services covered, crossings (none: isolation held), blocked attempts, gaps",
		Long: "Report, per tenant and for a period, what tenantguard checked and found: traces and spans checked, " +
			"services whose spans carried the tenant and those that did not, crossings that succeeded (none means " +
			"isolation held), attempts that were refused, unscoped queries, and gaps (hours without traffic). It " +
			"reads ClickHouse when the collector config names it (tenant_leaks and tenant_coverage, where every " +
			"collector's counts add up), else, or with --journal, the journal the config names (or the journals " +
			"given with --file) and the coverage files beside them (<journal>.coverage.jsonl); journals of " +
			"several collectors add up.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLeaksReport(cmd.Context(), lf, rf, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&rf.since, "since", "", "start of the period: RFC 3339 time, date (2026-03-01), or a duration back from now (24h, 7d) (default: the first record)")
	cmd.Flags().StringVar(&rf.until, "until", "", "end of the period, exclusive, in the same forms (default: the end of the last record's hour)")
	cmd.Flags().StringVar(&rf.tenant, "tenant", "", "only this tenant")
	cmd.Flags().StringVar(&rf.format, "format", "text", "text, json, markdown or html")
	cmd.Flags().StringVarP(&rf.output, "output", "o", "", "write to this file (created 0600: it names tenants) instead of stdout")
	cmd.Flags().StringArrayVar(&rf.journals, "file", nil, "a journal to read (repeat for several collectors) instead of the one --config names")
	return cmd
}

// isolationReport is the report's one model; every format renders it.
type isolationReport struct {
	Since      time.Time `json:"since"`
	Until      time.Time `json:"until"`
	Hours      int       `json:"hours"`
	Tenant     string    `json:"tenant,omitempty"`
	Sources    []string  `json:"sources"`
	Collectors []string  `json:"collectors"`
	// Totals add up the tenants' rows.
	Totals  reportTotals   `json:"totals"`
	Tenants []tenantReport `json:"tenants"`
	// QuietHours are hours of the period with no traffic from any tenant: a
	// collector down or a pipeline broken looks like perfect isolation.
	QuietHours       []hourRange     `json:"quiet_hours"`
	FindingsOverTime []findingBucket `json:"findings_over_time"`
	BucketSize       string          `json:"bucket_size"` // "hour" or "day"
	TenantPairs      []tenantPair    `json:"tenant_pairs"`
	Services         []serviceReport `json:"services"`
}

type reportTotals struct {
	Tenants int `json:"tenants"`
	// TenantTracesChecked adds up the tenants' traces: a trace that touched
	// two tenants counts for each.
	TenantTracesChecked uint64 `json:"tenant_traces_checked"`
	SpansChecked        uint64 `json:"spans_checked"`
	CrossingsSucceeded  int    `json:"crossings_succeeded"`
	BlockedAttempts     int    `json:"blocked_attempts"`
	UnscopedQueries     uint64 `json:"unscoped_queries"`
	SpansMissingTenant  uint64 `json:"spans_missing_tenant"`
}

type tenantReport struct {
	Tenant string `json:"tenant"`
	// IsolationHeld: traffic was checked and no crossing succeeded.
	IsolationHeld      bool   `json:"isolation_held"`
	TracesChecked      uint64 `json:"traces_checked"`
	SpansChecked       uint64 `json:"spans_checked"`
	CrossingsSucceeded int    `json:"crossings_succeeded"`
	BlockedAttempts    int    `json:"blocked_attempts"`
	UnscopedQueries    uint64 `json:"unscoped_queries"`
	// SpansMissingTenant are spans of tenant-aware services without a tenant.
	SpansMissingTenant uint64       `json:"spans_missing_tenant"`
	ServicesCovered    []string     `json:"services_covered"`
	ServicesNotCovered []serviceGap `json:"services_not_covered"`
	HoursWithTraffic   int          `json:"hours_with_traffic"`
	QuietHours         []hourRange  `json:"quiet_hours"`
	// Leaks are the leak ids of the crossings that succeeded.
	Leaks []string `json:"leaks"`
}

type serviceGap struct {
	Service             string `json:"service"`
	Traces              uint64 `json:"traces"`
	TracesWithoutTenant uint64 `json:"traces_without_tenant"` // traces where the service sent a span without a tenant
}

type hourRange struct {
	From  time.Time `json:"from"`
	Until time.Time `json:"until"`
}

type findingBucket struct {
	Start  time.Time      `json:"start"`
	ByRule map[string]int `json:"by_rule"`
}

type tenantPair struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Succeeded int    `json:"succeeded"`
	Refused   int    `json:"refused"`
}

type serviceReport struct {
	Service             string  `json:"service"`
	Traces              uint64  `json:"traces"`
	TracesWithoutTenant uint64  `json:"traces_without_tenant"`
	CoveredPercent      float64 `json:"covered_percent"`
}

// maxReportHours bounds the hours a report walks (gaps are per hour): a
// year.
const maxReportHours = 366 * 24

func runLeaksReport(ctx context.Context, lf *leaksFlags, rf *reportFlags, out, errOut io.Writer) error {
	render, ok := reportFormats[rf.format]
	if !ok {
		return fmt.Errorf("--format %q: want text, json, markdown or html", rf.format)
	}
	now := time.Now().UTC()
	since, err := parseWhen("--since", rf.since, now)
	if err != nil {
		return err
	}
	until, err := parseWhen("--until", rf.until, now)
	if err != nil {
		return err
	}
	sources, evs, cov, collectors, err := readReportRecords(ctx, lf, rf, errOut)
	if err != nil {
		return err
	}
	if len(evs) == 0 && len(cov) == 0 {
		fmt.Fprintf(errOut, "note: no findings and no coverage records in %s: nothing was checked, so nothing can be shown to have held\n", strings.Join(sources, ", "))
	}
	r, err := buildReport(sources, evs, cov, collectors, since, until, rf.tenant)
	if err != nil {
		return err
	}
	if rf.output == "" {
		return render(out, r)
	}
	f, err := os.OpenFile(rf.output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	if err := render(f, r); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// readReportRecords reads the latest version of every finding and every
// coverage record: from ClickHouse when the config names it (as the other
// leaks commands do, unless --journal), else from the journals (--file, or
// the config's) and the coverage files beside them. Both give the same
// report: ClickHouse sums the coverage of an hour and tenant over
// collectors, as the report does, and names the collectors that counted.
func readReportRecords(ctx context.Context, lf *leaksFlags, rf *reportFlags, errOut io.Writer) (sources []string, evs []store.Evidence, cov []store.Coverage, collectors []string, err error) {
	paths := rf.journals
	if len(paths) == 0 {
		cfg, err := loadProcessorConfig(ctx, lf.configs, lf.sets, lf.processor)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("%w (or name the journals with --file)", err)
		}
		if ch := cfg.Store.ClickHouse; ch.Enabled() && !lf.journal {
			where := fmt.Sprintf("ClickHouse at %s (database %s)", strings.Join(ch.Endpoints, ", "), ch.Database)
			evs, cov, collectors, err := readReportClickHouse(ctx, ch)
			if err != nil {
				return nil, nil, nil, nil, fmt.Errorf("reading the report from %s: %w\n(to read this collector's local journal instead, add --journal)", where, err)
			}
			return []string{where}, evs, cov, collectors, nil
		}
		paths = []string{cfg.Store.Journal.Path}
	}
	for _, p := range paths {
		recs, rep, err := journal.ReadFile(p)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		if len(rep.Corrupt) > 0 || rep.TornTail {
			fmt.Fprintf(errOut, "warning: %s: %d unreadable line(s) skipped\n", p, len(rep.Corrupt)+btoi(rep.TornTail))
		}
		evs = append(evs, recs...)
		c, crep, err := store.ReadCoverageFile(store.CoveragePath(p))
		if err != nil {
			return nil, nil, nil, nil, err
		}
		if len(crep.Corrupt) > 0 {
			fmt.Fprintf(errOut, "warning: %s: %d unreadable line(s) skipped (first: line %d)\n",
				store.CoveragePath(p), len(crep.Corrupt), crep.Corrupt[0])
		}
		cov = append(cov, c...)
	}
	return paths, store.Latest(evs), cov, nil, nil
}

// readReportClickHouse reads every finding's latest version and the whole
// coverage table, as the journal path reads whole files: the period is the
// report's to cut, and a default period comes from the records.
func readReportClickHouse(ctx context.Context, ch config.ClickHouse) ([]store.Evidence, []store.Coverage, []string, error) {
	r, err := openClickHouse(ctx, ch)
	if err != nil {
		return nil, nil, nil, err
	}
	defer r.Close()
	evs, err := r.List(ctx, store.Filter{IncludeAllowed: true})
	if err != nil {
		return nil, nil, nil, err
	}
	cov, collectors, err := r.Coverage(ctx, time.Time{}, time.Time{}, "")
	if err != nil {
		return nil, nil, nil, err
	}
	return evs, cov, collectors, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// parseWhen reads a period bound: empty (zero time), RFC 3339, a date, a
// date and minute, or a duration back from now (with d for days).
func parseWhen(flag, s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days >= 0 {
			return now.Add(-time.Duration(days) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%s %q: want an RFC 3339 time (2026-03-01T10:00:00Z), a date (2026-03-01) or a duration back from now (24h, 7d)", flag, s)
}

// crossed reports whether a finding is a crossing that stood.
func crossed(ev *store.Evidence) bool {
	return ev.Rule == string(detector.RuleCrossTenantTrace) &&
		ev.Status != string(detector.StatusAllowed) && ev.Status != string(detector.StatusReclassified)
}

func refusedAttempt(ev *store.Evidence) bool {
	return ev.Rule == string(detector.RuleBlockedAttempt) && ev.Status != string(detector.StatusAllowed)
}

// buildReport makes the report from the latest version of each finding and
// the coverage records; collectors adds names to those the records carry
// (ClickHouse's sums name theirs apart).
func buildReport(sources []string, evs []store.Evidence, cov []store.Coverage, extraCollectors []string, since, until time.Time, tenant string) (*isolationReport, error) {
	// The period defaults to the records' own: from the first hour to the
	// end of the last.
	if since.IsZero() || until.IsZero() {
		var first, last time.Time
		for i := range cov {
			h := cov[i].Hour
			if first.IsZero() || h.Before(first) {
				first = h
			}
			if end := h.Add(time.Hour); end.After(last) {
				last = end
			}
		}
		for i := range evs {
			d := evs[i].DetectedAt
			if first.IsZero() || d.Before(first) {
				first = d.Truncate(time.Hour)
			}
			if end := d.Truncate(time.Hour).Add(time.Hour); end.After(last) {
				last = end
			}
		}
		if since.IsZero() {
			since = first
		}
		if until.IsZero() {
			until = last
		}
	}
	if !until.After(since) {
		if since.IsZero() && until.IsZero() {
			until = since // no records: an empty report
		} else {
			return nil, fmt.Errorf("--until %s is not after --since %s", until.Format(time.RFC3339), since.Format(time.RFC3339))
		}
	}
	r := &isolationReport{Since: since.UTC(), Until: until.UTC(), Tenant: tenant, Sources: sources}
	firstHour := since.Truncate(time.Hour)
	hours := int(until.Sub(firstHour).Hours())
	if until.After(firstHour.Add(time.Duration(hours) * time.Hour)) {
		hours++
	}
	if hours > maxReportHours {
		return nil, fmt.Errorf("the period spans %d hours; at most %d (a year) fit in one report: narrow --since/--until", hours, maxReportHours)
	}
	r.Hours = hours
	in := func(t time.Time) bool { return !t.Before(since) && t.Before(until) }
	involves := func(ev *store.Evidence) bool { return tenant == "" || slices.Contains(ev.Tenants, tenant) }

	rows := map[string]*tenantReport{}
	row := func(t string) *tenantReport {
		if tr, ok := rows[t]; ok {
			return tr
		}
		tr := &tenantReport{Tenant: t}
		rows[t] = tr
		return tr
	}
	type svcKey struct{ tenant, service string }
	tenantSvcs := map[svcKey]*store.ServiceCoverage{}
	services := map[string]*store.ServiceCoverage{}
	active := map[string]map[int]bool{} // tenant → hour index with traffic
	anyTraffic := map[int]bool{}
	collectors := map[string]bool{}
	for _, name := range extraCollectors {
		collectors[name] = true
	}
	for _, c := range cov {
		if c.Collector != "" {
			collectors[c.Collector] = true
		}
		// An hour counts when it overlaps the period.
		if !c.Hour.Add(time.Hour).After(since) || !c.Hour.Before(until) {
			continue
		}
		if tenant != "" && c.Tenant != tenant {
			continue
		}
		tr := row(c.Tenant)
		tr.TracesChecked += c.Traces
		tr.SpansChecked += c.Spans
		tr.UnscopedQueries += c.UnscopedQueries
		tr.SpansMissingTenant += c.SpansMissingTenant
		if c.Traces > 0 {
			h := int(c.Hour.Sub(firstHour).Hours())
			if active[c.Tenant] == nil {
				active[c.Tenant] = map[int]bool{}
			}
			active[c.Tenant][h] = true
			anyTraffic[h] = true
		}
		for name, s := range c.Services {
			for _, m := range []map[string]*store.ServiceCoverage{nil, services} {
				var cur *store.ServiceCoverage
				if m == nil {
					k := svcKey{c.Tenant, name}
					if cur = tenantSvcs[k]; cur == nil {
						cur = &store.ServiceCoverage{}
						tenantSvcs[k] = cur
					}
				} else if cur = m[name]; cur == nil {
					cur = &store.ServiceCoverage{}
					m[name] = cur
				}
				cur.Traces += s.Traces
				cur.TracesWithoutTenant += s.TracesWithoutTenant
			}
		}
	}

	bucket := time.Hour
	r.BucketSize = "hour"
	if hours > 72 {
		bucket, r.BucketSize = 24*time.Hour, "day"
	}
	buckets := map[time.Time]map[string]int{}
	pairs := map[[2]string]*tenantPair{}
	for i := range evs {
		ev := &evs[i]
		if ev.Collector != "" {
			collectors[ev.Collector] = true
		}
		if !in(ev.DetectedAt) || !involves(ev) || ev.Status == string(detector.StatusAllowed) {
			continue
		}
		b := ev.DetectedAt.UTC().Truncate(bucket)
		if buckets[b] == nil {
			buckets[b] = map[string]int{}
		}
		buckets[b][ev.Rule]++
		succeeded, refused := crossed(ev), refusedAttempt(ev)
		if !succeeded && !refused {
			continue
		}
		for _, t := range ev.Tenants {
			if tenant != "" && t != tenant {
				continue
			}
			tr := row(t)
			if succeeded {
				tr.CrossingsSucceeded++
				tr.Leaks = append(tr.Leaks, ev.LeakID)
			} else {
				tr.BlockedAttempts++
			}
		}
		seen := map[[2]string]bool{}
		for _, e := range ev.CrossingEdges {
			seen[[2]string{e.From.Tenant, e.To.Tenant}] = true
		}
		if len(seen) == 0 && len(ev.Tenants) >= 2 {
			seen[[2]string{ev.Tenants[0], ev.Tenants[1]}] = true
		}
		for k := range seen {
			p := pairs[k]
			if p == nil {
				p = &tenantPair{From: k[0], To: k[1]}
				pairs[k] = p
			}
			if succeeded {
				p.Succeeded++
			} else {
				p.Refused++
			}
		}
	}

	for _, tr := range rows {
		for k, s := range tenantSvcs {
			if k.tenant != tr.Tenant {
				continue
			}
			if s.TracesWithoutTenant == 0 {
				tr.ServicesCovered = append(tr.ServicesCovered, k.service)
			} else {
				tr.ServicesNotCovered = append(tr.ServicesNotCovered, serviceGap{Service: k.service, Traces: s.Traces, TracesWithoutTenant: s.TracesWithoutTenant})
			}
		}
		slices.Sort(tr.ServicesCovered)
		slices.SortFunc(tr.ServicesNotCovered, func(a, b serviceGap) int { return cmp.Compare(a.Service, b.Service) })
		slices.Sort(tr.Leaks)
		tr.HoursWithTraffic = len(active[tr.Tenant])
		tr.QuietHours = quietRanges(firstHour, hours, active[tr.Tenant])
		tr.IsolationHeld = tr.TracesChecked > 0 && tr.CrossingsSucceeded == 0
		r.Tenants = append(r.Tenants, *tr)
		r.Totals.TenantTracesChecked += tr.TracesChecked
		r.Totals.SpansChecked += tr.SpansChecked
		r.Totals.UnscopedQueries += tr.UnscopedQueries
		r.Totals.SpansMissingTenant += tr.SpansMissingTenant
	}
	// A crossing involves two tenants: the totals count findings, not rows.
	for i := range evs {
		ev := &evs[i]
		if !in(ev.DetectedAt) || !involves(ev) {
			continue
		}
		if crossed(ev) {
			r.Totals.CrossingsSucceeded++
		} else if refusedAttempt(ev) {
			r.Totals.BlockedAttempts++
		}
	}
	// Tenants with crossings first, then by traffic.
	slices.SortFunc(r.Tenants, func(a, b tenantReport) int {
		return cmp.Or(cmp.Compare(b.CrossingsSucceeded, a.CrossingsSucceeded), cmp.Compare(b.TracesChecked, a.TracesChecked), cmp.Compare(a.Tenant, b.Tenant))
	})
	for _, tr := range r.Tenants {
		if tr.Tenant != detector.NoTenant && tr.Tenant != detector.OtherTenants {
			r.Totals.Tenants++
		}
	}
	r.QuietHours = quietRanges(firstHour, hours, anyTraffic)
	for b, m := range buckets {
		r.FindingsOverTime = append(r.FindingsOverTime, findingBucket{Start: b, ByRule: m})
	}
	slices.SortFunc(r.FindingsOverTime, func(a, b findingBucket) int { return a.Start.Compare(b.Start) })
	for _, p := range pairs {
		r.TenantPairs = append(r.TenantPairs, *p)
	}
	slices.SortFunc(r.TenantPairs, func(a, b tenantPair) int {
		return cmp.Or(cmp.Compare(b.Succeeded, a.Succeeded), cmp.Compare(b.Refused, a.Refused), cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
	for name, s := range services {
		pct := 100.0
		if s.Traces > 0 {
			pct = 100 * float64(s.Traces-s.TracesWithoutTenant) / float64(s.Traces)
		}
		r.Services = append(r.Services, serviceReport{Service: name, Traces: s.Traces, TracesWithoutTenant: s.TracesWithoutTenant, CoveredPercent: pct})
	}
	slices.SortFunc(r.Services, func(a, b serviceReport) int {
		return cmp.Or(cmp.Compare(a.CoveredPercent, b.CoveredPercent), cmp.Compare(a.Service, b.Service))
	})
	for c := range collectors {
		r.Collectors = append(r.Collectors, c)
	}
	slices.Sort(r.Collectors)
	return r, nil
}

// quietRanges turns the hours without traffic into ranges.
func quietRanges(first time.Time, hours int, active map[int]bool) []hourRange {
	var out []hourRange
	for h := 0; h < hours; h++ {
		if active[h] {
			continue
		}
		from := first.Add(time.Duration(h) * time.Hour)
		if n := len(out); n > 0 && out[n-1].Until.Equal(from) {
			out[n-1].Until = from.Add(time.Hour)
			continue
		}
		out = append(out, hourRange{From: from, Until: from.Add(time.Hour)})
	}
	return out
}

var reportFormats = map[string]func(io.Writer, *isolationReport) error{
	"text":     writeReportText,
	"json":     writeReportJSON,
	"markdown": writeReportMarkdown,
	"html":     writeReportHTML,
}

func writeReportJSON(w io.Writer, r *isolationReport) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// tenantLabel names the pseudo-tenants in words.
func tenantLabel(t string) string {
	switch t {
	case detector.NoTenant:
		return "(no tenant)"
	case detector.OtherTenants:
		return "(other tenants, past coverage.max_tenants)"
	}
	return t
}

// verdict is the crossings column: "isolation held" when traffic was
// checked and nothing crossed.
func (tr *tenantReport) verdict() string {
	switch {
	case tr.CrossingsSucceeded > 0:
		return fmt.Sprintf("%d succeeded", tr.CrossingsSucceeded)
	case tr.Tenant == detector.NoTenant:
		return "-"
	case tr.IsolationHeld:
		return "isolation held"
	default:
		return "0 (no traffic checked)"
	}
}

func (tr *tenantReport) gapsText() string {
	var parts []string
	for _, g := range tr.ServicesNotCovered {
		parts = append(parts, fmt.Sprintf("%s: %d of %d traces with spans without a tenant", g.Service, g.TracesWithoutTenant, g.Traces))
	}
	if n := len(tr.QuietHours); n > 0 {
		parts = append(parts, fmt.Sprintf("%d quiet hour range(s): %s", n, rangesText(tr.QuietHours, 3)))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

func rangesText(rs []hourRange, limit int) string {
	var parts []string
	for i, hr := range rs {
		if i == limit {
			parts = append(parts, fmt.Sprintf("and %d more", len(rs)-limit))
			break
		}
		parts = append(parts, hr.From.Format("2006-01-02 15:04")+"–"+hr.Until.Format("15:04"))
	}
	return strings.Join(parts, ", ")
}

func (r *isolationReport) title() string {
	return fmt.Sprintf("Tenant isolation report, %s to %s UTC", r.Since.Format("2006-01-02 15:04"), r.Until.Format("2006-01-02 15:04"))
}

// clean makes a value safe for a terminal: control characters and invalid
// UTF-8 are shown escaped, never interpreted.
func clean(s string) string {
	if utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == '\t' }) < 0 {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

func writeReportText(w io.Writer, r *isolationReport) error {
	fmt.Fprintln(w, r.title())
	fmt.Fprintf(w, "%d tenants, %d spans checked, %d crossings succeeded, %d attempts refused (collectors: %s)\n\n",
		r.Totals.Tenants, r.Totals.SpansChecked, r.Totals.CrossingsSucceeded, r.Totals.BlockedAttempts,
		clean(strings.Join(r.Collectors, ", ")))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tTRACES\tSPANS\tCROSSINGS\tBLOCKED\tUNSCOPED QUERIES\tNO-TENANT SPANS\tSERVICES COVERED\tNOT COVERED")
	for i := range r.Tenants {
		tr := &r.Tenants[i]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t%d\n", clean(tenantLabel(tr.Tenant)), tr.TracesChecked, tr.SpansChecked,
			tr.verdict(), tr.BlockedAttempts, tr.UnscopedQueries, tr.SpansMissingTenant, len(tr.ServicesCovered), len(tr.ServicesNotCovered))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nGAPS")
	for i := range r.Tenants {
		tr := &r.Tenants[i]
		fmt.Fprintf(w, "  %s: %s\n", clean(tenantLabel(tr.Tenant)), clean(tr.gapsText()))
	}
	if len(r.QuietHours) > 0 {
		fmt.Fprintf(w, "  no traffic at all: %s\n", rangesText(r.QuietHours, 5))
	}
	for i := range r.Tenants {
		if tr := &r.Tenants[i]; len(tr.Leaks) > 0 {
			fmt.Fprintf(w, "\nLeaks of %s: %s (tenantguard leaks show LEAK_ID)\n", clean(tr.Tenant), strings.Join(tr.Leaks, ", "))
		}
	}
	_, err := fmt.Fprintln(w)
	return err
}

// mdCell escapes a value for a Markdown table cell.
func mdCell(s string) string {
	s = clean(s)
	r := strings.NewReplacer("|", `\|`, "`", "\\`", "*", `\*`, "_", `\_`, "<", "&lt;", ">", "&gt;", "[", `\[`, "]", `\]`)
	return r.Replace(s)
}

func writeReportMarkdown(w io.Writer, r *isolationReport) error {
	fmt.Fprintf(w, "# %s\n\n", r.title())
	fmt.Fprintf(w, "%d tenants, %d spans checked, **%d crossings succeeded**, %d attempts refused. Collectors: %s.\n\n",
		r.Totals.Tenants, r.Totals.SpansChecked, r.Totals.CrossingsSucceeded, r.Totals.BlockedAttempts,
		mdCell(strings.Join(r.Collectors, ", ")))
	fmt.Fprintln(w, "| Tenant | Traces checked | Spans checked | Crossings succeeded | Blocked attempts | Unscoped queries | Spans missing a tenant | Services covered | Gaps |")
	fmt.Fprintln(w, "|---|---:|---:|---|---:|---:|---:|---|---|")
	for i := range r.Tenants {
		tr := &r.Tenants[i]
		fmt.Fprintf(w, "| %s | %d | %d | %s | %d | %d | %d | %s | %s |\n", mdCell(tenantLabel(tr.Tenant)), tr.TracesChecked, tr.SpansChecked,
			mdCell(tr.verdict()), tr.BlockedAttempts, tr.UnscopedQueries, tr.SpansMissingTenant, mdCell(strings.Join(tr.ServicesCovered, ", ")), mdCell(tr.gapsText()))
	}
	if len(r.TenantPairs) > 0 {
		fmt.Fprintln(w, "\n## Tenant pairs\n\n| From | To | Succeeded | Refused |\n|---|---|---:|---:|")
		for _, p := range r.TenantPairs {
			fmt.Fprintf(w, "| %s | %s | %d | %d |\n", mdCell(p.From), mdCell(p.To), p.Succeeded, p.Refused)
		}
	}
	if len(r.Services) > 0 {
		fmt.Fprintln(w, "\n## Coverage per service\n\n| Service | Traces | With spans without a tenant | Covered |\n|---|---:|---:|---:|")
		for _, s := range r.Services {
			fmt.Fprintf(w, "| %s | %d | %d | %.1f%% |\n", mdCell(s.Service), s.Traces, s.TracesWithoutTenant, s.CoveredPercent)
		}
	}
	if len(r.QuietHours) > 0 {
		fmt.Fprintf(w, "\nNo traffic at all: %s.\n", rangesText(r.QuietHours, 10))
	}
	return nil
}
