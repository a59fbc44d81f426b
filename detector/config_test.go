package detector_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*detector.Config)
		want   []string // substrings of the error; nil: valid
	}{
		{"defaults", func(*detector.Config) {}, nil},
		{"32 keys", func(c *detector.Config) { c.TenantKeys = keys(32) }, nil},
		{"zero shards means one per CPU", func(c *detector.Config) { c.Shards = 0 }, nil},
		{"no keys", func(c *detector.Config) { c.TenantKeys = nil }, []string{"tenant_attributes"}},
		{"33 keys", func(c *detector.Config) { c.TenantKeys = keys(33) }, []string{"tenant_attributes", "33"}},
		{"blank key", func(c *detector.Config) { c.TenantKeys = []string{"tenant.id", "  "} }, []string{"tenant_attributes[1]"}},
		{"duplicate key", func(c *detector.Config) { c.TenantKeys = []string{"a", "b", "a"} }, []string{"tenant_attributes[2]", "twice"}},
		{"blank allow service", func(c *detector.Config) { c.AllowServices = []string{"admin", ""} }, []string{"allow.services[1]"}},
		{"blank shared tenant", func(c *detector.Config) { c.SharedTenants = []string{" "} }, []string{"allow.shared_tenants[0]"}},
		{"zero idle window", func(c *detector.Config) { c.IdleWindow = 0 }, []string{"idle_window"}},
		{"negative idle window", func(c *detector.Config) { c.IdleWindow = -time.Second }, []string{"idle_window"}},
		{"zero max traces", func(c *detector.Config) { c.MaxTraces = 0 }, []string{"max_traces"}},
		{"negative max traces", func(c *detector.Config) { c.MaxTraces = -1 }, []string{"max_traces"}},
		{"zero max spans per trace", func(c *detector.Config) { c.MaxSpansPerTrace = 0 }, []string{"max_spans_per_trace"}},
		{"zero max evidence spans", func(c *detector.Config) { c.MaxEvidenceSpans = 0 }, []string{"max_evidence_spans"}},
		{"negative shards", func(c *detector.Config) { c.Shards = -2 }, []string{"shards"}},
		{"every problem at once", func(c *detector.Config) { *c = detector.Config{} }, []string{
			"tenant_attributes", "idle_window", "max_traces", "max_spans_per_trace", "max_evidence_spans",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := detector.DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			d, newErr := detector.New(cfg, nil)
			if tc.want == nil {
				if err != nil || newErr != nil {
					t.Fatalf("Validate: %v; New: %v; want valid", err, newErr)
				}
				if d == nil {
					t.Fatal("New returned a nil detector")
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted the config; want an error naming %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if newErr == nil || d != nil {
				t.Errorf("New = %v, %v; want nil and the validation error", d, newErr)
			} else if newErr.Error() != err.Error() {
				t.Errorf("New error %q differs from Validate error %q", newErr, err)
			}
		})
	}
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("key%d", i)
	}
	return out
}

func TestDefaultConfig(t *testing.T) {
	c := detector.DefaultConfig()
	if !slices.Equal(c.TenantKeys, []string{"tenant.id", "tenant_id"}) || c.IdleWindow != detector.DefaultIdleWindow ||
		c.MaxTraces != detector.DefaultMaxTraces || c.MaxSpansPerTrace != detector.DefaultMaxSpansPerTrace ||
		c.MaxEvidenceSpans != detector.DefaultMaxEvidenceSpans {
		t.Errorf("DefaultConfig = %+v", c)
	}
	// Callers get their own slice.
	c.TenantKeys[0] = "changed"
	if detector.DefaultConfig().TenantKeys[0] != "tenant.id" {
		t.Error("DefaultConfig shares its key slice")
	}
}

func TestKeyIndexOutOfRangeIsRejected(t *testing.T) {
	h := newHarness(t, nil) // two keys
	tr := tid(16)
	h.batch(
		span(tr, 1, 0, "a", "a", ten("acme")),
		span(tr, 2, 1, "b", "b", tk(7, detector.StringValue("globex"))),
		span(tr, 3, 1, "b", "b", ten("acme"), tk(200, detector.StringValue("globex"))),
	)
	h.d.Flush()
	if h.rec.len() != 0 {
		t.Errorf("values under unknown keys are not tenants; got %s", describe(h.rec.all()))
	}
	if st := h.d.Stats(); st.TenantsRejected != 2 {
		t.Errorf("TenantsRejected = %d, want 2", st.TenantsRejected)
	}
}
