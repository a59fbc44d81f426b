package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"

	"github.com/tenantguard/tenantguard/alerts"
	tenantguardprocessor "github.com/tenantguard/tenantguard/processor"
	"github.com/tenantguard/tenantguard/store"
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
}

func newLeaksCommand() *cobra.Command {
	lf := &leaksFlags{}
	leaks := &cobra.Command{
		Use:   "leaks",
		Short: "Read the leak history from the evidence store the collector config names",
	}
	leaks.PersistentFlags().StringArrayVar(&lf.configs, "config", nil,
		"collector config file(s), as given to the collector; several merge in order")
	leaks.PersistentFlags().StringArrayVar(&lf.sets, "set", nil,
		"override a config key, as for the collector, e.g. --set=processors.tenantguard.store.journal.path=/var/lib/leaks.jsonl")
	leaks.PersistentFlags().StringVar(&lf.processor, "processor", "",
		"which tenantguard processor's store to read (e.g. tenantguard/edge) when the config has several")

	list := &cobra.Command{
		Use:   "list",
		Short: "List findings, latest version of each, most recently seen first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLeaksList(cmd.Context(), lf, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	list.Flags().DurationVar(&lf.since, "since", 0, "only findings seen within this long, e.g. 24h (default: all)")
	list.Flags().StringVar(&lf.tenant, "tenant", "", "only findings that involve this tenant")
	list.Flags().StringVar(&lf.service, "service", "", "only findings whose trace passed through this service")
	list.Flags().StringVar(&lf.rule, "rule", "", "only findings of this rule (cross_tenant_trace, tenant_mismatch)")
	list.Flags().BoolVar(&lf.json, "json", false, "one JSON object per line instead of a table")
	list.Flags().BoolVar(&lf.all, "all", false, "also list findings withdrawn by an allow rule")
	leaks.AddCommand(list)
	return leaks
}

func runLeaksList(ctx context.Context, lf *leaksFlags, out, errOut io.Writer) error {
	cfg, err := loadProcessorConfig(ctx, lf.configs, lf.sets, lf.processor)
	if err != nil {
		return err
	}
	filter := store.Filter{Tenant: lf.tenant, Service: lf.service, Rule: lf.rule, IncludeAllowed: lf.all}
	if lf.since > 0 {
		filter.Since = time.Now().Add(-lf.since)
	}
	path := cfg.Store.Journal.Path
	recs, rep, err := journal.ReadFile(path)
	if err != nil {
		return err
	}
	if rep.TornTail {
		fmt.Fprintf(errOut, "note: %s ends in a torn line (a write cut short by a crash); it was skipped\n", path)
	}
	if len(rep.Corrupt) > 0 {
		fmt.Fprintf(errOut, "warning: %s has %d unreadable line(s) (first: line %d); they were skipped\n", path, len(rep.Corrupt), rep.Corrupt[0])
	}
	var found []store.Evidence
	for _, ev := range store.Latest(recs) {
		if filter.Match(&ev) {
			found = append(found, ev)
		}
	}
	if lf.json {
		enc := json.NewEncoder(out)
		enc.SetEscapeHTML(false)
		for i := range found {
			if err := enc.Encode(&found[i]); err != nil {
				return err
			}
		}
		return nil
	}
	if len(found) == 0 {
		fmt.Fprintf(errOut, "no findings in %s\n", path)
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
