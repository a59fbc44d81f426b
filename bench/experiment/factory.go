package experiment

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
)

// Type is the experiment processor's name in a collector's configuration.
var Type = component.MustNewType("experiment")

// Config picks the experiment and sizes it, as tenantguard's max_traces
// and journal path do.
type Config struct {
	Kind      string `mapstructure:"kind"`
	MaxTraces int    `mapstructure:"max_traces"`
	// Dir holds the durable prototypes' file; it must be on a disk.
	Dir string `mapstructure:"dir"`
}

// Validate names a bad setting once.
func (c *Config) Validate() error {
	if !slices.Contains(Kinds, c.Kind) {
		return fmt.Errorf("kind %q is not an experiment (want one of %v)", c.Kind, Kinds)
	}
	if c.MaxTraces <= 0 {
		return errors.New("max_traces must be positive")
	}
	if c.Dir == "" && (c.Kind == Durable || c.Kind == Bounded || c.Kind == Direct) {
		return fmt.Errorf("kind %s writes a file: set dir", c.Kind)
	}
	return nil
}

// NewFactory returns the factory of the experiment processor, for the
// whole-collector load (../load/collector).
func NewFactory() processor.Factory {
	return processor.NewFactory(Type,
		func() component.Config { return &Config{Kind: Bounded, MaxTraces: 100_000} },
		processor.WithTraces(func(_ context.Context, _ processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
			c := cfg.(*Config)
			return New(c.Kind, c.MaxTraces, c.Dir, next)
		}, component.StabilityLevelDevelopment))
}
