package processor

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
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
