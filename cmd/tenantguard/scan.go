package main

// `tenantguard scan`: the production detector over OTLP trace files, for CI.
// Inputs are read request by request and fed to one detector, so traces
// spread over many files join, and memory is bounded by the detector's state
// (max_traces), not by the size of the input.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tenantguard/tenantguard/detector"
	tenantguardprocessor "github.com/tenantguard/tenantguard/processor/tenantguardprocessor"
)

// Exit codes of `tenantguard scan`.
const (
	exitClean    = 0 // no finding at or above --fail-on
	exitFindings = 1 // at least one finding at or above --fail-on
	exitInput    = 2 // usage error, or an input that could not be read in full
)

// maxRequestBytes bounds one request read whole: a JSON line, a
// length-prefixed record, one resourceSpans entry of a protobuf request. A
// corrupt length cannot make scan allocate more than this.
const maxRequestBytes = 256 << 20

// readBufferSize is the read-ahead on every input; it also bounds how far
// format detection looks.
const readBufferSize = 1 << 20

// traceFileExts are the names a directory contributes (each optionally
// followed by .gz); files named on the command line are read whatever
// their name.
var traceFileExts = []string{".json", ".jsonl", ".ndjson", ".pb", ".binpb", ".proto"}

type scanFlags struct {
	configs    []string
	sets       []string
	processor  string
	format     string
	output     string
	failOn     string
	all        bool
	allowEmpty bool
}

func newScanCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scan [flags] PATH...",
		Short: "Run the detector over OTLP trace files, as in CI: exit 1 on findings, 2 on unreadable input",
		Long: `Reads OTLP traces from files, directories (recursively, in lexical order) or
standard input (-), runs the tenantguard detector with the processor settings of
the collector config (--config), and reports every finding.

Inputs: OTLP JSON as the collector's file exporter writes it (one request per
line) or as single request documents; OTLP protobuf (an ExportTraceServiceRequest,
or the file exporter's length-prefixed records); either gzip-compressed. A
directory contributes *.json, *.jsonl, *.ndjson, *.pb, *.binpb and *.proto files,
each optionally .gz. All inputs feed one detector, so a trace spread over many
files, in any order, is judged whole.

Exit status: 0 when no finding is at or above --fail-on, 1 when one is, 2 on a
usage error or an input that could not be read in full (everything readable is
still scanned and reported).`,
		Example: `  tenantguard scan --config collector.yaml traces/
  tenantguard scan --format junit --output tenantguard.xml traces.json.gz
  zcat traces.json.gz | tenantguard scan -`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	sf := addScanFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		// The collector's root command exits 1 on any error; scan's exit
		// status is part of its interface, so it exits here.
		if code := runScan(cmd.Context(), sf, args, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()); code != exitClean {
			os.Exit(code)
		}
		return nil
	}
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		fmt.Fprintf(c.ErrOrStderr(), "tenantguard scan: %s (see tenantguard scan --help)\n", oneLine(err.Error()))
		os.Exit(exitInput)
		return err
	})
	return cmd
}

// addScanFlags declares scan's flags on cmd.
func addScanFlags(cmd *cobra.Command) *scanFlags {
	sf := &scanFlags{}
	f := cmd.Flags()
	f.StringArrayVar(&sf.configs, "config", nil,
		"collector config file(s); the tenantguard processor's settings are used (default: the processor's defaults)")
	f.StringArrayVar(&sf.sets, "set", nil,
		"override a config key, as for the collector, e.g. --set=processors.tenantguard.max_traces=500000")
	f.StringVar(&sf.processor, "processor", "",
		"which tenantguard processor's settings to use (e.g. tenantguard/edge) when the config has several")
	f.StringVar(&sf.format, "format", "text", "report format: text, json (one finding per line), junit or sarif")
	f.StringVarP(&sf.output, "output", "o", "", "write the report to this file instead of standard output")
	f.StringVar(&sf.failOn, "fail-on", string(detector.SeverityHigh),
		"exit 1 when a finding has this severity or higher: low, medium, high, critical, or none")
	f.BoolVar(&sf.all, "all", false, "also report findings withdrawn by an allow rule (they never fail)")
	f.BoolVar(&sf.allowEmpty, "allow-empty", false, "exit 0 rather than 2 when the inputs hold no span at all")
	return sf
}

// failNone is the --fail-on rank of "none": above every severity, even one
// this build does not know.
var failNone = detector.Severity("").Rank() + 1

func parseFailOn(s string) (int, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if v == "none" || v == "never" {
		return failNone, nil
	}
	sev, err := detector.ParseSeverity(v)
	if err != nil {
		return 0, fmt.Errorf("--fail-on %q: want %s or none", s, detector.Names(detector.Severities))
	}
	return sev.Rank(), nil
}

// runScan is the whole command; it returns the exit status.
func runScan(ctx context.Context, sf *scanFlags, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	usage := func(format string, a ...any) int {
		fmt.Fprintln(stderr, "tenantguard scan: "+oneLine(fmt.Sprintf(format, a...)))
		return exitInput
	}
	start := time.Now()
	failRank, err := parseFailOn(sf.failOn)
	if err != nil {
		return usage("%v", err)
	}
	format := strings.ToLower(sf.format)
	if !slices.Contains([]string{"text", "json", "junit", "sarif"}, format) {
		return usage("--format %q: want text, json, junit or sarif", sf.format)
	}
	if len(args) == 0 {
		return usage("no PATH given: name trace files, directories, or - for standard input")
	}
	cfg, err := scanConfig(ctx, sf)
	if err != nil {
		return usage("%v", err)
	}
	var out io.Writer = stdout
	var outFile *os.File
	if sf.output != "" {
		// Created before scanning, so a bad path fails now rather than
		// after an hour of input.
		if outFile, err = os.Create(sf.output); err != nil {
			return usage("--output: %v", err)
		}
		defer outFile.Close()
		out = outFile
	}

	s, err := newScanner(cfg, stderr)
	if err != nil {
		return usage("processors::tenantguard: %v", err)
	}
	inputs := s.expand(args)
	for _, in := range inputs {
		s.scanInput(in, stdin)
	}
	s.d.Flush()

	rep := s.report(failRank, sf.all, time.Since(start))
	rep.listErrors = outFile != nil
	if rep.spans == 0 && len(s.errs) == 0 && !sf.allowEmpty {
		s.fail(&inputError{input: strings.Join(args, " "),
			err: errors.New("no span in the input: nothing was checked (is the test run exporting traces there? --allow-empty accepts this)")})
		rep.errs = s.errs
	}
	bw := bufio.NewWriter(out)
	switch format {
	case "json":
		err = rep.writeJSON(bw)
	case "junit":
		err = rep.writeJUnit(bw)
	case "sarif":
		err = rep.writeSARIF(bw)
	default:
		err = rep.writeText(bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && outFile != nil {
		err = outFile.Close()
	}
	if err != nil {
		return usage("writing the report: %v", err)
	}
	for _, w := range s.warnings() {
		fmt.Fprintf(stderr, "tenantguard scan: warning: %s\n", w)
	}
	if format != "text" || outFile != nil {
		fmt.Fprintf(stderr, "tenantguard scan: %s\n", rep.summary())
	}
	switch {
	case len(rep.errs) > 0:
		return exitInput
	case rep.failing > 0:
		return exitFindings
	}
	return exitClean
}

// scanConfig is the tenantguard processor config scan judges with: the
// collector config's when --config (or --set) is given, else the defaults.
func scanConfig(ctx context.Context, sf *scanFlags) (*tenantguardprocessor.Config, error) {
	configs := sf.configs
	if len(configs) == 0 {
		if sf.processor != "" {
			return nil, errors.New("--processor needs --config")
		}
		if len(sf.sets) == 0 {
			return tenantguardprocessor.NewFactory().CreateDefaultConfig().(*tenantguardprocessor.Config), nil
		}
		// --set alone overrides the defaults of an otherwise empty config.
		configs = []string{"yaml:processors::tenantguard:"}
	}
	return loadProcessorConfig(ctx, configs, sf.sets, sf.processor)
}
