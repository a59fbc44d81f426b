package clickhouse

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/tenantguard/tenantguard/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./store/clickhouse -run %s -update to create it)", err, t.Name())
	}
	if string(want) != got {
		t.Errorf("%s differs from the rendered text; check the change, then rerun with -update.\n--- got ---\n%s", path, got)
	}
}

func schemaConfig(cluster string) config.ClickHouse {
	cfg := config.DefaultClickHouse()
	cfg.Endpoints = []string{"ch-1:9000"}
	cfg.Database = "tenantguard"
	cfg.Retention = 400 * 24 * time.Hour
	cfg.Cluster = cluster
	return cfg
}

func TestSchemaDDLGolden(t *testing.T) {
	for _, tc := range []struct{ file, cluster string }{
		{"schema_single.sql", ""},
		{"schema_cluster.sql", "tenantguard_cluster"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			ddl, err := SchemaDDL(schemaConfig(tc.cluster))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.file, ddl)
		})
	}
}

func TestSchemaRendersConfig(t *testing.T) {
	cfg := schemaConfig("")
	cfg.Database, cfg.Retention = "leaks-eu", 48*time.Hour
	ddl, err := SchemaDDL(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"CREATE DATABASE IF NOT EXISTS `leaks-eu`",
		"`leaks-eu`.tenant_leaks\n",
		"INTERVAL 172800 SECOND",
		"ENGINE = ReplacingMergeTree(version)",
		"SETTINGS non_replicated_deduplication_window = 10000",
	} {
		if !strings.Contains(ddl, want) {
			t.Errorf("DDL lacks %q", want)
		}
	}
	if strings.Contains(ddl, "ON CLUSTER") || strings.Contains(ddl, "Distributed") || strings.Contains(ddl, "Replicated") {
		t.Error("single-server DDL must not mention clusters")
	}
	cfg.Cluster = "{cluster}"
	ddl, err = SchemaDDL(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Every CREATE runs on the whole cluster.
	for _, stmt := range strings.Split(ddl, ";\n") {
		if strings.Contains(stmt, "CREATE ") && !strings.Contains(stmt, "ON CLUSTER '{cluster}'") {
			t.Errorf("statement without ON CLUSTER:\n%s", stmt)
		}
	}
}

// The view must expose exactly the table's columns, in order: the list,
// show and trace queries select them from the view and scan them as
// tenant_leaks rows.
func TestLatestViewExposesTheTableColumns(t *testing.T) {
	var view string // the latest definition
	for _, m := range migrations {
		for _, st := range m.Statements {
			if strings.Contains(st, "VIEW {{.DB}}.tenant_leaks_latest") {
				view = st
			}
		}
	}
	outer := view[strings.Index(view, "SELECT")+len("SELECT") : strings.Index(view, "FROM")]
	var got []string
	for _, item := range strings.Split(outer, ",") {
		f := strings.Fields(item)
		got = append(got, f[len(f)-1])
	}
	if !slices.Equal(got, names(leakColumns)) {
		t.Fatalf("view columns %v\ntable columns %v", got, names(leakColumns))
	}
	for _, c := range leakColumns[1:] {
		if c.Name == "version" {
			continue
		}
		if !strings.Contains(view, "argMax("+c.Name+", version) AS latest_"+c.Name) {
			t.Errorf("the view must take %s from the highest version", c.Name)
		}
	}
}

func TestMigrateRunsEachMigrationOnce(t *testing.T) {
	c, fc := fakeClient(t)
	c.cfg = schemaConfig("")
	if err := c.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	d := newSchemaData(c.cfg)
	want, _ := renderAll(bootstrapStatements, d)
	for _, m := range migrations {
		stmts, _ := renderAll(m.Statements, d)
		want = append(want, stmts...)
		want = append(want, "INSERT INTO `tenantguard`.schema_migrations (version, name, checksum) VALUES (?, ?, ?)")
	}
	// Each run names its rebuild copies uniquely; the text is otherwise the same.
	run := regexp.MustCompile(`_rebuild_[0-9a-f]{8}\b`)
	for i, e := range fc.execs {
		fc.execs[i] = run.ReplaceAllString(e, "_rebuild")
	}
	if !slices.Equal(fc.execs, want) {
		t.Fatalf("statements run:\n%s\n\nwant:\n%s", strings.Join(fc.execs, ";\n"), strings.Join(want, ";\n"))
	}
	if args := fc.execArgs[len(fc.execArgs)-1]; args[0] != migrations[len(migrations)-1].Version || args[2] != migrations[len(migrations)-1].checksum() {
		t.Fatalf("migration record: %v", args)
	}

	// Second start: everything recorded, only the bootstrap runs.
	c2, fc2 := fakeClient(t)
	c2.cfg = schemaConfig("")
	fc2.respond = func(sql string, _ []any) (*proto.Block, error) {
		if !strings.Contains(sql, "schema_migrations") {
			return nil, errors.New("unexpected query")
		}
		var rows [][]any
		for _, m := range migrations {
			rows = append(rows, []any{m.Version, m.checksum()})
		}
		return resultBlock(t, [][2]string{{"version", "UInt32"}, {"checksum", "String"}}, rows...), nil
	}
	if err := c2.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(fc2.execs) != len(bootstrapStatements) {
		t.Fatalf("a migrated database must only see the bootstrap: %v", fc2.execs)
	}
}

func TestMigrateContinuesWithoutCreateDatabaseGrant(t *testing.T) {
	c, fc := fakeClient(t)
	fc.execErr = func(sql string) error {
		if strings.HasPrefix(sql, "CREATE DATABASE") {
			return &ch.Exception{Code: 497, Message: "Not enough privileges"}
		}
		return nil
	}
	if err := c.Migrate(context.Background()); err != nil {
		t.Fatalf("a user without CREATE DATABASE on an existing database: %v", err)
	}
	c2, fc2 := fakeClient(t)
	fc2.execErr = func(sql string) error {
		if strings.Contains(sql, "tenant_leak_spans") {
			return &ch.Exception{Code: 62, Message: "Syntax error"}
		}
		return nil
	}
	err := c2.Migrate(context.Background())
	if err == nil || !strings.Contains(err.Error(), "schema migration 2 (tenant_leak_spans)") {
		t.Fatalf("a failing migration must be named: %v", err)
	}
	records := 0
	for _, s := range fc2.execs {
		if strings.HasPrefix(s, "INSERT INTO") {
			records++
		}
	}
	if records != 1 {
		t.Fatalf("a failed migration must not be recorded: %d records", records)
	}
}

// Every migration statement is idempotent, so re-running one is harmless.
// Setting a column comment again is, and so is adding a column if it is
// missing. Rebuild statements are not: they run only while their While
// query finds the old table (TestLiveMigrationsFromEmptyAndAgain runs them).
func TestMigrationsAreIdempotent(t *testing.T) {
	re := regexp.MustCompile(`^(CREATE (TABLE IF NOT EXISTS|OR REPLACE VIEW|DATABASE IF NOT EXISTS) |DROP TABLE IF EXISTS |` +
		`ALTER TABLE \S+( ON CLUSTER '[^']+')?\n((\s+COMMENT COLUMN \w+ '[^']*'|\s+ADD COLUMN IF NOT EXISTS [^\n]+),?\n?)+$)`)
	for _, cluster := range []string{"", "c1"} {
		d := newSchemaData(schemaConfig(cluster))
		all := append([]string(nil), bootstrapStatements...)
		for _, m := range migrations {
			all = append(all, m.Statements...)
		}
		stmts, err := renderAll(all, d)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stmts {
			if !re.MatchString(s) {
				t.Errorf("not idempotent:\n%s", s)
			}
		}
	}
}
