package tenantguardprocessor

// The tests contrib's mdatagen generates for every component
// (generated_component_test.go), written by hand: mdatagen is not served by
// the module proxy these machines use.

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/tenantguard/tenantguard/store/journal"
)

func TestComponentFactoryType(t *testing.T) {
	if got := NewFactory().Type().String(); got != "tenantguard" {
		t.Fatalf("factory type %q, want tenantguard", got)
	}
}

func TestComponentConfigStruct(t *testing.T) {
	if err := componenttest.CheckConfigStruct(NewFactory().CreateDefaultConfig()); err != nil {
		t.Fatal(err)
	}
}

// lifecycleConfig is the default config with its files in a temporary
// directory and no metrics server, so parallel packages don't collide.
func lifecycleConfig(t *testing.T) *Config {
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	cfg.Store.Journal.Path = filepath.Join(t.TempDir(), "leaks.jsonl")
	cfg.Metrics.Endpoint = ""
	return cfg
}

func TestComponentLifecycle(t *testing.T) {
	factory := NewFactory()
	ctx := context.Background()

	t.Run("traces-shutdown", func(t *testing.T) {
		p, err := factory.CreateTraces(ctx, processortest.NewNopSettings(Type), lifecycleConfig(t), consumertest.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		// Shutdown without Start is legal in the collector (a pipeline that
		// failed to build another component) and must not block or fail.
		if err := p.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown without start: %v", err)
		}
	})

	t.Run("traces-lifecycle", func(t *testing.T) {
		cfg := lifecycleConfig(t)
		sink := new(consumertest.TracesSink)
		p, err := factory.CreateTraces(ctx, processortest.NewNopSettings(Type), cfg, sink)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(ctx, componenttest.NewNopHost()); err != nil {
			t.Fatal(err)
		}
		if err := p.ConsumeTraces(ctx, leakingTrace(1)); err != nil {
			t.Fatal(err)
		}
		if err := p.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		// Shutdown twice: the collector may call it again on a failed reload.
		if err := p.Shutdown(ctx); err != nil {
			t.Fatalf("second shutdown: %v", err)
		}
		if got := sink.SpanCount(); got != 3 {
			t.Errorf("forwarded %d spans, want 3", got)
		}
		recs, _, err := journal.ReadFile(cfg.Store.Journal.Path)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			t.Fatal("the leaking trace left no finding in the journal after shutdown")
		}
	})
}

// invalidConfigExamples are the examples in testdata/config.yaml that must
// fail validation, each with what its error must say: the field, and for
// secrets the problem without the value.
var invalidConfigExamples = map[string]string{
	"no_keys":         "tenant_attributes",
	"bad_window":      "idle_window",
	"bad_queue":       "queue_size",
	"empty_journal":   "store.journal.path",
	"duplicate_key":   "tenant_attributes[1]",
	"unitless_window": "idle_window: 60 has no unit; write 60s",
	// names the field and the problem, never the key
	"short_evidence_key": "evidence_attributes.hmac_key: 8 bytes is too short",
}

// TestEveryExampleConfigLoads loads every config shape in
// testdata/config.yaml: the valid ones must validate, and each invalid one
// must fail naming the field it is about.
func TestEveryExampleConfigLoads(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for key := range cm.ToStringMap() {
		id := component.ID{}
		if err := id.UnmarshalText([]byte(key)); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		t.Run(key, func(t *testing.T) {
			cfg := NewFactory().CreateDefaultConfig().(*Config)
			sub, err := cm.Sub(key)
			if err != nil {
				t.Fatal(err)
			}
			err = sub.Unmarshal(cfg)
			if err == nil {
				err = confmap.Validate(cfg)
			}
			field, bad := invalidConfigExamples[id.Name()]
			switch {
			case bad && err == nil:
				t.Fatalf("loaded and validated; want an error naming %s", field)
			case bad && !strings.Contains(err.Error(), field):
				t.Fatalf("error %q does not name %s", err, field)
			case !bad && err != nil:
				t.Fatalf("valid example rejected: %v", err)
			}
		})
		seen++
	}
	if seen < len(invalidConfigExamples)+2 {
		t.Fatalf("testdata/config.yaml has %d examples; expected at least the %d invalid ones and two valid", seen, len(invalidConfigExamples))
	}
}
