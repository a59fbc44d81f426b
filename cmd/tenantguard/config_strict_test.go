package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// strictConfig is a working collector config but for what a case adds to
// processors.tenantguard (%[3]s, YAML at the processor's indent).
const strictConfig = `receivers:
  otlp:
    protocols:
      http:
        endpoint: %[1]s
processors:
  tenantguard:
    store:
      journal:
        path: %[2]s
%[3]s
exporters:
  debug: {}
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tenantguard]
      exporters: [debug]
`

// runToFailure runs the collector with processor settings that must stop
// it at start and returns its output's last line (what main prints) and
// the whole output. A collector that starts instead fails the test.
func runToFailure(t *testing.T, processorYAML string, env ...string) (last, all string) {
	t.Helper()
	dir := t.TempDir()
	httpAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg := fmt.Sprintf(strictConfig, httpAddr, strconv.Quote(filepath.Join(dir, "data", "leaks.jsonl")),
		indentYAML([]string{processorYAML}, "    "))
	cfgPath := filepath.Join(dir, "collector.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := launch("collector ("+cfgPath+")", tenantguardBinary(t), dir, []string{"--config", cfgPath}, env)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.kill()
		t.Fatalf("the collector did not exit in 30s\n%s", tail(p.logs.String(), 8<<10))
	}
	all = p.logs.String()
	var exit *exec.ExitError
	if !errors.As(p.waitErr, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("want exit status 1, got %v\n%s", p.waitErr, tail(all, 8<<10))
	}
	lines := strings.Split(strings.TrimSpace(all), "\n")
	return lines[len(lines)-1], all
}

// TestConfigMistakesStopTheCollector runs the real collector with each
// mistake that used to be accepted silently: it must exit 1, and its last
// line must name the problem, once.
func TestConfigMistakesStopTheCollector(t *testing.T) {
	metricsTaken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer metricsTaken.Close()
	taken := metricsTaken.Addr().String()

	for _, tc := range []struct {
		name, yaml string
		env        []string
		want       string // the last line ends with it
		once       string // appears once in the last line
		slack      bool   // Slack is configured: it must not be reported off
	}{
		{
			name: "idle_window without a unit",
			yaml: "idle_window: 60",
			want: "invalid configuration: processors::tenantguard: idle_window: 60 has no unit; write 60s",
			once: "idle_window",
		},
		{
			name: "nested durations without a unit",
			yaml: "alerts:\n  slack:\n    group_window: 2.5",
			want: "invalid configuration: processors::tenantguard: alerts.slack.group_window: 2.5 has no unit; write 2.5s",
			once: "group_window",
		},
		{
			name:  "Slack webhook from an unset variable",
			yaml:  "alerts:\n  slack:\n    webhook_url: ${env:TG_STRICT_UNSET_WEBHOOK}",
			env:   []string{"TG_STRICT_UNSET_WEBHOOK="},
			want:  `failed to create "tenantguard" processor, in pipeline "traces": alerts.slack.webhook_url: is empty (an unset environment variable?); set it, or remove the key to turn Slack off`,
			once:  "webhook_url",
			slack: true,
		},
		{
			name:  "Slack bot token from an unset variable",
			yaml:  "alerts:\n  slack:\n    token: ${env:TG_STRICT_UNSET_TOKEN}\n    channel: C0123LEAKS",
			want:  `alerts.slack.token: is empty (an unset environment variable?); set it, or remove the key to turn Slack off`,
			once:  "token",
			slack: true,
		},
		{
			// Config.Validate used to run the sections' own checks as
			// well as the collector did: each error was printed twice.
			name: "a section's own check",
			yaml: "evidence_attributes:\n  hmac_key: short",
			want: "invalid configuration: processors::tenantguard::evidence_attributes: evidence_attributes.hmac_key: 5 bytes is too short; use at least 16 random bytes (32 recommended)",
			once: "too short",
		},
		{
			name: "metrics endpoint in use",
			yaml: "metrics:\n  endpoint: " + taken,
			want: `failed to start "tenantguard" processor: metrics.endpoint: listen tcp ` + taken + `: bind: address already in use`,
			once: "address already in use",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			last, all := runToFailure(t, tc.yaml, tc.env...)
			if !strings.HasSuffix(last, tc.want) || strings.Count(last, tc.once) != 1 {
				t.Fatalf("last line:\n  %s\nwant it to end with\n  %s\nand name %q once\n--- output ---\n%s", last, tc.want, tc.once, tail(all, 8<<10))
			}
			if tc.slack && strings.Contains(all, "Slack alerts are off") {
				t.Fatalf("the collector said Slack is off instead of refusing the config:\n%s", tail(all, 8<<10))
			}
		})
	}
}
