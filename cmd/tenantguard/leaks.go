package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
	chstore "github.com/tenantguard/tenantguard/store/clickhouse"
	"github.com/tenantguard/tenantguard/store/journal"
)

type leaksFlags struct {
	configs   []string
	sets      []string
	processor string
	since     time.Duration
	tenant    string
	service   string
	rule      string
	severity  string
	status    string
	json      bool
	all       bool
	// journal reads the local journal even when ClickHouse is configured.
	journal bool
	// top is how many crossing edges `leaks stats` reports.
	top int
}

// check refuses a filter value that names no rule, severity or status:
// a typo must not read as "no findings".
func (lf *leaksFlags) check() error {
	for _, c := range []struct {
		flag, value string
		parse       func(string) error
	}{
		{"--rule", lf.rule, func(v string) error { _, err := detector.ParseRule(v); return err }},
		{"--severity", lf.severity, func(v string) error { _, err := detector.ParseSeverity(v); return err }},
		{"--status", lf.status, func(v string) error { _, err := detector.ParseStatus(v); return err }},
	} {
		if c.value == "" {
			continue
		}
		if err := c.parse(c.value); err != nil {
			return fmt.Errorf("%s: %w", c.flag, err)
		}
	}
	return nil
}

// withdrawnListed reports whether `leaks list` shows withdrawn findings:
// with --all, or when --status asks for allowed or reclassified ones.
func (lf *leaksFlags) withdrawnListed() bool {
	return lf.all || detector.Status(lf.status).Withdrawn()
}

// keep applies the filters the stores do not: --severity and --status,
// and the withdrawn findings `leaks list` hides.
func (lf *leaksFlags) keep(ev *store.Evidence) bool {
	switch {
	case !lf.withdrawnListed() && detector.Status(ev.Status).Withdrawn():
		return false
	case lf.severity != "" && detector.Severity(ev.Severity).Rank() < detector.Severity(lf.severity).Rank():
		return false
	case lf.status != "" && ev.Status != lf.status:
		return false
	}
	return true
}

func (lf *leaksFlags) filter() store.Filter {
	f := store.Filter{Tenant: lf.tenant, Service: lf.service, Rule: lf.rule, IncludeAllowed: lf.withdrawnListed()}
	if lf.since > 0 {
		f.Since = time.Now().Add(-lf.since)
	}
	return f
}

func newLeaksCommand() *cobra.Command {
	lf := &leaksFlags{}
	leaks := &cobra.Command{
		Use:   "leaks",
		Short: "Read the leak history from the evidence store the collector config names",
		Long: "Read the leak history from the evidence store the collector config names: ClickHouse when " +
			"store.clickhouse is configured, else the collector's journal.",
	}
	leaks.PersistentFlags().StringArrayVar(&lf.configs, "config", nil,
		"collector config file(s), as given to the collector; several merge in order")
	leaks.PersistentFlags().StringArrayVar(&lf.sets, "set", nil,
		"override a config key, as for the collector, e.g. --set=processors.tenantguard.store.journal.path=/var/lib/leaks.jsonl")
	leaks.PersistentFlags().StringVar(&lf.processor, "processor", "",
		"which tenantguard processor's store to read (e.g. tenantguard/edge) when the config has several")
	leaks.PersistentFlags().BoolVar(&lf.journal, "journal", false,
		"read this collector's local journal even when the config names ClickHouse")

	filterFlags := func(cmd *cobra.Command) {
		cmd.Flags().DurationVar(&lf.since, "since", 0, "only findings seen within this long, e.g. 24h (default: all)")
		cmd.Flags().StringVar(&lf.tenant, "tenant", "", "only findings that involve this tenant")
		cmd.Flags().StringVar(&lf.service, "service", "", "only findings whose trace passed through this service")
		cmd.Flags().StringVar(&lf.rule, "rule", "", "only findings of this rule: "+detector.Names(detector.Rules))
		cmd.Flags().BoolVar(&lf.all, "all", false, "also count findings withdrawn by an allow rule")
	}
	// Errors are printed once, by main, as one line; a flag error names the
	// help to read rather than printing the whole usage.
	quiet := func(cmd *cobra.Command) {
		cmd.SilenceUsage = true
		cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
			return fmt.Errorf("%w (see %s --help)", err, c.CommandPath())
		})
	}
	quiet(leaks)

	list := &cobra.Command{
		Use:   "list",
		Short: "List findings, latest version of each, most recently seen first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLeaksList(cmd.Context(), lf, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	filterFlags(list)
	quiet(list)
	list.Flags().Lookup("all").Usage = "also list withdrawn findings: allowed by an allow rule, or reclassified as a refused attempt"
	list.Flags().StringVar(&lf.severity, "severity", "", "only findings of this severity or higher: "+detector.Names(detector.Severities))
	list.Flags().StringVar(&lf.status, "status", "", "only findings with this status: "+detector.Names(detector.Statuses)+
		" (allowed and reclassified are listed without --all)")
	list.Flags().BoolVar(&lf.json, "json", false, "one JSON object per line instead of a table")
	leaks.AddCommand(list)

	show := &cobra.Command{
		Use:   "show LEAK_ID|TRACE_ID",
		Short: "Show one finding (or every finding of a trace) with its crossing edges and evidence spans",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLeaksShow(cmd.Context(), lf, args[0], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	show.Flags().BoolVar(&lf.json, "json", false, "one JSON object per finding, as leaks list --json prints them")
	quiet(show)
	leaks.AddCommand(show)

	stats := &cobra.Command{
		Use:   "stats",
		Short: "Findings per tenant pair per day, top crossing edges, time to detection, open findings by service",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLeaksStats(cmd.Context(), lf, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	filterFlags(stats)
	quiet(stats)
	stats.Flags().IntVar(&lf.top, "top", chstore.DefaultTopEdges, "how many crossing edges to report")
	stats.Flags().BoolVar(&lf.json, "json", false, "one JSON object instead of tables")
	leaks.AddCommand(stats)
	report := newReportCommand(lf)
	quiet(report)
	leaks.AddCommand(report)
	return leaks
}

// leakSource is where the leaks commands read: the journal or ClickHouse.
// Both answer the same questions with the same records.
type leakSource interface {
	// List returns the latest version of each matching finding, most
	// recently seen first.
	List(ctx context.Context, f store.Filter) ([]store.Evidence, error)
	// Show finds the findings named by id: the one with that leak id, else
	// every finding of the trace with that id.
	Show(ctx context.Context, id string) ([]shownFinding, error)
	Stats(ctx context.Context, f store.Filter, top int) (chstore.Stats, error)
	// Describe names the source in messages.
	Describe() string
	Close() error
}

// shownFinding is a finding's latest version and every evidence span its
// versions recorded.
type shownFinding struct {
	ev      store.Evidence
	history []store.Span
}

func openLeakSource(ctx context.Context, lf *leaksFlags, errOut io.Writer) (leakSource, error) {
	cfg, err := loadProcessorConfig(ctx, lf.configs, lf.sets, lf.processor)
	if err != nil {
		return nil, err
	}
	if ch := cfg.Store.ClickHouse; ch.Enabled() && !lf.journal {
		where := fmt.Sprintf("ClickHouse at %s (database %s)", strings.Join(ch.Endpoints, ", "), ch.Database)
		r, err := openClickHouse(ctx, ch)
		if err != nil {
			return nil, fmt.Errorf("reading findings from %s: %w\n(to read this collector's local journal instead, add --journal)", where, err)
		}
		return &clickhouseLeaks{r: r, where: where}, nil
	}
	return openJournalLeaks(cfg.Store.Journal.Path, errOut)
}

// journalPath is where the leaks commands read the journal: the config's
// path, made absolute. The collector resolves a relative path against its
// own working directory, which the CLI cannot know, so the CLI resolves it
// against the current one and names the absolute path it read.
func journalPath(path string) (string, error) {
	if strings.TrimSpace(path) == "" {
		return "", errors.New("store.journal.path is empty in the config")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("store.journal.path %q: %w", path, err)
	}
	return abs, nil
}

// ---------------------------------------------------------------- journal

type journalLeaks struct {
	path string
	recs []store.Evidence
}

func openJournalLeaks(configured string, errOut io.Writer) (*journalLeaks, error) {
	path, err := journalPath(configured)
	if err != nil {
		return nil, err
	}
	// journal.ReadFile reads a missing file as an empty journal (right for
	// a collector that has recorded nothing yet); for a reader it is
	// almost always the wrong directory, and must not say "no findings".
	if _, err := os.Stat(path); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("journal %s: %w", path, err)
		}
		hint := ""
		if !filepath.IsAbs(configured) {
			hint = fmt.Sprintf(" (the config's relative store.journal.path %q is read from the current directory; "+
				"run from the collector's working directory, or pass --set processors.tenantguard.store.journal.path=ABSOLUTE_PATH)", configured)
		}
		return nil, fmt.Errorf("no journal at %s%s", path, hint)
	}
	recs, rep, err := journal.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if rep.TornTail {
		fmt.Fprintf(errOut, "note: %s ends in a torn line (a write cut short by a crash); it was skipped\n", path)
	}
	if len(rep.Corrupt) > 0 {
		fmt.Fprintf(errOut, "warning: %s has %d unreadable line(s) (first: line %d); they were skipped\n", path, len(rep.Corrupt), rep.Corrupt[0])
	}
	return &journalLeaks{path: path, recs: recs}, nil
}

func (j *journalLeaks) List(_ context.Context, f store.Filter) ([]store.Evidence, error) {
	var found []store.Evidence
	for _, ev := range store.Latest(j.recs) {
		if f.Match(&ev) {
			found = append(found, ev)
		}
	}
	return found, nil
}

func (j *journalLeaks) Show(_ context.Context, id string) ([]shownFinding, error) {
	byLeak := map[string][]store.Evidence{}
	for _, ev := range j.recs {
		if ev.LeakID == id {
			byLeak[ev.LeakID] = append(byLeak[ev.LeakID], ev)
		}
	}
	if len(byLeak) == 0 {
		for _, ev := range j.recs {
			if ev.TraceID == id {
				byLeak[ev.LeakID] = append(byLeak[ev.LeakID], ev)
			}
		}
	}
	var out []shownFinding
	for _, versions := range byLeak {
		out = append(out, shownFinding{ev: store.Latest(versions)[0], history: chstore.SpanHistory(versions)})
	}
	// The order of the findings_of_trace query.
	sort.Slice(out, func(a, b int) bool {
		if out[a].ev.Rule != out[b].ev.Rule {
			return out[a].ev.Rule < out[b].ev.Rule
		}
		return out[a].ev.LeakID < out[b].ev.LeakID
	})
	return out, nil
}

func (j *journalLeaks) Stats(_ context.Context, f store.Filter, top int) (chstore.Stats, error) {
	return chstore.Summarize(store.Latest(j.recs), f, top), nil
}

func (j *journalLeaks) Describe() string { return j.path }
func (j *journalLeaks) Close() error     { return nil }

// ---------------------------------------------------------------- ClickHouse

// clickhouseReader is what the leaks commands need of *chstore.Client.
type clickhouseReader interface {
	List(ctx context.Context, f store.Filter) ([]store.Evidence, error)
	Show(ctx context.Context, leakID string) (store.Evidence, []store.Span, error)
	Trace(ctx context.Context, traceID string) ([]store.Evidence, error)
	Stats(ctx context.Context, f store.Filter, top int) (chstore.Stats, error)
	Coverage(ctx context.Context, since, until time.Time, tenant string) ([]store.Coverage, []string, error)
	Close() error
}

// openClickHouse connects for reading only: analysts never create or
// migrate the schema. Tests replace it.
var openClickHouse = func(ctx context.Context, cfg config.ClickHouse) (clickhouseReader, error) {
	cfg.CreateSchema = false
	c, err := chstore.Open(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	return c, nil
}

type clickhouseLeaks struct {
	r     clickhouseReader
	where string
}

func (c *clickhouseLeaks) List(ctx context.Context, f store.Filter) ([]store.Evidence, error) {
	return c.r.List(ctx, f)
}

func (c *clickhouseLeaks) Show(ctx context.Context, id string) ([]shownFinding, error) {
	ev, history, err := c.r.Show(ctx, id)
	if err == nil {
		return []shownFinding{{ev: ev, history: history}}, nil
	}
	if !errors.Is(err, chstore.ErrNotFound) || !isHex32(id) {
		return nil, err
	}
	found, err := c.r.Trace(ctx, id)
	if err != nil {
		return nil, err
	}
	var out []shownFinding
	for _, f := range found {
		ev, history, err := c.r.Show(ctx, f.LeakID)
		if err != nil {
			return nil, err
		}
		out = append(out, shownFinding{ev: ev, history: history})
	}
	return out, nil
}

func (c *clickhouseLeaks) Stats(ctx context.Context, f store.Filter, top int) (chstore.Stats, error) {
	return c.r.Stats(ctx, f, top)
}

func (c *clickhouseLeaks) Describe() string { return c.where }
func (c *clickhouseLeaks) Close() error     { return c.r.Close() }

func isHex32(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------- commands

func runLeaksList(ctx context.Context, lf *leaksFlags, out, errOut io.Writer) error {
	if err := lf.check(); err != nil {
		return err
	}
	src, err := openLeakSource(ctx, lf, errOut)
	if err != nil {
		return err
	}
	defer src.Close()
	found, err := src.List(ctx, lf.filter())
	if err != nil {
		return err
	}
	// The stores leave out allowed findings; a reclassified one is withdrawn
	// too (the trace's blocked_attempt finding tells the story).
	found = slices.DeleteFunc(found, func(ev store.Evidence) bool { return !lf.keep(&ev) })
	if lf.json {
		return writeEvidenceJSON(out, found)
	}
	if len(found) == 0 {
		fmt.Fprintf(errOut, "no findings in %s\n", src.Describe())
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LAST SEEN\tRULE\tSEVERITY\tSTATUS\tTENANTS\tTRACE\tMESSAGE")
	for i := range found {
		ev := &found[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ev.LastSeen.Format(time.RFC3339), store.OneLine(ev.Rule),
			store.OneLine(ev.Severity), store.OneLine(ev.Status), store.OneLine(strings.Join(ev.Tenants, ",")), store.OneLine(ev.TraceID),
			ev.Message(store.Plain))
	}
	return tw.Flush()
}

func writeEvidenceJSON(out io.Writer, evs []store.Evidence) error {
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for i := range evs {
		if err := enc.Encode(&evs[i]); err != nil {
			return err
		}
	}
	return nil
}

func runLeaksShow(ctx context.Context, lf *leaksFlags, id string, out, errOut io.Writer) error {
	id = strings.ToLower(strings.TrimSpace(id))
	src, err := openLeakSource(ctx, lf, errOut)
	if err != nil {
		return err
	}
	defer src.Close()
	found, err := src.Show(ctx, id)
	if err != nil && !errors.Is(err, chstore.ErrNotFound) {
		return err
	}
	if len(found) == 0 {
		return fmt.Errorf("no finding with leak id or trace id %s in %s", id, src.Describe())
	}
	if lf.json {
		evs := make([]store.Evidence, len(found))
		for i := range found {
			evs[i] = found[i].ev
		}
		return writeEvidenceJSON(out, evs)
	}
	for i := range found {
		if i > 0 {
			fmt.Fprintln(out)
		}
		if err := writeFinding(out, &found[i]); err != nil {
			return err
		}
	}
	return nil
}

// writeFinding prints one finding for a person: every field of the
// record, the facts first, then the crossing edges, mismatches, keys,
// queries and evidence spans as tables. Values come from telemetry, so each
// is printed on one line (store.OneLine) whatever it holds.
func writeFinding(out io.Writer, f *shownFinding) error {
	ev := &f.ev
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(label string, cells ...string) {
		for i := range cells {
			cells[i] = store.OneLine(cells[i])
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, strings.Join(cells, ""))
	}
	row("FINDING", ev.LeakID, fmt.Sprintf(" (version %d)", ev.Version))
	row("MESSAGE", ev.Message(store.Plain))
	row("RULE", ev.Rule, ", severity ", ev.Severity, ", status ", ev.Status)
	if ev.Reason != "" {
		row("REASON", ev.Reason)
	}
	if ev.AllowedBy != "" {
		row("ALLOWED BY", ev.AllowedBy)
	}
	row("TRACE", ev.TraceID)
	row("TENANTS", strings.Join(ev.Tenants, ", "))
	row("SERVICES", strings.Join(ev.Services, ", "))
	row("SEEN", fmt.Sprintf("%s to %s, %s", ev.FirstSeen.Format(time.RFC3339Nano), ev.LastSeen.Format(time.RFC3339Nano),
		plural(ev.SpanCount, "span", "spans")))
	row("DETECTED", fmt.Sprintf("%s (%s after the first span)", ev.DetectedAt.Format(time.RFC3339Nano), ev.DetectedAt.Sub(ev.FirstSeen)))
	if ev.Collector != "" {
		row("COLLECTOR", ev.Collector)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	table := func(title, header string, rows [][]string) error {
		if len(rows) == 0 {
			return nil
		}
		fmt.Fprintln(out, "\n"+title)
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, header)
		for _, r := range rows {
			for i := range r {
				r[i] = dash(store.OneLine(r[i]))
			}
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		return tw.Flush()
	}
	var edges, mismatches, keys, queries [][]string
	for _, e := range ev.CrossingEdges {
		via := "parent"
		if e.Link {
			via = "span link"
		}
		from := e.From.SpanID
		if e.From.TraceID != "" {
			from = e.From.TraceID + "/" + e.From.SpanID
		}
		edges = append(edges, []string{e.From.Tenant, e.From.Service, e.From.Span, from, e.To.Tenant, e.To.Service, e.To.Span,
			e.To.SpanID, strconv.Itoa(e.Hops), via, e.Outcome})
	}
	for _, m := range ev.Mismatches {
		var vals []string
		for _, v := range m.Values {
			src := "span"
			if v.Resource {
				src = "resource"
			}
			vals = append(vals, fmt.Sprintf("%s=%s (%s)", v.Key, v.Tenant, src))
		}
		mismatches = append(mismatches, []string{m.SpanID, m.Service, m.Span, strings.Join(vals, ", ")})
	}
	for _, k := range ev.Keys {
		keyTenant := k.KeyTenant
		if k.Global {
			keyTenant = "global key"
			if k.KeyTenant != "" {
				keyTenant += ", " + k.KeyTenant
			}
		}
		keys = append(keys, []string{k.SpanID, k.Service, k.Span, k.Attribute, k.Identifier, keyTenant, k.SpanTenant})
	}
	for _, q := range ev.Queries {
		queries = append(queries, []string{q.SpanID, q.Service, q.Span, strings.Join(q.Tables, ", ")})
	}
	for _, t := range []struct {
		title, header string
		rows          [][]string
	}{
		{"CROSSING EDGES", "FROM TENANT\tFROM SERVICE\tFROM SPAN\tFROM SPAN ID\tTO TENANT\tTO SERVICE\tTO SPAN\tTO SPAN ID\tHOPS\tVIA\tOUTCOME", edges},
		{"MISMATCHES", "SPAN ID\tSERVICE\tSPAN\tTENANT VALUES", mismatches},
		{"KEYS", "SPAN ID\tSERVICE\tSPAN\tATTRIBUTE\tKEY ID\tKEY TENANT\tSPAN TENANT", keys},
		{"UNSCOPED QUERIES (statement text is never stored)", "SPAN ID\tSERVICE\tSPAN\tTABLES", queries},
	} {
		if err := table(t.title, t.header, t.rows); err != nil {
			return err
		}
	}
	spanRows := func(spans []store.Span) [][]string {
		var rows [][]string
		for _, s := range spans {
			data := ""
			if s.Data {
				data = "yes"
			}
			rows = append(rows, []string{s.SpanID, s.ParentID, s.Service, s.Name, s.Tenant, s.TenantKey, s.Outcome, data})
		}
		return rows
	}
	const spanHeader = "SPAN ID\tPARENT\tSERVICE\tSPAN\tTENANT\tTENANT KEY\tOUTCOME\tREAD DATA"
	if err := table("EVIDENCE SPANS", spanHeader, spanRows(ev.Spans)); err != nil {
		return err
	}
	if err := writeSpanDetails(out, ev.Spans); err != nil {
		return err
	}
	var earlier []store.Span
	for _, s := range f.history {
		if !slices.ContainsFunc(ev.Spans, func(x store.Span) bool { return x.SpanID == s.SpanID }) {
			earlier = append(earlier, s)
		}
	}
	return table("SPANS ONLY EARLIER VERSIONS RECORDED", spanHeader, spanRows(earlier))
}

// writeSpanDetails lists what the evidence spans carried, one attribute a
// line: values outside the clear list are digests (hmac-sha256:…) or
// [redacted], as stored.
func writeSpanDetails(out io.Writer, spans []store.Span) error {
	var any bool
	for _, s := range spans {
		any = any || s.Kind != "" || len(s.Attributes) > 0 || !s.StartTime.IsZero()
	}
	if !any {
		return nil
	}
	fmt.Fprintln(out, "\nEVIDENCE SPAN DETAILS")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SPAN ID\tKIND\tSTATUS\tSTART\tDURATION\tATTRIBUTE\tVALUE")
	for _, s := range spans {
		if s.Kind == "" && len(s.Attributes) == 0 && s.StartTime.IsZero() {
			continue
		}
		start := ""
		if !s.StartTime.IsZero() {
			start = s.StartTime.Format(time.RFC3339Nano)
		}
		row := fmt.Sprintf("%s\t%s\t%s\t%s\t%s", s.SpanID, dash(store.OneLine(s.Kind)), dash(store.OneLine(s.Status)), dash(start),
			time.Duration(s.DurationNs))
		keys := slices.Sorted(maps.Keys(s.Attributes))
		if len(keys) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\n", row)
		}
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", row, store.OneLine(k), store.OneLine(s.Attributes[k]))
			row = "\t\t\t\t"
		}
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runLeaksStats(ctx context.Context, lf *leaksFlags, out, errOut io.Writer) error {
	if err := lf.check(); err != nil {
		return err
	}
	src, err := openLeakSource(ctx, lf, errOut)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := src.Stats(ctx, lf.filter(), lf.top)
	if err != nil {
		return err
	}
	if lf.json {
		enc := json.NewEncoder(out)
		enc.SetEscapeHTML(false)
		return enc.Encode(&st)
	}
	if st.Findings == 0 {
		fmt.Fprintf(errOut, "no findings in %s\n", src.Describe())
		return nil
	}
	fmt.Fprintf(out, "%s in %s\n", plural(st.Findings, "finding", "findings"), src.Describe())
	section := func(title, header string, rows func(tw io.Writer)) error {
		fmt.Fprintln(out, "\n"+title)
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, header)
		rows(tw)
		return tw.Flush()
	}
	if err := section("FINDINGS PER TENANT PAIR PER DAY (UTC, by first span)", "DAY\tTENANT\tTENANT\tFINDINGS", func(tw io.Writer) {
		for _, p := range st.TenantPairs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", p.Day, p.TenantA, p.TenantB, p.Findings)
		}
	}); err != nil {
		return err
	}
	if err := section("TOP CROSSING EDGES", "FROM SERVICE\tFROM SPAN\tTO SERVICE\tTO SPAN\tFINDINGS\tLAST SEEN", func(tw io.Writer) {
		for _, e := range st.TopEdges {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", e.FromService, e.FromSpan, e.ToService, e.ToSpan, e.Findings,
				e.LatestSeen.Format(time.RFC3339))
		}
	}); err != nil {
		return err
	}
	if err := section("TIME FROM FIRST SPAN TO DETECTION", "RULE\tFINDINGS\tMEAN", func(tw io.Writer) {
		for _, d := range st.Detection {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", d.Rule, d.Findings, time.Duration(d.MeanSeconds*float64(time.Second)).Round(time.Millisecond))
		}
	}); err != nil {
		return err
	}
	return section("OPEN FINDINGS BY SERVICE", "SERVICE\tOPEN FINDINGS", func(tw io.Writer) {
		for _, s := range st.OpenByService {
			fmt.Fprintf(tw, "%s\t%d\n", s.Service, s.Findings)
		}
	})
}
