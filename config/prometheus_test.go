package config_test

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"text/template"
	"time"

	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/tenantguard/tenantguard/processor/tenantguardprocessor"
)

const (
	alertRulesFile = "prometheus/alerts.yml"
	alertTestsFile = "prometheus/alerts_test.yml"
	alertsReadme   = "prometheus/README.md"
	runbookBaseURL = "https://github.com/tenantguard/tenantguard/blob/main/config/prometheus/README.md#runbook-"
)

// exportedMetrics are the metric names and types the processor serves on
// /metrics, from its own declarations. An alert that names anything else
// watches a series that never exists and so never fires.
var exportedMetrics = tenantguardprocessor.ExportedMetrics()

// expectedAlerts are the alerts on-call relies on; removing one is a decision,
// not an accident.
var expectedAlerts = []string{
	"TenantguardLeakDetected",
	"TenantguardBlockedAttempts",
	"TenantguardEvidenceStoreBacklogGrowing",
	"TenantguardEvidenceDropped",
	"TenantguardAlertDeliveryFailing",
	"TenantguardTracesEvicted",
	"TenantguardTenantCoverageDropping",
	"TenantguardNoSpans",
	"TenantguardDetectionSlow",
}

type promRuleFile struct {
	Groups []promRuleGroup `mapstructure:"groups"`
}

type promRuleGroup struct {
	Name     string     `mapstructure:"name"`
	Interval string     `mapstructure:"interval"`
	Rules    []promRule `mapstructure:"rules"`
}

type promRule struct {
	Alert       string            `mapstructure:"alert"`
	Record      string            `mapstructure:"record"`
	Expr        string            `mapstructure:"expr"`
	For         string            `mapstructure:"for"`
	Labels      map[string]string `mapstructure:"labels"`
	Annotations map[string]string `mapstructure:"annotations"`
}

type promTestFile struct {
	Tests []struct {
		Name          string `mapstructure:"name"`
		AlertRuleTest []struct {
			AlertName string           `mapstructure:"alertname"`
			ExpAlerts []map[string]any `mapstructure:"exp_alerts"`
		} `mapstructure:"alert_rule_test"`
	} `mapstructure:"tests"`
}

// TestPrometheusRulesPromtool runs promtool's own checks: the rules parse and
// type-check, and the unit tests in alerts_test.yml pass.
func TestPrometheusRulesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool not on PATH (install Debian package prometheus): %v", err)
		}
		t.Skip("promtool not on PATH: install Debian package prometheus")
	}
	for _, args := range [][]string{
		{"check", "rules", alertRulesFile},
		{"test", "rules", alertTestsFile},
	} {
		t.Run(strings.Join(args[:2], "_"), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, promtool, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

func loadPromRules(t *testing.T) promRuleFile {
	t.Helper()
	conf, err := confmaptest.LoadConf(alertRulesFile)
	if err != nil {
		t.Fatalf("parse %s: %v", alertRulesFile, err)
	}
	var rf promRuleFile
	// Unknown keys are an error: a typo such as `anotations` must not pass.
	if err := conf.Unmarshal(&rf); err != nil {
		t.Fatalf("decode %s: %v", alertRulesFile, err)
	}
	return rf
}

// TestPrometheusAlertsWellFormed checks what promtool does not: every alert can
// be acted on (severity, summary, description, runbook link) and watches
// metrics the processor actually exports.
func TestPrometheusAlertsWellFormed(t *testing.T) {
	rf := loadPromRules(t)
	if len(rf.Groups) != 1 || rf.Groups[0].Name != "tenantguard" {
		t.Fatalf("want exactly one rule group named tenantguard, got %+v", rf.Groups)
	}

	metricRE := regexp.MustCompile(`tenantguard_[a-z_]+`)
	var got []string
	for i, r := range rf.Groups[0].Rules {
		if r.Alert == "" {
			if r.Record == "" {
				t.Errorf("rule %d is neither an alert nor a recording rule", i)
			}
			continue
		}
		got = append(got, r.Alert)
		if strings.TrimSpace(r.Expr) == "" {
			t.Errorf("%s: empty expr", r.Alert)
		}

		sev := r.Labels["severity"]
		switch {
		case sev == "":
			t.Errorf("%s: no severity label", r.Alert)
		case strings.Contains(sev, "{{"):
			// templated (Prometheus expands label templates): every outcome
			// must still be page or ticket
			for _, out := range renderSeverity(t, r.Alert, sev) {
				if out != "page" && out != "ticket" {
					t.Errorf("%s: templated severity %q yields %q, want page or ticket", r.Alert, sev, out)
					break
				}
			}
		case sev != "page" && sev != "ticket":
			t.Errorf("%s: severity %q, want page or ticket", r.Alert, sev)
		}

		for _, k := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[k]) == "" {
				t.Errorf("%s: missing %s annotation", r.Alert, k)
			}
		}
		if want := runbookBaseURL + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
			t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
		}

		names := metricRE.FindAllString(r.Expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: expr references no tenantguard metric", r.Alert)
		}
		for _, name := range names {
			if !knownMetric(name) {
				t.Errorf("%s: expr references %s, which the processor does not export", r.Alert, name)
			}
		}
	}

	sort.Strings(got)
	want := append([]string(nil), expectedAlerts...)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("alerts = %v, want %v", got, want)
	}
}

// renderSeverity expands a templated severity label the way Prometheus does
// ($labels bound to the alert's labels) for a few label sets.
func renderSeverity(t *testing.T, alert, tmpl string) []string {
	t.Helper()
	tp, err := template.New(alert).Option("missingkey=zero").Parse(
		"{{$labels := .Labels}}{{$value := .Value}}" + tmpl)
	if err != nil {
		t.Errorf("%s: severity template: %v", alert, err)
		return nil
	}
	var outs []string
	for _, labels := range []map[string]string{
		{},
		{"store": "journal"}, {"store": "clickhouse"},
		{"notifier": "log"}, {"notifier": "slack"},
	} {
		var b strings.Builder
		if err := tp.Execute(&b, struct {
			Labels map[string]string
			Value  float64
		}{labels, 1}); err != nil {
			t.Errorf("%s: severity template: %v", alert, err)
			return nil
		}
		outs = append(outs, b.String())
	}
	return outs
}

// knownMetric accepts an exported name, or a histogram's _bucket, _sum and
// _count series.
func knownMetric(name string) bool {
	if _, ok := exportedMetrics[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && exportedMetrics[base] == "histogram" {
			return true
		}
	}
	return false
}

func TestKnownMetric(t *testing.T) {
	for name, want := range map[string]bool{
		"tenantguard_findings_total":                   true,
		"tenantguard_detection_latency_seconds_bucket": true,
		"tenantguard_detection_latency_seconds_count":  true,
		"tenantguard_findings_total_count":             false, // not a histogram
		"tenantguard_finding_total":                    false,
	} {
		if got := knownMetric(name); got != want {
			t.Errorf("knownMetric(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestPrometheusAlertsTestedAndDocumented checks that every alert has a unit
// test where it fires and one where it must not, and a runbook section in
// prometheus/README.md whose GitHub anchor is the runbook_url's.
func TestPrometheusAlertsTestedAndDocumented(t *testing.T) {
	conf, err := confmaptest.LoadConf(alertTestsFile)
	if err != nil {
		t.Fatalf("parse %s: %v", alertTestsFile, err)
	}
	var tf promTestFile
	if err := conf.Unmarshal(&tf, confmap.WithIgnoreUnused()); err != nil {
		t.Fatalf("decode %s: %v", alertTestsFile, err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tf.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) > 0 {
				fires[at.AlertName] = true
			} else {
				silent[at.AlertName] = true
			}
		}
	}

	readme, err := os.ReadFile(alertsReadme)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#{2,4} (.+)$`).FindAllStringSubmatch(string(readme), -1) {
		anchors[githubAnchor(m[1])] = true
	}

	for _, r := range loadPromRules(t).Groups[0].Rules {
		if r.Alert == "" {
			continue
		}
		if !fires[r.Alert] {
			t.Errorf("%s: no test in %s where it fires", r.Alert, alertTestsFile)
		}
		if !silent[r.Alert] {
			t.Errorf("%s: no test in %s where it must not fire (exp_alerts: [])", r.Alert, alertTestsFile)
		}
		if anchor := "runbook-" + strings.ToLower(r.Alert); !anchors[anchor] {
			t.Errorf("%s: %s has no heading with anchor #%s (e.g. \"### Runbook: %s\")", r.Alert, alertsReadme, anchor, r.Alert)
		}
	}
}

// githubAnchor is the id GitHub gives a Markdown heading: lower case, spaces
// to hyphens, punctuation other than hyphens and underscores dropped.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}
