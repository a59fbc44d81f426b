package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"

	"github.com/tenantguard/tenantguard/alerts"
	"github.com/tenantguard/tenantguard/config"
	tenantguardprocessor "github.com/tenantguard/tenantguard/processor"
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
	json      bool
	all       bool
	// journal reads the local journal even when ClickHouse is configured.
	journal bool
	// top is how many crossing edges `leaks stats` reports.
	top int
}

func (lf *leaksFlags) filter() store.Filter {
	f := store.Filter{Tenant: lf.tenant, Service: lf.service, Rule: lf.rule, IncludeAllowed: lf.all}
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
		cmd.Flags().StringVar(&lf.rule, "rule", "", "only findings of this rule (cross_tenant_trace, tenant_mismatch)")
		cmd.Flags().BoolVar(&lf.all, "all", false, "also count findings withdrawn by an allow rule")
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List findings, latest version of each, most recently seen first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLeaksList(cmd.Context(), lf, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	filterFlags(list)
	list.Flags().Lookup("all").Usage = "also list findings withdrawn by an allow rule"
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
	show.Flags().BoolVar(&lf.json, "json", false, "one JSON object per finding, as `leaks list --json` prints them")
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
	stats.Flags().IntVar(&lf.top, "top", chstore.DefaultTopEdges, "how many crossing edges to report")
	stats.Flags().BoolVar(&lf.json, "json", false, "one JSON object instead of tables")
	leaks.AddCommand(stats)
	leaks.AddCommand(newReportCommand(lf))
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

// ---------------------------------------------------------------- journal

type journalLeaks struct {
	path string
	recs []store.Evidence
}

func openJournalLeaks(path string, errOut io.Writer) (*journalLeaks, error) {
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
	src, err := openLeakSource(ctx, lf, errOut)
	if err != nil {
		return err
	}
	defer src.Close()
	found, err := src.List(ctx, lf.filter())
	if err != nil {
		return err
	}
	if lf.json {
		return writeEvidenceJSON(out, found)
	}
	if len(found) == 0 {
		fmt.Fprintf(errOut, "no findings in %s\n", src.Describe())
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LAST SEEN\tRULE\tSEVERITY\tSTATUS\tTENANTS\tTRACE\tSUMMARY")
	for i := range found {
		ev := &found[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ev.LastSeen.Format(time.RFC3339), ev.Rule, ev.Severity,
			ev.Status, strings.Join(ev.Tenants, ","), ev.TraceID, alerts.Summary(ev))
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

// writeFinding prints one finding for a person: the facts, then the
// crossing edges, mismatches and evidence spans as tables.
func writeFinding(out io.Writer, f *shownFinding) error {
	ev := &f.ev
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	status := ev.Status
	if ev.AllowedBy != "" {
		status += " (" + ev.AllowedBy + ")"
	}
	fmt.Fprintf(tw, "FINDING\t%s (version %d)\n", ev.LeakID, ev.Version)
	fmt.Fprintf(tw, "SUMMARY\t%s\n", alerts.Summary(ev))
	fmt.Fprintf(tw, "RULE\t%s, severity %s, status %s\n", ev.Rule, ev.Severity, status)
	fmt.Fprintf(tw, "TRACE\t%s\n", ev.TraceID)
	fmt.Fprintf(tw, "TENANTS\t%s\n", strings.Join(ev.Tenants, ", "))
	fmt.Fprintf(tw, "SERVICES\t%s\n", strings.Join(ev.Services, ", "))
	fmt.Fprintf(tw, "SEEN\t%s to %s, %d spans\n", ev.FirstSeen.Format(time.RFC3339Nano), ev.LastSeen.Format(time.RFC3339Nano), ev.SpanCount)
	fmt.Fprintf(tw, "DETECTED\t%s (%s after the first span)\n", ev.DetectedAt.Format(time.RFC3339Nano), ev.DetectedAt.Sub(ev.FirstSeen))
	if ev.Collector != "" {
		fmt.Fprintf(tw, "COLLECTOR\t%s\n", ev.Collector)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(ev.CrossingEdges) > 0 {
		fmt.Fprintln(out, "\nCROSSING EDGES")
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "FROM TENANT\tFROM SERVICE\tFROM SPAN\tTO TENANT\tTO SERVICE\tTO SPAN\tHOPS")
		for _, e := range ev.CrossingEdges {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", e.From.Tenant, e.From.Service, e.From.Span,
				e.To.Tenant, e.To.Service, e.To.Span, e.Hops)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(ev.Mismatches) > 0 {
		fmt.Fprintln(out, "\nMISMATCHES")
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SPAN ID\tSERVICE\tSPAN\tTENANT VALUES")
		for _, m := range ev.Mismatches {
			var vals []string
			for _, v := range m.Values {
				src := "span"
				if v.Resource {
					src = "resource"
				}
				vals = append(vals, fmt.Sprintf("%s=%s (%s)", v.Key, v.Tenant, src))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.SpanID, m.Service, m.Span, strings.Join(vals, ", "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	writeSpans := func(title string, spans []store.Span) error {
		fmt.Fprintln(out, "\n"+title)
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SPAN ID\tPARENT\tSERVICE\tSPAN\tTENANT\tTENANT KEY")
		for _, s := range spans {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.SpanID, dash(s.ParentID), s.Service, s.Name, dash(s.Tenant), dash(s.TenantKey))
		}
		return tw.Flush()
	}
	if len(ev.Spans) > 0 {
		if err := writeSpans("EVIDENCE SPANS", ev.Spans); err != nil {
			return err
		}
		if err := writeSpanDetails(out, ev.Spans); err != nil {
			return err
		}
	}
	var earlier []store.Span
	for _, s := range f.history {
		if !slices.ContainsFunc(ev.Spans, func(x store.Span) bool { return x.SpanID == s.SpanID }) {
			earlier = append(earlier, s)
		}
	}
	if len(earlier) > 0 {
		return writeSpans("SPANS ONLY EARLIER VERSIONS RECORDED", earlier)
	}
	return nil
}

// writeSpanDetails lists what the evidence spans carried, one attribute a
// line: values outside the clear list are digests (hmac-sha256:…) or
// [redacted], as stored.
func writeSpanDetails(out io.Writer, spans []store.Span) error {
	var any bool
	for _, s := range spans {
		any = any || s.Kind != "" || len(s.Attributes) > 0
	}
	if !any {
		return nil
	}
	fmt.Fprintln(out, "\nEVIDENCE SPAN DETAILS")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SPAN ID\tKIND\tSTATUS\tDURATION\tATTRIBUTE\tVALUE")
	for _, s := range spans {
		if s.Kind == "" && len(s.Attributes) == 0 {
			continue
		}
		row := fmt.Sprintf("%s\t%s\t%s\t%s", s.SpanID, dash(s.Kind), dash(s.Status), time.Duration(s.DurationNs))
		keys := slices.Sorted(maps.Keys(s.Attributes))
		if len(keys) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\n", row)
		}
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", row, k, s.Attributes[k])
			row = "\t\t\t"
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
	fmt.Fprintf(out, "%d findings in %s\n", st.Findings, src.Describe())
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

// loadProcessorConfig resolves the collector config the way the collector
// does (same providers, same --set syntax) and decodes the tenantguard
// processor's settings over the factory defaults.
func loadProcessorConfig(ctx context.Context, configs, sets []string, name string) (*tenantguardprocessor.Config, error) {
	if len(configs) == 0 {
		return nil, errors.New("--config is required: pass the collector config file the collector runs with")
	}
	uris := append([]string(nil), configs...)
	for _, s := range sets {
		key, val, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("--set %q: missing '=' (expected key=value)", s)
		}
		uris = append(uris, "yaml:"+strings.ReplaceAll(strings.TrimSpace(key), ".", "::")+": "+strings.TrimSpace(val))
	}
	resolver, err := confmap.NewResolver(confmap.ResolverSettings{
		URIs:              uris,
		ProviderFactories: providerFactories(),
		DefaultScheme:     "env",
	})
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	conf, err := resolver.Resolve(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	procs, err := conf.Sub("processors")
	if err != nil {
		return nil, fmt.Errorf("reading config: processors: %w", err)
	}
	var ids []string
	for key := range procs.ToStringMap() {
		var id component.ID
		if err := id.UnmarshalText([]byte(key)); err != nil {
			continue
		}
		if id.Type() == tenantguardprocessor.Type {
			ids = append(ids, key)
		}
	}
	sort.Strings(ids)
	var chosen string
	switch {
	case name != "":
		for _, id := range ids {
			if id == name {
				chosen = id
			}
		}
		if chosen == "" {
			return nil, fmt.Errorf("--processor %q: no such tenantguard processor in the config (found: %s)", name, strings.Join(ids, ", "))
		}
	case len(ids) == 0:
		return nil, errors.New("the config has no tenantguard processor under processors")
	case len(ids) > 1:
		return nil, fmt.Errorf("the config has several tenantguard processors (%s): choose one with --processor", strings.Join(ids, ", "))
	default:
		chosen = ids[0]
	}
	cfg := tenantguardprocessor.NewFactory().CreateDefaultConfig().(*tenantguardprocessor.Config)
	sub, err := procs.Sub(chosen)
	if err != nil {
		return nil, fmt.Errorf("reading config: processors::%s: %w", chosen, err)
	}
	if err := sub.Unmarshal(cfg); err != nil {
		return nil, fmt.Errorf("processors::%s: %w", chosen, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("processors::%s: %w", chosen, err)
	}
	return cfg, nil
}
