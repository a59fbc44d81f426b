package main

import "strings"

// collectorOption changes the config startCollector writes.
type collectorOption func(*collectorSettings)

type collectorSettings struct {
	processorYAML []string
	metricsYAML   []string
	idleWindow    string // default 2s
	env           []string
	storeYAML     []string
}

// withStoreYAML adds settings to processors.tenantguard.store (whose
// journal the base config sets), e.g. a clickhouse block.
func withStoreYAML(yaml string) collectorOption {
	return func(s *collectorSettings) { s.storeYAML = append(s.storeYAML, yaml) }
}

// withEnv adds variables to the collector's environment, e.g. GOMAXPROCS.
func withEnv(kv ...string) collectorOption {
	return func(s *collectorSettings) { s.env = append(s.env, kv...) }
}

// withIdleWindow sets the processor's idle_window (a duration with its unit).
func withIdleWindow(d string) collectorOption {
	return func(s *collectorSettings) { s.idleWindow = d }
}

// withProcessorYAML adds settings to processors.tenantguard: YAML written as
// if at the top level (`unscoped_query: {tables: [stock]}`), indented here.
// Keys the base config already sets (idle_window, instance, store, metrics,
// alerts) must not be repeated.
func withProcessorYAML(yaml string) collectorOption {
	return func(s *collectorSettings) { s.processorYAML = append(s.processorYAML, yaml) }
}

// withMetricsYAML adds settings to processors.tenantguard.metrics (whose
// endpoint the base config sets), e.g. `service_idle: 2s`.
func withMetricsYAML(yaml string) collectorOption {
	return func(s *collectorSettings) { s.metricsYAML = append(s.metricsYAML, yaml) }
}

// processorBlock renders the extra processor settings at tenantguard's indent.
func (s *collectorSettings) processorBlock() string { return indentYAML(s.processorYAML, "    ") }

// metricsBlock renders the extra metrics settings at their indent.
func (s *collectorSettings) metricsBlock() string { return indentYAML(s.metricsYAML, "      ") }

// storeBlock renders the extra store settings at their indent.
func (s *collectorSettings) storeBlock() string { return indentYAML(s.storeYAML, "      ") }

func indentYAML(ys []string, indent string) string {
	var b strings.Builder
	for _, y := range ys {
		for _, line := range strings.Split(strings.TrimRight(y, "\n"), "\n") {
			if strings.TrimSpace(line) == "" {
				b.WriteString("\n")
				continue
			}
			b.WriteString(indent + line + "\n")
		}
	}
	return b.String()
}
