package clickhouse

import (
	"context"
	"fmt"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/tenantguard/tenantguard/store"
)

// filterArgs are the parameters every filtered query of queries.sql takes.
func filterArgs(f store.Filter) []any {
	since := f.Since
	if since.IsZero() || since.Before(minTime) {
		since = minTime // where DateTime64 starts; clients may date spans before 1970
	}
	var includeAllowed uint8
	if f.IncludeAllowed {
		includeAllowed = 1
	}
	return []any{
		ch.DateNamed("since", since, ch.NanoSeconds),
		ch.Named("tenant", f.Tenant),
		ch.Named("service", f.Service),
		ch.Named("rule", f.Rule),
		ch.Named("include_allowed", includeAllowed),
	}
}

// List returns the latest version of each finding that matches f, most
// recently seen first, with the evidence spans of that version: the same
// records, in the same order, as the journal gives for the same filter.
func (c *Client) List(ctx context.Context, f store.Filter) ([]store.Evidence, error) {
	out, err := c.findings(ctx, qList, filterArgs(f)...)
	if err != nil {
		return nil, err
	}
	if err := c.attachSpans(ctx, out, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// Show returns the latest version of one finding, with its evidence spans,
// and every evidence span any of its versions recorded (see SpanHistory).
func (c *Client) Show(ctx context.Context, leakID string) (store.Evidence, []store.Span, error) {
	found, err := c.findings(ctx, qShow, ch.Named("leak_id", leakID))
	if err != nil {
		return store.Evidence{}, nil, err
	}
	if len(found) == 0 {
		return store.Evidence{}, nil, fmt.Errorf("%w: leak id %s", ErrNotFound, leakID)
	}
	history := map[string][]store.Span{}
	if err := c.attachSpans(ctx, found[:1], history); err != nil {
		return store.Evidence{}, nil, err
	}
	return found[0], history[leakID], nil
}

// Trace returns the latest version of every finding of one trace (one per
// rule that fired), with their evidence spans.
func (c *Client) Trace(ctx context.Context, traceID string) ([]store.Evidence, error) {
	if !isTraceID(traceID) {
		return nil, fmt.Errorf("trace id %q is not 32 lowercase hex digits", traceID)
	}
	out, err := c.findings(ctx, qTrace, ch.Named("trace_id", traceID))
	if err != nil {
		return nil, err
	}
	if err := c.attachSpans(ctx, out, nil); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *Client) findings(ctx context.Context, name string, args ...any) ([]store.Evidence, error) {
	q := query(name)
	rows, err := c.conn.Query(ctx, q.SQL, args...)
	if err != nil {
		return nil, fmt.Errorf("clickhouse query %s: %w", name, c.redact(err))
	}
	defer rows.Close()
	out := []store.Evidence{}
	for rows.Next() {
		var s leakScan
		if err := rows.Scan(s.dest()...); err != nil {
			return nil, fmt.Errorf("clickhouse query %s: %w", name, err)
		}
		out = append(out, s.evidence())
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse query %s: %w", name, c.redact(err))
	}
	return out, nil
}

// attachSpans fills each finding's Spans with the spans of its version and,
// when history is not nil, records every span of each finding there.
func (c *Client) attachSpans(ctx context.Context, evs []store.Evidence, history map[string][]store.Span) error {
	if len(evs) == 0 {
		return nil
	}
	ids := make([]string, len(evs))
	for i := range evs {
		ids[i] = evs[i].LeakID
	}
	rows, err := c.conn.Query(ctx, query(qSpans).SQL, ch.Named("leak_ids", ids))
	if err != nil {
		return fmt.Errorf("clickhouse query %s: %w", qSpans, c.redact(err))
	}
	defer rows.Close()
	byLeak := map[string][]versionedSpan{}
	for rows.Next() {
		var s spanScan
		if err := rows.Scan(s.dest()...); err != nil {
			return fmt.Errorf("clickhouse query %s: %w", qSpans, err)
		}
		byLeak[s.leakID] = append(byLeak[s.leakID], s.versioned())
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("clickhouse query %s: %w", qSpans, c.redact(err))
	}
	for i := range evs {
		vs := byLeak[evs[i].LeakID]
		evs[i].Spans = latestSpans(vs, evs[i].Version)
		if history != nil {
			history[evs[i].LeakID] = orderSpans(vs)
		}
	}
	return nil
}

// Stats runs the stats queries of queries.sql for the findings that match
// f, reporting at most top crossing edges (DefaultTopEdges if top <= 0).
func (c *Client) Stats(ctx context.Context, f store.Filter, top int) (Stats, error) {
	if top <= 0 {
		top = DefaultTopEdges
	}
	st := Stats{TenantPairs: []TenantPairDay{}, TopEdges: []EdgeCount{}, Detection: []RuleDetection{}, OpenByService: []ServiceCount{}}
	args := filterArgs(f)
	err := c.each(ctx, qTenantPairs, args, func(scan func(...any) error) error {
		var (
			day      time.Time
			a, b     string
			findings uint64
		)
		if err := scan(&day, &a, &b, &findings); err != nil {
			return err
		}
		st.TenantPairs = append(st.TenantPairs, TenantPairDay{Day: day.Format(time.DateOnly), TenantA: a, TenantB: b, Findings: int(findings)})
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	err = c.each(ctx, qTopEdges, append(args, ch.Named("top", uint32(top))), func(scan func(...any) error) error {
		var (
			e        EdgeCount
			findings uint64
		)
		if err := scan(&e.FromService, &e.FromSpan, &e.ToService, &e.ToSpan, &findings, &e.LatestSeen); err != nil {
			return err
		}
		e.Findings, e.LatestSeen = int(findings), e.LatestSeen.UTC()
		st.TopEdges = append(st.TopEdges, e)
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	err = c.each(ctx, qDetection, args, func(scan func(...any) error) error {
		var (
			d        RuleDetection
			findings uint64
		)
		if err := scan(&d.Rule, &findings, &d.MeanSeconds); err != nil {
			return err
		}
		d.Findings = int(findings)
		st.Findings += d.Findings
		st.Detection = append(st.Detection, d)
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	err = c.each(ctx, qOpenBySvc, args, func(scan func(...any) error) error {
		var (
			s        ServiceCount
			findings uint64
		)
		if err := scan(&s.Service, &findings); err != nil {
			return err
		}
		s.Findings = int(findings)
		st.OpenByService = append(st.OpenByService, s)
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	return st, nil
}

// each runs a named query and calls row for every result row.
func (c *Client) each(ctx context.Context, name string, args []any, row func(scan func(...any) error) error) error {
	rows, err := c.conn.Query(ctx, query(name).SQL, args...)
	if err != nil {
		return fmt.Errorf("clickhouse query %s: %w", name, c.redact(err))
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows.Scan); err != nil {
			return fmt.Errorf("clickhouse query %s: %w", name, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("clickhouse query %s: %w", name, c.redact(err))
	}
	return nil
}
