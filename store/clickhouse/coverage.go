package clickhouse

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/store"
	"github.com/tenantguard/tenantguard/store/journal"
)

// coverageColumns are the columns of tenant_coverage. A coverage record
// (one collector, one tenant, one hour) becomes one row with an empty service
// holding the tenant's counts, and one row per service holding that
// service's share of the tenant's traces (traces, traces_without_tenant;
// the tenant-level counts are 0 there). Every count is summed: two
// collectors' rows for the same key add up, in queries (sum ... GROUP BY)
// and, eventually, in SummingMergeTree's merges.
var coverageColumns = []columnDef{
	{Name: "hour", Type: "DateTime('UTC')", Comment: "start of the hour, by the collector clock"},
	{Name: "tenant", Type: "LowCardinality(String)", Comment: "_other holds the tenants past the per-hour cap of a collector"},
	{Name: "service", Type: "LowCardinality(String)", Comment: "empty on the row of the tenant; a service name on its per-service rows"},
	{Name: "traces", Type: "UInt64", Comment: "traces that touched the tenant (through the service, on a service row)"},
	{Name: "spans", Type: "UInt64", Comment: "spans of the traces the tenant led; tenant row only"},
	{Name: "spans_missing_tenant", Type: "UInt64", Comment: "spans of tenant-aware services with no tenant; tenant row only"},
	{Name: "crossings_succeeded", Type: "UInt64", Comment: "traces whose crossing into another tenant succeeded; tenant row only"},
	{Name: "crossings_refused", Type: "UInt64", Comment: "traces whose crossing was refused (blocked attempts); tenant row only"},
	{Name: "unscoped_queries", Type: "UInt64", Comment: "statements without a tenant predicate; tenant row only"},
	{Name: "traces_without_tenant", Type: "UInt64", Comment: "traces with a span of the service without a tenant; service rows only"},
	// Merges keep the union, so the collectors behind a sum stay known.
	{Name: "collectors", Type: "SimpleAggregateFunction(groupUniqArrayArray, Array(String))", Comment: "collector instances whose counts the row holds"},
}

// coverageSums are the columns SummingMergeTree adds up: every count.
func coverageSums() []string { return names(coverageColumns[3 : len(coverageColumns)-1]) }

// coverageMerged are the columns SummingMergeTree merges: the counts, and
// the collectors, which it would otherwise take from any one row.
func coverageMerged() []string { return names(coverageColumns[3:]) }

// CoverageWriter is how the coverage shipper writes to ClickHouse (Client
// and Connector implement it). Its contract is Writer's, for coverage
// records: a re-sent token must not be summed twice.
type CoverageWriter interface {
	WriteCoverage(ctx context.Context, batch []store.Coverage, token string) error
}

var (
	_ CoverageWriter = (*Client)(nil)
	_ CoverageWriter = (*Connector)(nil)
)

// CoverageShipper copies the coverage file next to a journal
// (store.CoveragePath) to tenant_coverage, with the journal shipper's
// guarantees: a durable cursor (<coverage file>.clickhouse-cursor), retries
// with backoff, a dead-letter file for records ClickHouse refuses, and a
// deduplication token per batch so that a batch re-sent after a lost
// acknowledgement is not counted twice.
type CoverageShipper = fileShipper[store.Coverage]

// NewCoverageShipper prepares a shipper for the coverage file of the
// journal at journalPath. It reads the cursor but starts nothing: call
// Start. cfg must have passed Validate.
func NewCoverageShipper(cfg config.ClickHouse, journalPath string, w CoverageWriter, logger *zap.Logger) (*CoverageShipper, error) {
	if w == nil {
		return nil, errors.New("clickhouse coverage shipper: no writer")
	}
	return newFileShipper(cfg, store.CoveragePath(journalPath), fileKind[store.Coverage]{
		what:  "coverage records",
		parse: store.ParseCoverage,
		write: w.WriteCoverage,
		token: coverageToken,
		ids:   func(store.Coverage) (string, uint64) { return "", 0 },
	}, logger)
}

// coverageToken is the deduplication token of a batch of coverage lines: a
// hash of their bytes and their offsets in the file. Unlike findings, whose
// versions collapse, coverage is summed, and one collector can write the
// same bytes twice (the same few late traces of a tenant in the same hour,
// in two takes): the offsets tell those apart, while a re-send of the same
// range has the same token.
func coverageToken(part []journal.LineOf[store.Coverage]) string {
	h := sha256.New()
	var off [8]byte
	for _, l := range part {
		binary.BigEndian.PutUint64(off[:], uint64(l.Start))
		h.Write(off[:])
		h.Write(l.Raw)
	}
	return "tenantguard-coverage-" + hex.EncodeToString(h.Sum(nil))[:40]
}

// DateTime holds 1970-01-01 to 2106-02-07.
var maxHour = time.Unix(1<<32-1, 0).UTC()

// coverageRows converts records into tenant_coverage rows. A record whose
// hour the column cannot hold is refused (*RecordError).
func coverageRows(batch []store.Coverage) ([][]any, error) {
	rows := make([][]any, 0, len(batch))
	for i := range batch {
		c := &batch[i]
		hour := c.Hour.UTC()
		if hour.Before(epoch) || hour.After(maxHour) {
			return nil, &RecordError{Field: "hour",
				Reason: fmt.Sprintf("coverage of tenant %q: %s is outside the DateTime range (1970 to 2106)", c.Tenant, hour.Format(time.RFC3339))}
		}
		collectors := []string{}
		if c.Collector != "" {
			collectors = append(collectors, c.Collector)
		}
		rows = append(rows, []any{hour, c.Tenant, "", c.Traces, c.Spans, c.SpansMissingTenant,
			c.CrossingsSucceeded, c.CrossingsRefused, c.UnscopedQueries, uint64(0), collectors})
		for name, s := range c.Services {
			rows = append(rows, []any{hour, c.Tenant, name, s.Traces, uint64(0), uint64(0),
				uint64(0), uint64(0), uint64(0), s.TracesWithoutTenant, collectors})
		}
	}
	return rows, nil
}

// WriteCoverage inserts the batch into tenant_coverage with token as
// insert_deduplication_token. It implements CoverageWriter.
func (c *Client) WriteCoverage(ctx context.Context, batch []store.Coverage, token string) error {
	if len(batch) == 0 {
		return nil
	}
	rows, err := coverageRows(batch)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	ctx = chContext(ctx, token, c.cfg.Cluster != "")
	if err := c.insert(ctx, "tenant_coverage", coverageColumns, rows); err != nil {
		return fmt.Errorf("inserting %d coverage records into tenant_coverage: %w", len(batch), c.redact(classify(err)))
	}
	return nil
}

// WriteCoverage implements CoverageWriter.
func (c *Connector) WriteCoverage(ctx context.Context, batch []store.Coverage, token string) error {
	cl, err := c.get(ctx)
	if err != nil {
		return err
	}
	return cl.WriteCoverage(ctx, batch, token)
}

// Coverage returns the coverage of tenant (every tenant when empty) for the
// hours from since up to until (zero: no bound), one record per hour and
// tenant summed over collectors, sorted by hour then tenant: what
// store.SumCoverage gives for the same records read from the coverage
// files (Collector names the collector when only one counted, as there).
// collectors are every collector behind the records, sorted.
func (c *Client) Coverage(ctx context.Context, since, until time.Time, tenant string) (recs []store.Coverage, collectors []string, err error) {
	if until.IsZero() {
		until = maxHour
	}
	since, until = clampHour(since), clampHour(until)
	var (
		out []store.Coverage
		by  []map[string]bool // the collectors of out[i]
	)
	seen := map[string]bool{}
	err = c.each(ctx, qCoverage, []any{
		ch.DateNamed("since", since, ch.NanoSeconds),
		ch.DateNamed("until", until, ch.NanoSeconds),
		ch.Named("tenant", tenant),
	}, func(scan func(...any) error) error {
		var (
			hour            time.Time
			tenant, service string
			n               [7]uint64
			names           []string
		)
		if err := scan(&hour, &tenant, &service, &n[0], &n[1], &n[2], &n[3], &n[4], &n[5], &n[6], &names); err != nil {
			return err
		}
		hour = hour.UTC()
		if len(out) == 0 || !out[len(out)-1].Hour.Equal(hour) || out[len(out)-1].Tenant != tenant {
			out = append(out, store.Coverage{Hour: hour, Tenant: tenant})
			by = append(by, map[string]bool{})
		}
		for _, name := range names {
			seen[name] = true
			by[len(by)-1][name] = true
		}
		r := &out[len(out)-1]
		if service == "" {
			r.Traces, r.Spans, r.SpansMissingTenant = n[0], n[1], n[2]
			r.CrossingsSucceeded, r.CrossingsRefused, r.UnscopedQueries = n[3], n[4], n[5]
			return nil
		}
		if r.Services == nil {
			r.Services = map[string]store.ServiceCoverage{}
		}
		r.Services[service] = store.ServiceCoverage{Traces: n[0], TracesWithoutTenant: n[6]}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for i, names := range by {
		if len(names) == 1 {
			for name := range names {
				out[i].Collector = name
			}
		}
	}
	for name := range seen {
		collectors = append(collectors, name)
	}
	slices.Sort(collectors)
	return out, collectors, nil
}

// clampHour keeps a bound inside the DateTime range.
func clampHour(t time.Time) time.Time {
	switch {
	case t.IsZero() || t.Before(epoch):
		return epoch
	case t.After(maxHour):
		return maxHour
	}
	return t.UTC()
}
