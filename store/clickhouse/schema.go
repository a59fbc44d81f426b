package clickhouse

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"text/template"
	"time"

	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/config"
)

// migration is one versioned step of the schema. Its statements must be
// idempotent (IF NOT EXISTS, OR REPLACE): two collectors may migrate at the
// same moment, a migration interrupted halfway is run again from the start,
// and in cluster mode the record of applied versions is per server.
// Released migrations are never edited; a change is a new version.
type migration struct {
	Version uint32
	Name    string
	// While and Rebuild rebuild a table whose keys must change (ClickHouse
	// cannot alter a partition key): Rebuild runs, in order, only while the
	// While query (a count) says the table still has its old form, so an
	// interrupted rebuild starts over and a finished one is not repeated.
	While   string
	Rebuild []string
	// Statements run after the rebuild, every time the migration runs.
	Statements []string // text/template, rendered with schemaData
}

// Why these keys, for both tables:
//
//   - ReplacingMergeTree(version) keeps, per ORDER BY key, the row with the
//     highest version, so the key must identify the finding and nothing that
//     changes between its versions. leak_id is derived from the trace id and
//     the rule, so (rule, leak_id) and (leak_id, span_id) are fixed for the
//     life of a finding; first_seen, status or tenants can change and so stay
//     out of the key.
//   - rule leads tenant_leaks' key: it has two values, so `--rule` prunes half
//     the table, and it costs nothing in the primary index. Lookups by leak id
//     (show, the view's GROUP BY) still use the index on the second column.
//   - Partitions and TTL count from detected_at, the collector's clock when
//     the finding was first emitted (migrations 6 and 7; before, both used
//     first_seen and last_seen, span times a client sends with no bound).
//     A batch whose span times spread over a hundred months would exceed
//     max_partitions_per_insert_block and never be stored, and a finding
//     dated 1970 by a client would vanish at the first TTL merge. detected_at
//     never changes between versions of a finding, so its versions share a
//     partition and merges collapse them. The readers never rely on merges
//     anyway: tenant_leaks_latest takes argMax over all partitions.
//   - Lookups by trace id use a bloom filter skip index on trace_id; tenants
//     and services have one for ad-hoc queries on the table itself (filters
//     on tenant_leaks_latest apply after its GROUP BY and cannot use them).
//   - TTL counts from detected_at: a finding is kept for `retention` after
//     the collector first reported it.
//   - insert_deduplication_token needs a deduplication window on a
//     non-replicated table (non_replicated_deduplication_window); replicated
//     tables keep one by default, set to the same size here.
var migrations = []migration{
	{Version: 1, Name: "tenant_leaks", Statements: []string{
		`CREATE TABLE IF NOT EXISTS {{table "tenant_leaks"}}{{onCluster}}
(
{{columns "leaks"}},
    INDEX trace_id_bloom trace_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX tenants_bloom tenants TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX services_bloom services TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = {{engine "tenant_leaks"}}
PARTITION BY toYYYYMM(first_seen)
ORDER BY (rule, leak_id)
TTL toDateTime(last_seen) + INTERVAL {{.RetentionSeconds}} SECOND
SETTINGS {{dedupWindow}}`,
		`{{distributed "tenant_leaks"}}`,
	}},
	{Version: 2, Name: "tenant_leak_spans", Statements: []string{
		`CREATE TABLE IF NOT EXISTS {{table "tenant_leak_spans"}}{{onCluster}}
(
{{columns "spans"}},
    INDEX trace_id_bloom trace_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = {{engine "tenant_leak_spans"}}
PARTITION BY toYYYYMM(first_seen)
ORDER BY (leak_id, span_id)
TTL toDateTime(last_seen) + INTERVAL {{.RetentionSeconds}} SECOND
SETTINGS {{dedupWindow}}`,
		`{{distributed "tenant_leak_spans"}}`,
	}},
	// The view is the one place that says what "the current state of a
	// finding" is. Aliases are prefixed in the inner query and renamed
	// outside it: a ClickHouse alias named like a column replaces that
	// column everywhere in its SELECT, argMax's version argument included.
	{Version: 3, Name: "tenant_leaks_latest", Statements: []string{
		`CREATE OR REPLACE VIEW {{.DB}}.tenant_leaks_latest{{onCluster}} AS
SELECT
    leak_id,
    latest_version AS version,
    latest_trace_id AS trace_id,
    latest_rule AS rule,
    latest_severity AS severity,
    latest_status AS status,
    latest_allowed_by AS allowed_by,
    latest_tenants AS tenants,
    latest_services AS services,
    latest_crossing_edges AS crossing_edges,
    latest_mismatches AS mismatches,
    latest_span_count AS span_count,
    latest_first_seen AS first_seen,
    latest_last_seen AS last_seen,
    latest_detected_at AS detected_at,
    latest_collector AS collector
FROM
(
    SELECT
        leak_id,
        max(version) AS latest_version,
        argMax(trace_id, version) AS latest_trace_id,
        argMax(rule, version) AS latest_rule,
        argMax(severity, version) AS latest_severity,
        argMax(status, version) AS latest_status,
        argMax(allowed_by, version) AS latest_allowed_by,
        argMax(tenants, version) AS latest_tenants,
        argMax(services, version) AS latest_services,
        argMax(crossing_edges, version) AS latest_crossing_edges,
        argMax(mismatches, version) AS latest_mismatches,
        argMax(span_count, version) AS latest_span_count,
        argMax(first_seen, version) AS latest_first_seen,
        argMax(last_seen, version) AS latest_last_seen,
        argMax(detected_at, version) AS latest_detected_at,
        argMax(collector, version) AS latest_collector
    FROM {{.DB}}.tenant_leaks
    GROUP BY leak_id
)`,
	}},
	// The evidence spans' own details are recorded from here on; the
	// columns existed (filled with defaults) since migration 2.
	{Version: 4, Name: "tenant_leak_spans details recorded", Statements: []string{
		`ALTER TABLE {{table "tenant_leak_spans"}}{{onCluster}}
    COMMENT COLUMN kind 'server, client, producer, consumer or internal; empty when the request that raised or updated the finding did not carry the span',
    COMMENT COLUMN start_time 'span start; 1970-01-01 when not carried (see kind)',
    COMMENT COLUMN duration_ns 'span duration; 0 when not carried (see kind)',
    COMMENT COLUMN status_code 'ok, error or unset; empty when not carried (see kind)',
    COMMENT COLUMN attributes 'span attributes: tenant and clear-listed values as sent, every other value as hmac-sha256:<hex> under the collector key, or [redacted] without one'`,
	}},
	// Every field of the journal record is stored from here on.
	{Version: 5, Name: "every field of the finding", Statements: []string{
		`ALTER TABLE {{table "tenant_leaks"}}{{onCluster}}
{{addColumns "leaks" "reason" "keys" "queries" "crossing_edge_details"}}`,
		`{{if .Cluster}}ALTER TABLE {{.DB}}.tenant_leaks{{onCluster}}
{{addColumns "leaks" "reason" "keys" "queries" "crossing_edge_details"}}{{end}}`,
		`ALTER TABLE {{table "tenant_leak_spans"}}{{onCluster}}
{{addColumns "spans" "outcome" "data" "detected_at"}}`,
		`{{if .Cluster}}ALTER TABLE {{.DB}}.tenant_leak_spans{{onCluster}}
{{addColumns "spans" "outcome" "data" "detected_at"}}{{end}}`,
		`CREATE OR REPLACE VIEW {{.DB}}.tenant_leaks_latest{{onCluster}} AS
SELECT
    leak_id,
    latest_version AS version,
    latest_trace_id AS trace_id,
    latest_rule AS rule,
    latest_severity AS severity,
    latest_status AS status,
    latest_allowed_by AS allowed_by,
    latest_tenants AS tenants,
    latest_services AS services,
    latest_crossing_edges AS crossing_edges,
    latest_mismatches AS mismatches,
    latest_span_count AS span_count,
    latest_first_seen AS first_seen,
    latest_last_seen AS last_seen,
    latest_detected_at AS detected_at,
    latest_collector AS collector,
    latest_reason AS reason,
    latest_keys AS keys,
    latest_queries AS queries,
    latest_crossing_edge_details AS crossing_edge_details
FROM
(
    SELECT
        leak_id,
        max(version) AS latest_version,
        argMax(trace_id, version) AS latest_trace_id,
        argMax(rule, version) AS latest_rule,
        argMax(severity, version) AS latest_severity,
        argMax(status, version) AS latest_status,
        argMax(allowed_by, version) AS latest_allowed_by,
        argMax(tenants, version) AS latest_tenants,
        argMax(services, version) AS latest_services,
        argMax(crossing_edges, version) AS latest_crossing_edges,
        argMax(mismatches, version) AS latest_mismatches,
        argMax(span_count, version) AS latest_span_count,
        argMax(first_seen, version) AS latest_first_seen,
        argMax(last_seen, version) AS latest_last_seen,
        argMax(detected_at, version) AS latest_detected_at,
        argMax(collector, version) AS latest_collector,
        argMax(reason, version) AS latest_reason,
        argMax(keys, version) AS latest_keys,
        argMax(queries, version) AS latest_queries,
        argMax(crossing_edge_details, version) AS latest_crossing_edge_details
    FROM {{.DB}}.tenant_leaks
    GROUP BY leak_id
)`,
	}},
	// Partitions and TTL move to detected_at (see above): the table is
	// copied into one with the new keys, which then takes its place.
	{Version: 6, Name: "tenant_leaks by detection time",
		While: `SELECT count() FROM system.tables WHERE database = '{{.Database}}' AND name = '{{local "tenant_leaks"}}' AND partition_key NOT LIKE '%detected_at%'`,
		Rebuild: []string{
			`DROP TABLE IF EXISTS {{table (rebuilt "tenant_leaks")}}{{onCluster}} SYNC`,
			`CREATE TABLE {{table (rebuilt "tenant_leaks")}}{{onCluster}}
(
{{columns "leaks"}},
    INDEX trace_id_bloom trace_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX tenants_bloom tenants TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX services_bloom services TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = {{engine (rebuilt "tenant_leaks")}}
PARTITION BY toYYYYMM(detected_at)
ORDER BY (rule, leak_id)
TTL toDateTime(detected_at) + INTERVAL {{.RetentionSeconds}} SECOND
SETTINGS {{dedupWindow}}`,
			`INSERT INTO {{copyTarget (rebuilt "tenant_leaks")}} ({{columnList "leaks"}})
SELECT {{columnList "leaks"}} FROM {{.DB}}.tenant_leaks
SETTINGS max_partitions_per_insert_block = 0`,
			`EXCHANGE TABLES {{table "tenant_leaks"}} AND {{table (rebuilt "tenant_leaks")}}{{onCluster}}`,
		},
		Statements: []string{
			`DROP TABLE IF EXISTS {{table (rebuilt "tenant_leaks")}}{{onCluster}} SYNC`,
		}},
	// The same for the evidence spans: a span row takes the detected_at of
	// its finding (rows of findings already gone keep their last_seen).
	{Version: 7, Name: "tenant_leak_spans by detection time",
		While: `SELECT count() FROM system.tables WHERE database = '{{.Database}}' AND name = '{{local "tenant_leak_spans"}}' AND partition_key NOT LIKE '%detected_at%'`,
		Rebuild: []string{
			`DROP TABLE IF EXISTS {{table (rebuilt "tenant_leak_spans")}}{{onCluster}} SYNC`,
			`CREATE TABLE {{table (rebuilt "tenant_leak_spans")}}{{onCluster}}
(
{{columns "spans"}},
    INDEX trace_id_bloom trace_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = {{engine (rebuilt "tenant_leak_spans")}}
PARTITION BY toYYYYMM(detected_at)
ORDER BY (leak_id, span_id)
TTL toDateTime(detected_at) + INTERVAL {{.RetentionSeconds}} SECOND
SETTINGS {{dedupWindow}}`,
			`INSERT INTO {{copyTarget (rebuilt "tenant_leak_spans")}} ({{columnList "spans"}})
SELECT {{columnList "spans" "s." "detected"}}
FROM {{.DB}}.tenant_leak_spans AS s
LEFT JOIN (SELECT leak_id, min(detected_at) AS detected FROM {{.DB}}.tenant_leaks GROUP BY leak_id) AS l USING (leak_id)
SETTINGS max_partitions_per_insert_block = 0, join_use_nulls = 0`,
			`EXCHANGE TABLES {{table "tenant_leak_spans"}} AND {{table (rebuilt "tenant_leak_spans")}}{{onCluster}}`,
		},
		Statements: []string{
			`DROP TABLE IF EXISTS {{table (rebuilt "tenant_leak_spans")}}{{onCluster}} SYNC`,
		}},
	// The status column's comment listed three of the four statuses.
	{Version: 8, Name: "tenant_leaks status comment lists reclassified", Statements: []string{
		`ALTER TABLE {{table "tenant_leaks"}}{{onCluster}}
    COMMENT COLUMN status 'open, closed, allowed or reclassified'`,
	}},
	// Per-tenant hourly coverage, the proof that isolation held. Unlike
	// findings, rows are summed, not replaced: SummingMergeTree adds up the
	// counts of one (hour, tenant, service) key, from every collector and
	// every take; readers sum() anyway, as merges come when they like. The
	// key has no collector: two collectors' counts are one tenant's (the
	// collectors column keeps their names, merged as a set). hour
	// is the collector's clock, never a client's, so it partitions and
	// ages out rows safely. Sharded by tenant, so one tenant's rows merge on
	// one shard. insert_deduplication_token (from the coverage file's
	// bytes and offsets) keeps a re-sent batch from being summed twice.
	{Version: 9, Name: "tenant_coverage", Statements: []string{
		`CREATE TABLE IF NOT EXISTS {{table "tenant_coverage"}}{{onCluster}}
(
{{columns "coverage"}}
)
ENGINE = {{summingEngine "tenant_coverage"}}
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, tenant, service)
TTL hour + INTERVAL {{.RetentionSeconds}} SECOND
SETTINGS {{dedupWindow}}`,
		`{{distributed "tenant_coverage" "cityHash64(tenant)"}}`,
	}},
}

// bootstrapStatements run before the migrations, every time: the database
// and the table that records applied versions. In cluster mode
// schema_migrations is a plain table on every server (created ON CLUSTER):
// a server that has not seen a migration runs it again, harmlessly.
var bootstrapStatements = []string{
	`CREATE DATABASE IF NOT EXISTS {{.DB}}{{onCluster}}`,
	`CREATE TABLE IF NOT EXISTS {{.DB}}.schema_migrations{{onCluster}}
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version`,
}

// schemaData is what the templates see.
type schemaData struct {
	// DB is the quoted database name.
	DB               string
	Database         string
	Cluster          string
	RetentionSeconds int64
	// RebuildSuffix makes the name of a rebuild's copy unique to one run
	// of the migrations, so that two collectors upgrading at the same
	// moment each copy into their own table and never drop the other's.
	RebuildSuffix string
}

func newSchemaData(cfg config.ClickHouse) schemaData {
	return schemaData{
		DB:               quoteIdent(cfg.Database),
		Database:         cfg.Database,
		Cluster:          cfg.Cluster,
		RetentionSeconds: int64(cfg.Retention / time.Second),
	}
}

// quoteIdent backquotes a name; config validation keeps backquotes, quotes
// and spaces out of database and cluster names.
func quoteIdent(s string) string { return "`" + s + "`" }

func (d schemaData) funcs() template.FuncMap {
	clustered := d.Cluster != ""
	return template.FuncMap{
		"onCluster": func() string {
			if !clustered {
				return ""
			}
			return " ON CLUSTER '" + d.Cluster + "'"
		},
		// table names a data table: in cluster mode the shard-local one,
		// behind a Distributed table of the plain name.
		"table": func(name string) string {
			if clustered {
				name += "_local"
			}
			return d.DB + "." + name
		},
		"engine": func(name string) string {
			if !clustered {
				return "ReplacingMergeTree(version)"
			}
			return fmt.Sprintf("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/%s/%s_local', '{replica}', version)",
				d.Database, name)
		},
		"summingEngine": func(name string) string {
			sums := "(" + strings.Join(coverageMerged(), ", ") + ")"
			if !clustered {
				return "SummingMergeTree(" + sums + ")"
			}
			return fmt.Sprintf("ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/%s/%s_local', '{replica}', %s)",
				d.Database, name, sums)
		},
		"dedupWindow": func() string {
			if clustered {
				return "replicated_deduplication_window = 10000"
			}
			return "non_replicated_deduplication_window = 10000"
		},
		// distributed puts a Distributed table in front of the shard-local
		// one, sharded by leak_id so that every version of a finding, and
		// its spans, land on one shard where ReplacingMergeTree can collapse
		// them; another sharding key can be given. Single-server mode has
		// no such statement.
		"distributed": func(name string, key ...string) string {
			if !clustered {
				return ""
			}
			shard := "cityHash64(leak_id)"
			if len(key) > 0 {
				shard = key[0]
			}
			return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s ON CLUSTER '%s'\nAS %s.%s_local\nENGINE = Distributed('%s', '%s', '%s_local', %s)",
				d.DB, name, d.Cluster, d.DB, name, d.Cluster, d.Database, name, shard)
		},
		"columns": func(table string) string {
			cols := tableColumns(table)
			lines := make([]string, len(cols))
			for i, c := range cols {
				lines[i] = "    " + c.definition()
			}
			return strings.Join(lines, ",\n")
		},
		// addColumns adds the named columns to a table that may have rows.
		"addColumns": func(table string, add ...string) string {
			var lines []string
			for _, c := range tableColumns(table) {
				if slices.Contains(add, c.Name) {
					lines = append(lines, "    ADD COLUMN IF NOT EXISTS "+c.definition())
				}
			}
			return strings.Join(lines, ",\n")
		},
		// columnList names a table's columns. With a prefix and a stand-in,
		// it is the SELECT list of the span copy: detected_at comes from
		// the finding when it is known.
		"columnList": func(table string, alias ...string) string {
			cols := names(tableColumns(table))
			if len(alias) == 2 {
				for i, c := range cols {
					if c == "detected_at" {
						cols[i] = "if(" + alias[1] + " > toDateTime64(0, 9, 'UTC'), " + alias[1] + ", " + alias[0] + c + ") AS detected_at"
					} else {
						cols[i] = alias[0] + c
					}
				}
			}
			return strings.Join(cols, ", ")
		},
		// rebuilt names the copy a rebuild fills, then swaps in.
		"rebuilt": func(name string) string { return name + "_rebuild" + d.RebuildSuffix },
		// local names the table that holds the data on a server.
		"local": func(name string) string {
			if clustered {
				return name + "_local"
			}
			return name
		},
		// copyTarget is where a rebuild copies rows to: in cluster mode
		// through the cluster, sharded as the Distributed tables shard.
		"copyTarget": func(name string) string {
			if !clustered {
				return d.DB + "." + name
			}
			return fmt.Sprintf("FUNCTION cluster('%s', '%s', '%s_local', cityHash64(leak_id))", d.Cluster, d.Database, name)
		},
	}
}

func tableColumns(table string) []columnDef {
	switch table {
	case "spans":
		return spanColumns
	case "coverage":
		return coverageColumns
	}
	return leakColumns
}

// definition is the column as DDL: name, type, default and comment.
func (c columnDef) definition() string {
	s := c.Name + " " + c.Type
	if c.Default != "" {
		s += " DEFAULT " + c.Default
	}
	if c.Comment != "" {
		s += " COMMENT '" + strings.ReplaceAll(c.Comment, "'", "") + "'"
	}
	return s
}

func render(text string, d schemaData) (string, error) {
	t, err := template.New("ddl").Funcs(d.funcs()).Parse(text)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return "", err
	}
	return strings.TrimSpace(b.String()), nil
}

// renderAll renders statements, dropping those that render empty.
func renderAll(texts []string, d schemaData) ([]string, error) {
	var out []string
	for _, text := range texts {
		s, err := render(text, d)
		if err != nil {
			return nil, err
		}
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

func (m migration) checksum() string {
	h := sha256.New()
	if m.While != "" {
		h.Write([]byte(m.While))
		h.Write([]byte{0})
		for _, s := range m.Rebuild {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
	}
	for _, s := range m.Statements {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// SchemaDDL returns every statement Migrate can run for cfg, in order, as
// one SQL script: what a DBA reviews, or runs by hand with
// create_schema: false.
func SchemaDDL(cfg config.ClickHouse) (string, error) {
	d := newSchemaData(cfg)
	var b strings.Builder
	boot, err := renderAll(bootstrapStatements, d)
	if err != nil {
		return "", err
	}
	b.WriteString("-- bootstrap: database and migration record\n\n")
	for _, s := range boot {
		b.WriteString(s + ";\n\n")
	}
	for _, m := range migrations {
		fmt.Fprintf(&b, "-- migration %d: %s\n\n", m.Version, m.Name)
		if m.While != "" {
			while, err := render(m.While, d)
			if err != nil {
				return "", fmt.Errorf("migration %d %s: %w", m.Version, m.Name, err)
			}
			rebuild, err := renderAll(m.Rebuild, d)
			if err != nil {
				return "", fmt.Errorf("migration %d %s: %w", m.Version, m.Name, err)
			}
			fmt.Fprintf(&b, "-- only while this counts more than 0 (a table created before migration %d):\n-- %s\n\n",
				m.Version, strings.ReplaceAll(while, "\n", "\n-- "))
			for _, s := range rebuild {
				b.WriteString(s + ";\n\n")
			}
			b.WriteString("-- then, in any case:\n\n")
		}
		stmts, err := renderAll(m.Statements, d)
		if err != nil {
			return "", fmt.Errorf("migration %d %s: %w", m.Version, m.Name, err)
		}
		for _, s := range stmts {
			b.WriteString(s + ";\n\n")
		}
	}
	return strings.TrimRight(b.String(), "\n") + "\n", nil
}

// Migrate creates the database, the tables and the view, running each
// migration not yet recorded in schema_migrations. It is idempotent and safe
// to run from several collectors at once.
func (c *Client) Migrate(ctx context.Context) error {
	d := newSchemaData(c.cfg)
	d.RebuildSuffix = fmt.Sprintf("_%08x", rand.Uint32())
	boot, err := renderAll(bootstrapStatements, d)
	if err != nil {
		return err
	}
	for i, s := range boot {
		if err := c.conn.Exec(ctx, s); err != nil {
			// The database exists (we are connected to it); an account
			// without the CREATE DATABASE grant may still own its tables.
			if code := exceptionCode(err); i == 0 && (code == 497 || code == 291 || code == 164) { // ACCESS_DENIED, DATABASE_ACCESS_DENIED, READONLY
				c.logger.Debug("clickhouse: could not run CREATE DATABASE IF NOT EXISTS; continuing", zap.Error(c.redact(err)))
				continue
			}
			return fmt.Errorf("creating the schema bootstrap in ClickHouse database %s: %w", c.cfg.Database, c.redact(err))
		}
	}
	applied, err := c.appliedMigrations(ctx, d)
	if err != nil {
		return err
	}
	for _, m := range migrations {
		if sum, ok := applied[m.Version]; ok {
			if sum != m.checksum() {
				c.logger.Warn("clickhouse: a schema migration changed after it was applied; the database keeps the applied version",
					zap.Uint32("version", m.Version), zap.String("name", m.Name))
			}
			continue
		}
		if err := c.rebuild(ctx, m, d); err != nil {
			return err
		}
		stmts, err := renderAll(m.Statements, d)
		if err != nil {
			return fmt.Errorf("rendering schema migration %d %s: %w", m.Version, m.Name, err)
		}
		for _, s := range stmts {
			if err := c.conn.Exec(ctx, s); err != nil {
				return fmt.Errorf("schema migration %d (%s) in ClickHouse database %s: %w", m.Version, m.Name, c.cfg.Database, c.redact(err))
			}
		}
		if err := c.conn.Exec(ctx, "INSERT INTO "+d.DB+".schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
			m.Version, m.Name, m.checksum()); err != nil {
			return fmt.Errorf("recording schema migration %d (%s): %w", m.Version, m.Name, c.redact(err))
		}
		c.logger.Info("clickhouse: schema migration applied", zap.Uint32("version", m.Version), zap.String("name", m.Name),
			zap.String("database", c.cfg.Database))
	}
	return nil
}

// rebuild runs a migration's Rebuild statements while its While query says
// the table has its old form.
func (c *Client) rebuild(ctx context.Context, m migration, d schemaData) error {
	if m.While == "" {
		return nil
	}
	while, err := render(m.While, d)
	if err != nil {
		return fmt.Errorf("rendering schema migration %d %s: %w", m.Version, m.Name, err)
	}
	var n uint64
	rows, err := c.conn.Query(ctx, while)
	if err == nil {
		if rows.Next() {
			err = rows.Scan(&n)
		}
		if rerr := rows.Err(); err == nil {
			err = rerr
		}
		rows.Close()
	}
	if err != nil {
		return fmt.Errorf("schema migration %d (%s) in ClickHouse database %s: %w", m.Version, m.Name, c.cfg.Database, c.redact(err))
	}
	if n == 0 {
		return nil
	}
	stmts, err := renderAll(m.Rebuild, d)
	if err != nil {
		return fmt.Errorf("rendering schema migration %d %s: %w", m.Version, m.Name, err)
	}
	for _, s := range stmts {
		if err := c.conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("schema migration %d (%s) in ClickHouse database %s: %w", m.Version, m.Name, c.cfg.Database, c.redact(err))
		}
	}
	return nil
}

func (c *Client) appliedMigrations(ctx context.Context, d schemaData) (map[uint32]string, error) {
	rows, err := c.conn.Query(ctx, "SELECT version, argMax(checksum, applied_at) FROM "+d.DB+".schema_migrations GROUP BY version")
	if err != nil {
		return nil, fmt.Errorf("reading applied schema migrations: %w", c.redact(err))
	}
	defer rows.Close()
	applied := map[uint32]string{}
	for rows.Next() {
		var (
			v   uint32
			sum string
		)
		if err := rows.Scan(&v, &sum); err != nil {
			return nil, fmt.Errorf("reading applied schema migrations: %w", err)
		}
		applied[v] = sum
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading applied schema migrations: %w", c.redact(err))
	}
	return applied, nil
}
