package store

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"time"
)

// Coverage is one collector's counts for one tenant in one hour: how much
// of the tenant's traffic was checked, how much of it carried no tenant,
// and what was found. Records are additive: two records for the same hour
// and tenant (two collectors, or one collector's later take of traces that
// closed after the hour) are summed by readers (SumCoverage), never
// replaced. Tenant ids are kept in clear, as in evidence. Field names are a
// contract: the coverage file, ClickHouse and `leaks report --format json`.
type Coverage struct {
	Collector string    `json:"collector"`
	Hour      time.Time `json:"hour"` // UTC, on the hour, the collector's clock
	Tenant    string    `json:"tenant"`
	Traces    uint64    `json:"traces"` // traces that touched the tenant
	Spans     uint64    `json:"spans"`  // spans of the traces the tenant led
	// SpansMissingTenant are spans of tenant-aware services with no tenant.
	SpansMissingTenant uint64 `json:"spans_missing_tenant"`
	// CrossingsSucceeded counts traces whose crossing into another tenant
	// succeeded; CrossingsRefused those where it was refused.
	CrossingsSucceeded uint64 `json:"crossings_succeeded"`
	CrossingsRefused   uint64 `json:"crossings_refused"`
	UnscopedQueries    uint64 `json:"unscoped_queries"`
	// Services counts, per service, the traces this tenant led through it
	// and how many of them had a span of the service without a tenant.
	Services map[string]ServiceCoverage `json:"services,omitempty"`
}

// ServiceCoverage is one service's share of a tenant's traces.
type ServiceCoverage struct {
	Traces              uint64 `json:"traces"`
	TracesWithoutTenant uint64 `json:"traces_without_tenant"`
}

// Add adds o's counts to c.
func (c *Coverage) Add(o *Coverage) {
	c.Traces += o.Traces
	c.Spans += o.Spans
	c.SpansMissingTenant += o.SpansMissingTenant
	c.CrossingsSucceeded += o.CrossingsSucceeded
	c.CrossingsRefused += o.CrossingsRefused
	c.UnscopedQueries += o.UnscopedQueries
	if len(o.Services) > 0 && c.Services == nil {
		c.Services = map[string]ServiceCoverage{}
	}
	for name, s := range o.Services {
		cur := c.Services[name]
		cur.Traces += s.Traces
		cur.TracesWithoutTenant += s.TracesWithoutTenant
		c.Services[name] = cur
	}
}

// CoveragePath is the coverage file that sits next to a journal.
func CoveragePath(journal string) string { return journal + ".coverage.jsonl" }

// AppendCoverage appends records to the coverage file at path (created
// 0600), one JSON object per line, in a single write, and syncs it, so a
// crash leaves either all of them or a torn last line that readers skip.
// Several writers may append to one file: each write is one O_APPEND call.
func AppendCoverage(path string, recs []Coverage) error {
	if len(recs) == 0 {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for i := range recs {
		if err := enc.Encode(&recs[i]); err != nil {
			return fmt.Errorf("encoding coverage of %s at %s: %w", recs[i].Tenant, recs[i].Hour.Format(time.RFC3339), err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening coverage file: %w", err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		_ = f.Close()
		return fmt.Errorf("writing coverage file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("syncing coverage file %s: %w", path, err)
	}
	return f.Close()
}

// ParseCoverage decodes one line of a coverage file (without surrounding
// white space): the one place that says what a coverage record is.
func ParseCoverage(b []byte) (Coverage, error) {
	var c Coverage
	if err := json.Unmarshal(b, &c); err != nil {
		return Coverage{}, fmt.Errorf("coverage line is not valid coverage JSON: %w", err)
	}
	if c.Hour.IsZero() {
		return Coverage{}, errors.New("coverage line has no hour")
	}
	return c, nil
}

// CoverageReadReport says what reading a coverage file skipped.
type CoverageReadReport struct {
	Records int
	Corrupt []int // line numbers that did not parse
}

// ReadCoverageFile reads every record of the coverage file at path; a
// missing file has none. Unparseable lines are skipped and reported.
func ReadCoverageFile(path string) ([]Coverage, CoverageReadReport, error) {
	var rep CoverageReadReport
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, rep, nil
	}
	if err != nil {
		return nil, rep, fmt.Errorf("opening coverage file: %w", err)
	}
	defer f.Close()
	var out []Coverage
	br := bufio.NewReaderSize(f, 64<<10)
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if t := bytes.TrimSpace(b); len(t) > 0 {
			if c, perr := ParseCoverage(t); perr != nil {
				rep.Corrupt = append(rep.Corrupt, line)
			} else {
				out = append(out, c)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, rep, fmt.Errorf("reading coverage file %s: %w", path, err)
		}
	}
	rep.Records = len(out)
	return out, rep, nil
}

// SumCoverage adds up records of the same hour and tenant (from several
// collectors, or several takes), sorted by hour then tenant. Collector is
// left empty on sums of more than one collector.
func SumCoverage(recs []Coverage) []Coverage {
	type key struct {
		hour   int64
		tenant string
	}
	idx := map[key]int{}
	var out []Coverage
	for i := range recs {
		r := &recs[i]
		k := key{r.Hour.Unix(), r.Tenant}
		j, ok := idx[k]
		if !ok {
			out = append(out, Coverage{Collector: r.Collector, Hour: r.Hour.UTC(), Tenant: r.Tenant})
			j = len(out) - 1
			idx[k] = j
		} else if out[j].Collector != r.Collector {
			out[j].Collector = ""
		}
		out[j].Add(r)
	}
	slices.SortFunc(out, func(a, b Coverage) int {
		return cmp.Or(a.Hour.Compare(b.Hour), cmp.Compare(a.Tenant, b.Tenant))
	})
	return out
}
