package processor

import (
	"context"
	"os"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/detector"
)

// Type is the processor's type in collector configs.
var Type = component.MustNewType("tenantguard")

const stability = component.StabilityLevelDevelopment

// NewFactory returns the tenantguard processor factory.
func NewFactory() processor.Factory {
	return processor.NewFactory(Type, createDefaultConfig,
		processor.WithTraces(createTraces, stability))
}

func createDefaultConfig() component.Config {
	instance, _ := os.Hostname()
	return &Config{
		TenantAttributes:   detector.DefaultTenantKeys(),
		IdleWindow:         detector.DefaultIdleWindow,
		MaxTraces:          detector.DefaultMaxTraces,
		MaxSpansPerTrace:   detector.DefaultMaxSpansPerTrace,
		MaxEvidenceSpans:   detector.DefaultMaxEvidenceSpans,
		LateWindow:         detector.DefaultRuleWindow,
		UnscopedQuery:      UnscopedQueryConfig{TenantColumn: detector.DefaultTenantColumn, Window: detector.DefaultRuleWindow},
		Coverage:           CoverageConfig{Window: detector.DefaultRuleWindow, MaxTenants: detector.DefaultCoverageMaxTenants},
		EvidenceAttributes: config.DefaultEvidenceAttributes(),
		QueueSize:          10_000,
		Instance:           instance,
		Store: config.Store{
			Journal:    config.Journal{Path: config.DefaultJournalPath},
			ClickHouse: config.DefaultClickHouse(),
		},
		Alerts: config.Alerts{Log: config.LogAlerts{Enabled: true}, Slack: config.DefaultSlack()},
		Metrics: config.Metrics{
			Endpoint:    config.DefaultMetricsEndpoint,
			MaxServices: detector.DefaultMaxServices,
			ServiceIdle: detector.DefaultServiceIdle,
		},
	}
}

func createTraces(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
	if err := cfg.(*Config).Alerts.Slack.CheckSecrets(); err != nil {
		return nil, err
	}
	p, err := newTenantguard(set, cfg.(*Config))
	if err != nil {
		return nil, err
	}
	return processorhelper.NewTraces(ctx, set, cfg, next, p.processTraces,
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
		processorhelper.WithStart(p.start),
		processorhelper.WithShutdown(p.shutdown))
}
