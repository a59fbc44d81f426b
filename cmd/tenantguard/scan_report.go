package main

// scan's report: which findings fail, the summary line, and the text and
// JSON renderings.

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

// ---------------------------------------------------------------- report

type reportFinding struct {
	ev      store.Evidence
	at      location
	failing bool
	// arrival says why the collector could judge the finding otherwise.
	arrival string
}

type scanReport struct {
	findings  []reportFinding
	failing   int
	withdrawn int // allowed findings left out (without --all)
	skipped   int // files of a directory that are not OTLP
	arrival   int // findings whose result depends on when their spans arrive
	failOn    int
	inputs    int
	spans     uint64
	traces    uint64
	errs      []*inputError
	// listErrors repeats the input errors in a text report written to a
	// file; on standard output they were printed to stderr as they came.
	listErrors bool
	elapsed    time.Duration
	started    time.Time
}

func (s *scanner) report(failRank int, all bool, elapsed time.Duration) *scanReport {
	st := s.d.Stats()
	rep := &scanReport{
		failOn:  failRank,
		inputs:  s.inputs,
		spans:   st.Spans,
		traces:  st.TracesExpired + st.TracesEvicted,
		errs:    s.errs,
		skipped: s.skipped,
		elapsed: elapsed,
		started: time.Now().Add(-elapsed),
	}
	for _, sf := range s.findings {
		ev := store.NewEvidence(&sf.f, s.cfg.Instance)
		allowed := sf.f.Status == detector.StatusAllowed
		if allowed && !all {
			rep.withdrawn++
			continue
		}
		failing := !allowed && detector.Severity(ev.Severity).Rank() >= failRank
		if failing {
			rep.failing++
		}
		note := s.arrivalNote(sf)
		if note != "" {
			rep.arrival++
		}
		rep.findings = append(rep.findings, reportFinding{ev: ev, at: sf.at, failing: failing, arrival: note})
	}
	slices.SortFunc(rep.findings, func(a, b reportFinding) int {
		if c := detector.Severity(b.ev.Severity).Rank() - detector.Severity(a.ev.Severity).Rank(); c != 0 {
			return c
		}
		if c := strings.Compare(a.ev.TraceID, b.ev.TraceID); c != 0 {
			return c
		}
		return strings.Compare(a.ev.Rule, b.ev.Rule)
	})
	return rep
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func failOnName(rank int) string {
	for _, s := range detector.Severities {
		if s.Rank() == rank {
			return string(s)
		}
	}
	return "none"
}

// summary is the report's last line.
func (r *scanReport) summary() string {
	var b strings.Builder
	if len(r.findings) == 0 {
		b.WriteString("no findings")
	} else {
		counts := map[string]int{}
		for _, f := range r.findings {
			counts[f.ev.Severity]++
		}
		var parts []string
		for _, s := range slices.Backward(detector.Severities) {
			if sev := string(s); counts[sev] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", counts[sev], sev))
				delete(counts, sev)
			}
		}
		for _, sev := range slices.Sorted(maps.Keys(counts)) { // severities of newer rules
			parts = append(parts, fmt.Sprintf("%d %s", counts[sev], sev))
		}
		fmt.Fprintf(&b, "%s (%s; %d at or above --fail-on %s)", plural(len(r.findings), "finding", "findings"),
			strings.Join(parts, ", "), r.failing, failOnName(r.failOn))
	}
	fmt.Fprintf(&b, " in %s (%s) from %s", plural(int(r.traces), "trace", "traces"),
		plural(int(r.spans), "span", "spans"), plural(r.inputs, "input", "inputs"))
	if r.withdrawn > 0 {
		fmt.Fprintf(&b, "; %s withdrawn by an allow rule (--all lists them)", plural(r.withdrawn, "finding", "findings"))
	}
	if r.arrival > 0 {
		fmt.Fprintf(&b, "; %s on when spans arrive, which only the collector sees (see \"arrival\")",
			plural(r.arrival, "finding depends", "findings depend"))
	}
	if r.skipped > 0 {
		fmt.Fprintf(&b, "; %s skipped (not OTLP)", plural(r.skipped, "file", "files"))
	}
	if len(r.errs) > 0 {
		fmt.Fprintf(&b, "; %s: the report covers what was readable", plural(len(r.errs), "input error", "input errors"))
	}
	return b.String()
}

func edgeText(e store.CrossingEdge) string {
	s := fmt.Sprintf("%s `%s` (%s) → %s `%s` (%s)", e.From.Service, e.From.Span, e.From.Tenant, e.To.Service, e.To.Span, e.To.Tenant)
	if e.Hops > 0 {
		s += fmt.Sprintf(", through %s without a tenant", plural(e.Hops, "span", "spans"))
	}
	return s
}

// details is one finding as the text report and the JUnit failure body
// show it: the alert sentence, then the evidence.
func (f *reportFinding) details(indent string) string {
	ev := &f.ev
	var b strings.Builder
	row := func(label, value string) { fmt.Fprintf(&b, "%s%-9s %s\n", indent, label, value) }
	fmt.Fprintf(&b, "%s%s\n", indent, ev.Message(store.Plain))
	row("trace", ev.TraceID)
	row("tenants", dash(strings.Join(ev.Tenants, ", ")))
	row("services", strings.Join(ev.Services, ", "))
	for i, e := range ev.CrossingEdges {
		label := ""
		if i == 0 {
			label = "crossing"
		}
		row(label, edgeText(e))
	}
	for i, m := range ev.Mismatches {
		label := ""
		if i == 0 {
			label = "mismatch"
		}
		var vals []string
		for _, v := range m.Values {
			src := ""
			if v.Resource {
				src = " (resource)"
			}
			vals = append(vals, fmt.Sprintf("%s=%s%s", v.Key, v.Tenant, src))
		}
		row(label, fmt.Sprintf("%s `%s` span %s: %s", m.Service, m.Span, m.SpanID, strings.Join(vals, ", ")))
	}
	for i, sp := range ev.Spans {
		label := ""
		if i == 0 {
			label = "spans"
		}
		tenant := "no tenant"
		if sp.Tenant != "" {
			tenant = fmt.Sprintf("tenant %s (%s)", sp.Tenant, sp.TenantKey)
		}
		row(label, fmt.Sprintf("%s %s `%s`, %s", sp.SpanID, sp.Service, sp.Name, tenant))
	}
	if ev.AllowedBy != "" {
		row("allowed", ev.AllowedBy)
	}
	if f.arrival != "" {
		row("arrival", f.arrival)
	}
	row("found in", f.at.String())
	row("leak id", fmt.Sprintf("%s (%s, %s)", ev.LeakID, ev.Status, plural(ev.SpanCount, "span", "spans")))
	return b.String()
}

func (f *reportFinding) verdict(failOn int) string {
	switch {
	case f.failing:
		return "FAIL"
	case f.ev.Status == string(detector.StatusAllowed):
		return string(detector.StatusAllowed)
	}
	return "note (below --fail-on " + failOnName(failOn) + ")"
}

func (r *scanReport) writeText(w io.Writer) error {
	for i := range r.findings {
		f := &r.findings[i]
		fmt.Fprintf(w, "%s %s %s\n%s\n", f.ev.Severity, f.ev.Rule, f.verdict(r.failOn), f.details("  "))
	}
	if r.listErrors {
		for _, e := range r.errs {
			fmt.Fprintf(w, "input error: %v\n", e)
		}
	}
	_, err := fmt.Fprintf(w, "tenantguard scan: %s\n", r.summary())
	return err
}

// writeJSON writes one object per finding per line, with the fields of the
// evidence journal and `leaks list --json`.
func (r *scanReport) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i := range r.findings {
		if err := enc.Encode(&r.findings[i].ev); err != nil {
			return err
		}
	}
	return nil
}
