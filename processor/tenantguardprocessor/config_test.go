package tenantguardprocessor

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/processor/processortest"
)

func loadConfig(t *testing.T, id component.ID) *Config {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := createDefaultConfig().(*Config)
	sub, err := cm.Sub(id.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Unmarshal(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestLoadConfig(t *testing.T) {
	def := loadConfig(t, component.NewID(Type))
	if err := confmap.Validate(def); err != nil {
		t.Fatalf("default config must validate: %v", err)
	}
	if got := strings.Join(def.TenantAttributes, ","); got != "tenant.id,tenant_id" {
		t.Errorf("default tenant_attributes = %s", got)
	}
	if def.IdleWindow != 60*time.Second || def.MaxTraces != 100_000 || def.Store.Journal.Path != "./data/leaks.jsonl" || !def.Alerts.Log.Enabled {
		t.Errorf("defaults: %+v", def)
	}

	full := loadConfig(t, component.MustNewIDWithName("tenantguard", "full"))
	if err := confmap.Validate(full); err != nil {
		t.Fatal(err)
	}
	want := Config{
		TenantAttributes: []string{"auth.tenant", "http.request.header.x-tenant-id"},
		Allow:            AllowConfig{Services: []string{"admin-console", "billing-batch"}, SharedTenants: []string{"system", "public"}},
		IdleWindow:       30 * time.Second, MaxTraces: 5000, MaxSpansPerTrace: 200, MaxEvidenceSpans: 16,
		QueueSize: 100, Instance: "collector-eu-1",
	}
	if strings.Join(full.TenantAttributes, ",") != strings.Join(want.TenantAttributes, ",") ||
		strings.Join(full.Allow.Services, ",") != strings.Join(want.Allow.Services, ",") ||
		strings.Join(full.Allow.SharedTenants, ",") != strings.Join(want.Allow.SharedTenants, ",") ||
		full.IdleWindow != want.IdleWindow || full.MaxTraces != want.MaxTraces ||
		full.MaxSpansPerTrace != want.MaxSpansPerTrace || full.MaxEvidenceSpans != want.MaxEvidenceSpans ||
		full.QueueSize != want.QueueSize || full.Instance != want.Instance ||
		full.Store.Journal.Path != "/var/lib/tenantguard/leaks.jsonl" || full.Alerts.Log.Enabled ||
		!full.EvidenceAttributes.Enabled || strings.Join(full.EvidenceAttributes.Clear, ",") != "http.route" ||
		string(full.EvidenceAttributes.HMACKey) != "0123456789abcdef0123456789abcdef" || full.EvidenceAttributes.MaxPerSpan != 8 {
		t.Errorf("full config decoded as %+v", full)
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	for name, field := range invalidConfigExamples {
		t.Run(name, func(t *testing.T) {
			cfg := loadConfig(t, component.MustNewIDWithName("tenantguard", name))
			err := confmap.Validate(cfg)
			if err == nil || !strings.Contains(err.Error(), field) {
				t.Fatalf("want an error naming %s, got %v", field, err)
			}
			if strings.Contains(err.Error(), "tooshort") {
				t.Fatalf("the error shows the key: %v", err)
			}
		})
	}
}

// decode unmarshals raw into the default config as the collector does.
func decode(raw map[string]any) (*Config, error) {
	cfg := createDefaultConfig().(*Config)
	err := confmap.NewFromStringMap(raw).Unmarshal(cfg)
	return cfg, err
}

// A bare number is a duration in nanoseconds to the decoder: every duration
// field, nested ones included, refuses it and says what to write instead.
func TestDurationsNeedAUnit(t *testing.T) {
	for name, tc := range map[string]struct {
		raw  map[string]any
		want string
	}{
		"idle_window": {map[string]any{"idle_window": 60}, "idle_window: 60 has no unit; write 60s"},
		"late_window": {map[string]any{"late_window": 600}, "late_window: 600 has no unit; write 600s"},
		"float":       {map[string]any{"coverage": map[string]any{"window": 1.5}}, "coverage.window: 1.5 has no unit; write 1.5s"},
		"unscoped":    {map[string]any{"unscoped_query": map[string]any{"window": 10}}, "unscoped_query.window: 10 has no unit; write 10s"},
		"clickhouse":  {map[string]any{"store": map[string]any{"clickhouse": map[string]any{"dial_timeout": 5}}}, "store.clickhouse.dial_timeout: 5 has no unit; write 5s"},
		"tls reload":  {map[string]any{"store": map[string]any{"clickhouse": map[string]any{"tls": map[string]any{"reload_interval": 30}}}}, "store.clickhouse.tls.reload_interval: 30 has no unit; write 30s"},
		"slack":       {map[string]any{"alerts": map[string]any{"slack": map[string]any{"max_backoff": 300}}}, "alerts.slack.max_backoff: 300 has no unit; write 300s"},
		"metrics":     {map[string]any{"metrics": map[string]any{"service_idle": 3600}}, "metrics.service_idle: 3600 has no unit; write 3600s"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := decode(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			err = confmap.Validate(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Count(err.Error(), "has no unit") != 1 {
				t.Fatalf("want one error %q, got %v", tc.want, err)
			}
		})
	}
	cfg, err := decode(map[string]any{"idle_window": "90s", "late_window": 0, "alerts": map[string]any{"slack": map[string]any{"timeout": "3s"}}})
	if err == nil {
		err = confmap.Validate(cfg)
	}
	if err != nil || cfg.IdleWindow != 90*time.Second || cfg.LateWindow != 0 || cfg.Alerts.Slack.Timeout != 3*time.Second {
		t.Fatalf("durations with units (and a bare 0) must decode: %v %+v", err, cfg)
	}
}

// A Slack key that is written but resolves to nothing (an unset
// environment variable) is an error naming the key, not "Slack is off".
func TestSlackSecretResolvingToNothing(t *testing.T) {
	for name, tc := range map[string]struct {
		slack map[string]any
		want  string
	}{
		"unset webhook":  {map[string]any{"webhook_url": nil}, "alerts.slack.webhook_url: is empty"},
		"empty webhook":  {map[string]any{"webhook_url": ""}, "alerts.slack.webhook_url: is empty"},
		"unset token":    {map[string]any{"token": nil, "channel": "C0123"}, "alerts.slack.token: is empty"},
		"channel alone":  {map[string]any{"channel": "C0123"}, "alerts.slack.token: required with channel"},
		"off, no secret": {map[string]any{"min_severity": "critical"}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := decode(map[string]any{"alerts": map[string]any{"slack": tc.slack}})
			if err != nil {
				t.Fatal(err)
			}
			if err := confmap.Validate(cfg); err != nil {
				t.Fatalf("the analyst commands read this config: it must validate, got %v", err)
			}
			_, err = NewFactory().CreateTraces(context.Background(), processortest.NewNopSettings(Type), cfg, consumertest.NewNop())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Slack left out must build, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Count(err.Error(), "alerts.slack") != 1 {
				t.Fatalf("want one error %q, got %v", tc.want, err)
			}
		})
	}
}

// Each section validates itself once: Config.Validate no longer repeats the
// checks confmap.Validate runs on every section, and store no longer runs
// clickhouse's.
func TestConfigErrorsNamedOnce(t *testing.T) {
	cfg, err := decode(map[string]any{
		"evidence_attributes": map[string]any{"hmac_key": "short"},
		"store":               map[string]any{"clickhouse": map[string]any{"endpoints": []any{"x"}}},
		"metrics":             map[string]any{"max_services": 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = confmap.Validate(cfg)
	for _, problem := range []string{"hmac_key: 5 bytes is too short", `endpoints[0]: "x" is not host:port`, "max_services: must be positive"} {
		if err == nil || strings.Count(err.Error(), problem) != 1 {
			t.Errorf("want %q once, got %v", problem, err)
		}
	}
}
