package main

// Reading the collector config for `leaks` and `scan`: the same files,
// providers and --set syntax as the collector, decoded into the tenantguard
// processor's settings.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"

	tenantguardprocessor "github.com/tenantguard/tenantguard/processor/tenantguardprocessor"
)

// checkConfigFile names a --config file that cannot be read by its absolute
// path, before the config resolver wraps the same fact in three layers.
// URIs with a provider scheme (env:, yaml:) are left to the resolver.
func checkConfigFile(uri string) error {
	path := uri
	if scheme, rest, ok := strings.Cut(uri, ":"); ok && len(scheme) > 1 {
		if scheme != "file" {
			return nil
		}
		path = rest
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	info, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("--config %s: no such file", abs)
	case err != nil:
		return fmt.Errorf("--config %s: %w", abs, errors.Unwrap(err))
	case info.IsDir():
		return fmt.Errorf("--config %s: is a directory, not a config file", abs)
	}
	return nil
}

// loadProcessorConfig resolves the collector config the way the collector
// does (same providers, same --set syntax) and decodes the tenantguard
// processor's settings over the factory defaults.
// decodeNoise is the heading mapstructure puts before its list of errors,
// with the (here empty) name of the struct being decoded.
var decodeNoise = regexp.MustCompile(`(?:'[^']*' )?decoding failed due to the following error\(s\):`)

func loadProcessorConfig(ctx context.Context, configs, sets []string, name string) (*tenantguardprocessor.Config, error) {
	if len(configs) == 0 {
		return nil, errors.New("--config is required: pass the collector config file the collector runs with")
	}
	uris := append([]string(nil), configs...)
	for _, c := range configs {
		if err := checkConfigFile(c); err != nil {
			return nil, err
		}
	}
	for _, s := range sets {
		key, val, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("--set %q: missing '=' (expected key=value)", s)
		}
		uris = append(uris, "yaml:"+strings.ReplaceAll(strings.TrimSpace(key), ".", "::")+": "+strings.TrimSpace(val))
	}
	resolver, err := confmap.NewResolver(confmap.ResolverSettings{
		URIs:              uris,
		ProviderFactories: providerFactories(),
		DefaultScheme:     "env",
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	conf, err := resolver.Resolve(ctx)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	procs, err := conf.Sub("processors")
	if err != nil {
		return nil, fmt.Errorf("config: processors: %w", err)
	}
	var ids []string
	for key := range procs.ToStringMap() {
		var id component.ID
		if err := id.UnmarshalText([]byte(key)); err != nil {
			continue
		}
		if id.Type() == tenantguardprocessor.Type {
			ids = append(ids, key)
		}
	}
	sort.Strings(ids)
	var chosen string
	switch {
	case name != "":
		for _, id := range ids {
			if id == name {
				chosen = id
			}
		}
		if chosen == "" {
			return nil, fmt.Errorf("--processor %q: no such tenantguard processor in the config (found: %s)", name, strings.Join(ids, ", "))
		}
	case len(ids) == 0:
		return nil, errors.New("the config has no tenantguard processor under processors")
	case len(ids) > 1:
		return nil, fmt.Errorf("the config has several tenantguard processors (%s): choose one with --processor", strings.Join(ids, ", "))
	default:
		chosen = ids[0]
	}
	cfg := tenantguardprocessor.NewFactory().CreateDefaultConfig().(*tenantguardprocessor.Config)
	sub, err := procs.Sub(chosen)
	if err != nil {
		return nil, fmt.Errorf("config: processors::%s: %w", chosen, err)
	}
	if err := sub.Unmarshal(cfg); err != nil {
		// mapstructure's "decoding failed due to the following error(s):"
		// heads a list; the list is the message.
		msg := decodeNoise.ReplaceAllString(err.Error(), "")
		msg = strings.ReplaceAll(msg, fmt.Sprintf("'%T' has invalid keys:", tenantguardprocessor.Config{}), "unknown keys:")
		return nil, fmt.Errorf("processors::%s: %s", chosen, oneLine(msg))
	}
	// confmap.Validate, as the collector does: it runs every section's own
	// Validate (store, alerts), which Config.Validate does not repeat.
	if err := confmap.Validate(cfg); err != nil {
		return nil, fmt.Errorf("processors::%s: %w", chosen, err)
	}
	return cfg, nil
}
