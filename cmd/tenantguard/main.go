// Command tenantguard is an OpenTelemetry Collector with the tenantguard
// processor built in, plus `tenantguard leaks` for analysts.
package main

import (
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/otelcol"
)

// version is stamped at release time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func providerFactories() []confmap.ProviderFactory {
	return []confmap.ProviderFactory{
		fileprovider.NewFactory(),
		envprovider.NewFactory(),
		yamlprovider.NewFactory(),
	}
}

func main() {
	set := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{
			Command:     "tenantguard",
			Description: "OpenTelemetry Collector that detects cross-tenant traces",
			Version:     version,
		},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: providerFactories(),
				DefaultScheme:     "env",
			},
		},
	}
	cmd := otelcol.NewCommand(set)
	cmd.AddCommand(newLeaksCommand())
	cmd.AddCommand(newScanCommand())
	// main prints the error, once, on one line; cobra printing it too showed
	// every error twice.
	cmd.SilenceErrors = true
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "tenantguard: "+oneLine(err.Error()))
		os.Exit(1)
	}
}

// oneLine joins a message's lines (errors.Join, a config decoder's list)
// with "; ", so every error reads as one line that names the problem.
func oneLine(msg string) string {
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, strings.TrimSuffix(l, ";"))
		}
	}
	return strings.Join(parts, "; ")
}
