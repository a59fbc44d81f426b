package tenantguardprocessor

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/config/configtls"
)

// The component README is the operator's reference: its configuration
// table names every field of Config by its YAML path, and its metrics table
// every metric /metrics serves.
func TestReadmeDocumentsEveryFieldAndMetric(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	section := func(heading string) string {
		i := strings.Index(readme, "\n## "+heading+"\n")
		if i < 0 {
			t.Fatalf("README.md has no section %q", heading)
		}
		rest := readme[i+len(heading)+5:]
		if j := strings.Index(rest, "\n## "); j >= 0 {
			rest = rest[:j]
		}
		return rest
	}
	cfgTable, metricTable := section("Configuration"), section("Metrics")
	paths := yamlPaths(reflect.TypeFor[Config](), "")
	if len(paths) < 50 || !strings.Contains(strings.Join(paths, " "), "store.clickhouse.max_attempts") {
		t.Fatalf("the walk over Config found %d settings: it no longer reads the struct", len(paths))
	}
	for _, path := range paths {
		if !strings.Contains(cfgTable, "| `"+path+"` |") {
			t.Errorf("README.md's configuration table has no row for %s", path)
		}
	}
	for name := range ExportedMetrics() {
		if !strings.Contains(metricTable, "| `"+name+"` |") {
			t.Errorf("README.md's metrics table has no row for %s", name)
		}
	}
}

// yamlPaths lists the YAML paths of t's settings: nested sections are
// walked, lists, maps and the collector's TLS settings are one setting.
func yamlPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		path := prefix + tag
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[configtls.ClientConfig]() && f.Type != reflect.TypeFor[time.Duration]() {
			out = append(out, yamlPaths(f.Type, path+".")...)
			continue
		}
		out = append(out, path)
	}
	return out
}
