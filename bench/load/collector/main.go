// Command collector is the whole-collector load's collector for the
// experiments: the tenantguard distribution's components
// (internal/distribution) plus package experiment's processor, so that one
// binary runs without tenantguard, with it and with an experiment in its
// place (go run ./load -experiment bounded). Not a distribution: a
// measurement.
package main

import (
	"fmt"
	"os"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/otelcol"

	"github.com/tenantguard/tenantguard/bench/experiment"
	"github.com/tenantguard/tenantguard/internal/distribution"
)

func main() {
	cmd := otelcol.NewCommand(otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{Command: "collector", Description: "tenantguard's load collector with experiments", Version: "bench"},
		Factories: func() (otelcol.Factories, error) { return distribution.Components("bench", experiment.NewFactory()) },
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{fileprovider.NewFactory()},
				DefaultScheme:     "file",
			},
		},
	})
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "collector:", err)
		os.Exit(1)
	}
}
