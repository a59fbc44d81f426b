package tenantguardprocessor

import (
	"context"
	"os"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/internal/sharedcomponent"
)

// Type is the processor's type in collector configs.
var Type = component.MustNewType("tenantguard")

const stability = component.StabilityLevelDevelopment

// NewFactory returns the tenantguard processor factory. The factory owns
// what its processors share (see shared).
func NewFactory() processor.Factory {
	sh := newShared()
	return processor.NewFactory(Type, createDefaultConfig,
		processor.WithTraces(sh.createTraces, stability))
}

// shared is what the processors one factory creates share, each resource
// held by reference count: an open journal (and its ClickHouse shipper) per
// path, and the metrics registry with a server per endpoint.
type shared struct {
	journals  sharedcomponent.Map[string, *sharedJournal]
	telemetry *telemetry
}

func newShared() *shared { return &shared{telemetry: newTelemetry()} }

// createDefaultConfig holds no default of its own but the queue size: the
// detector's settings come from detector.DefaultConfig, the sections' from
// their config.Default functions.
func createDefaultConfig() component.Config {
	instance, _ := os.Hostname()
	dc := detector.DefaultConfig()
	return &Config{
		TenantAttributes:   dc.TenantKeys,
		IdleWindow:         dc.IdleWindow,
		MaxTraces:          dc.MaxTraces,
		MaxSpansPerTrace:   dc.MaxSpansPerTrace,
		MaxEvidenceSpans:   dc.MaxEvidenceSpans,
		LateWindow:         dc.LateWindow,
		UnscopedQuery:      UnscopedQueryConfig{TenantColumn: dc.TenantColumn, Window: dc.UnscopedWindow},
		Coverage:           CoverageConfig{Window: dc.CoverageWindow, MaxTenants: dc.CoverageMaxTenants},
		EvidenceAttributes: config.DefaultEvidenceAttributes(),
		QueueSize:          defaultQueueSize,
		Instance:           instance,
		Store:              config.DefaultStore(),
		Alerts:             config.DefaultAlerts(),
		Metrics:            config.DefaultMetrics(),
	}
}

func (sh *shared) createTraces(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
	if err := cfg.(*Config).Alerts.Slack.CheckSecrets(); err != nil {
		return nil, err
	}
	p, err := newTenantguard(set, cfg.(*Config), sh)
	if err != nil {
		return nil, err
	}
	return processorhelper.NewTraces(ctx, set, cfg, next, p.processTraces,
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
		processorhelper.WithStart(p.start),
		processorhelper.WithShutdown(p.shutdown))
}
