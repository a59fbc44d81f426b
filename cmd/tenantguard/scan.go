package main

// `tenantguard scan`: the production detector over OTLP trace files, for CI.
// Inputs are read request by request and fed to one detector, so traces
// spread over many files join, and memory is bounded by the detector's state
// (max_traces), not by the size of the input.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/detector"
	tenantguardprocessor "github.com/tenantguard/tenantguard/processor"
	"github.com/tenantguard/tenantguard/store"
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

// ---------------------------------------------------------------- scanner

// location is where a request was read: a line for JSON, a byte offset for
// protobuf (of the decompressed data for a .gz input).
type location struct {
	input  string
	line   int   // > 0 for JSON
	offset int64 // >= 0 for protobuf records; -1 when not applicable
}

func (l location) String() string {
	switch {
	case l.line > 0:
		return fmt.Sprintf("%s:%d", l.input, l.line)
	case l.offset >= 0:
		return fmt.Sprintf("%s (byte offset %d)", l.input, l.offset)
	}
	return l.input
}

// inputError is a problem with one input, positioned for whoever fixes it:
// NAME:LINE: for JSON, NAME: byte offset N: for protobuf.
type inputError struct {
	input string
	line  int
	// off is the byte offset, when hasOff (protobuf); compressed says it
	// counts decompressed bytes.
	off        int64
	hasOff     bool
	compressed bool
	err        error
}

func (e *inputError) Error() string {
	switch {
	case e.line > 0:
		return fmt.Sprintf("%s:%d: %v", e.input, e.line, e.err)
	case e.hasOff && e.compressed:
		return fmt.Sprintf("%s: byte offset %d of the decompressed data: %v", e.input, e.off, e.err)
	case e.hasOff:
		return fmt.Sprintf("%s: byte offset %d: %v", e.input, e.off, e.err)
	}
	return fmt.Sprintf("%s: %v", e.input, e.err)
}

func (e *inputError) Unwrap() error { return e.err }

// readError is a failure of the bytes underneath a format (a file read, a
// gzip stream cut short), as opposed to bytes that are there but malformed.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// sourceReader marks every error but io.EOF as a readError, after
// explaining the common ones.
type sourceReader struct {
	r    io.Reader
	gzip bool
}

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	var rd *readError
	switch {
	case err == nil || err == io.EOF || errors.As(err, &rd):
	case s.gzip && errors.Is(err, io.ErrUnexpectedEOF):
		err = &readError{errors.New("gzip: the compressed data ends early (truncated file?)")}
	case s.gzip && strings.HasPrefix(err.Error(), "gzip: "):
		err = &readError{fmt.Errorf("%w (corrupt file?)", err)}
	case s.gzip:
		err = &readError{fmt.Errorf("gzip: %w (corrupt file?)", err)}
	default:
		err = &readError{err}
	}
	return n, err
}

// input is one file, or standard input.
type input struct {
	name string // as the user named it; "stdin" for -
	path string // "" for standard input
}

type scanFinding struct {
	f  detector.Finding
	at location // the request whose reading first emitted the finding
	// requests counts the requests the finding's trace came in, when a
	// request after the trace's first changed the finding: then the result
	// depends on when those requests arrive, which only the collector sees.
	requests int
}

// maxTimedTraces bounds the traces scan remembers the requests of (about
// 40 bytes each), so that a huge input cannot exhaust memory; traces beyond
// it are judged the same, only never noted as arrival-dependent.
const maxTimedTraces = 1 << 20

// traceRequests is which requests a trace's spans came in.
type traceRequests struct {
	first, last uint32 // request numbers
	count       int
}

type scanner struct {
	d        *detector.Detector
	cfg      *tenantguardprocessor.Config
	ex       *tenantguardprocessor.Extractor
	errOut   io.Writer
	cur      location
	findings map[string]*scanFinding
	invalid  int
	inputs   int
	errs     []*inputError
	jsonU    ptrace.JSONUnmarshaler
	protoU   ptrace.ProtoUnmarshaler
	line     []byte // JSON-lines buffer, reused
	skipped  int    // files of a directory that are not OTLP
	// request numbers the requests fed (from 1); feeding is set while one
	// is judged, so the final Flush is not taken for a later request.
	request  uint32
	feeding  bool
	traceReq map[detector.TraceID]*traceRequests
}

func newScanner(cfg *tenantguardprocessor.Config, errOut io.Writer) (*scanner, error) {
	s := &scanner{
		cfg:      cfg,
		errOut:   errOut,
		findings: map[string]*scanFinding{},
		traceReq: map[detector.TraceID]*traceRequests{},
	}
	// The processor's own constructor: the same rules, derivations and
	// allow conditions as in production. One shard: scan is sequential, and
	// a single LRU makes eviction (and so the result on inputs larger than
	// max_traces) the same on every run.
	d, ex, err := tenantguardprocessor.NewDetector(cfg, s.sink, func(dc *detector.Config) { dc.Shards = 1 })
	if err != nil {
		return nil, err
	}
	s.d, s.ex = d, ex
	return s, nil
}

// sink keeps the latest version of each finding. The detector calls it from
// this goroutine (Batch.Add, Batch.Close, Flush), so no lock is needed.
func (s *scanner) sink(f detector.Finding) {
	sf, ok := s.findings[f.LeakID]
	if !ok {
		sf = &scanFinding{f: f, at: s.cur}
		s.findings[f.LeakID] = sf
	} else if f.Version > sf.f.Version {
		sf.f = f
	}
	// A per-trace finding that a request after the trace's first raised or
	// changed: the collector would judge that request's spans as late if it
	// came after idle_window. Per-service rules judge one span at a time.
	if tr := s.traceReq[f.TraceID]; s.feeding && tr != nil && tr.first < s.request &&
		f.Rule != detector.RuleUnscopedQuery && f.Rule != detector.RuleMissingTenant {
		sf.requests = tr.count
	}
}

// arrivalNote says why a finding's result depends on when its spans
// arrive; "" when it does not.
func (s *scanner) arrivalNote(sf *scanFinding) string {
	if sf.requests < 2 {
		return ""
	}
	return fmt.Sprintf("the trace's spans came in %d requests, judged here as one trace; the collector does so only if "+
		"each request arrives within idle_window (%s) of the trace's last span, and judges a later one as late spans "+
		"against what is left of the closed trace, so its severity and edges can differ", sf.requests, s.cfg.IdleWindow)
}

func (s *scanner) fail(e *inputError) {
	s.errs = append(s.errs, e)
	fmt.Fprintf(s.errOut, "tenantguard scan: %v\n", e)
}

// feed judges one request, as the processor does: one batch per request.
func (s *scanner) feed(at location, td ptrace.Traces) {
	s.cur = at
	s.request++
	s.noteTraces(td)
	s.feeding = true
	defer func() { s.feeding = false }()
	b := s.d.NewBatch()
	defer b.Close() // the batch holds a shard's lock between spans
	s.invalid += s.ex.Feed(b, td)
}

// noteTraces records the request each trace of td came in.
func (s *scanner) noteTraces(td ptrace.Traces) {
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				id := detector.TraceID(spans.At(k).TraceID())
				tr := s.traceReq[id]
				switch {
				case tr == nil && len(s.traceReq) < maxTimedTraces:
					s.traceReq[id] = &traceRequests{first: s.request, last: s.request, count: 1}
				case tr != nil && tr.last != s.request:
					tr.last, tr.count = s.request, tr.count+1
				}
			}
		}
	}
}

// otlpSniffBytes is how much of a file notOTLP reads: OTLP JSON opens with
// resourceSpans, and every JSON line of the file exporter holds it.
const otlpSniffBytes = 64 << 10

// notOTLP says why a file a directory holds is not OTLP, or "" when it may
// be: protobuf (no marker to check) or JSON that names resourceSpans,
// either gzip-compressed. A test fixture (a golden file of expected findings)
// sits beside the traces in many repositories; it is skipped, by name.
func notOTLP(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "" // reading it reports the error
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return "" // reading it reports the bad gzip header
		}
		defer zr.Close()
		r = zr
	}
	head := make([]byte, otlpSniffBytes)
	n, _ := io.ReadFull(r, head)
	body := bytes.TrimLeft(bytes.TrimPrefix(head[:n], utf8BOM), " \t\r\n")
	switch {
	case len(body) == 0:
		return "empty"
	case body[0] != '{' && body[0] != '[':
		if isJSONName(path) {
			return "not JSON"
		}
		return "" // protobuf
	case !bytes.Contains(body, []byte(`"resourceSpans"`)) && !bytes.Contains(body, []byte(`"resource_spans"`)):
		return "JSON without resourceSpans: not OTLP traces"
	}
	return ""
}

func isJSONName(name string) bool {
	ext := filepath.Ext(strings.TrimSuffix(strings.ToLower(name), ".gz"))
	return ext == ".json" || ext == ".jsonl" || ext == ".ndjson"
}

func isTraceFile(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".gz")
	return slices.Contains(traceFileExts, filepath.Ext(name))
}

// expand turns the arguments into inputs: directories are walked
// recursively in lexical order (hidden entries skipped), each file is read
// once however often it is named.
func (s *scanner) expand(args []string) []input {
	var out []input
	seen := map[string]bool{}
	add := func(name, path string) {
		key := path
		if abs, err := filepath.Abs(path); err == nil {
			key = abs
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, input{name: name, path: path})
		}
	}
	stdinSeen := false
	for _, arg := range args {
		if arg == "-" {
			if !stdinSeen {
				out = append(out, input{name: "stdin"})
			}
			stdinSeen = true
			continue
		}
		info, err := os.Stat(arg)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				err = errors.New("no such file or directory")
			}
			s.fail(&inputError{input: arg, err: err})
			continue
		}
		if !info.IsDir() {
			add(arg, arg)
			continue
		}
		n := len(out)
		err = filepath.WalkDir(arg, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				s.fail(&inputError{input: path, err: err})
				return nil
			}
			if path != arg && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() || !isTraceFile(d.Name()) {
				return nil
			}
			if d.Type()&fs.ModeSymlink != 0 {
				if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
					return nil
				}
			} else if !d.Type().IsRegular() {
				return nil
			}
			if why := notOTLP(path); why != "" {
				s.skipped++
				fmt.Fprintf(s.errOut, "tenantguard scan: skipped %s: %s\n", path, why)
				return nil
			}
			add(path, path)
			return nil
		})
		if err != nil {
			s.fail(&inputError{input: arg, err: err})
		}
		if len(out) == n {
			s.fail(&inputError{input: arg, err: fmt.Errorf("directory holds no trace file (%s, optionally .gz)",
				strings.Join(traceFileExts, ", "))})
		}
	}
	return out
}

// scanInput reads one input to its end or its first unrecoverable error.
func (s *scanner) scanInput(in input, stdin io.Reader) {
	s.inputs++
	var r io.Reader = stdin
	if in.path != "" {
		f, err := os.Open(in.path)
		if err != nil {
			s.fail(&inputError{input: in.name, err: err})
			return
		}
		defer f.Close()
		r = f
	}
	br := bufio.NewReaderSize(sourceReader{r: r}, readBufferSize)
	compressed := false
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			s.fail(&inputError{input: in.name, err: fmt.Errorf("gzip header: %w", err)})
			return
		}
		defer zr.Close()
		br = bufio.NewReaderSize(sourceReader{r: zr, gzip: true}, readBufferSize)
		compressed = true
	}
	name := strings.TrimSuffix(strings.ToLower(in.name), ".gz")
	switch ext := filepath.Ext(name); {
	case ext == ".pb" || ext == ".binpb" || ext == ".proto":
		s.scanProto(in.name, compressed, br)
	case ext == ".json" || ext == ".jsonl" || ext == ".ndjson":
		s.scanJSON(in.name, ext != ".json", br)
	default:
		if looksLikeJSON(br) {
			s.scanJSON(in.name, false, br)
		} else {
			s.scanProto(in.name, compressed, br)
		}
	}
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// looksLikeJSON: the first byte that is not white space (after an optional
// byte order mark) opens an object.
func looksLikeJSON(br *bufio.Reader) bool {
	buf, _ := br.Peek(readBufferSize)
	buf = bytes.TrimPrefix(buf, utf8BOM)
	i := 0
	for i < len(buf) && isJSONSpace(buf[i]) {
		i++
	}
	return i == len(buf) || buf[i] == '{'
}

// ---------------------------------------------------------------- OTLP JSON

// scanJSON reads JSON lines (the file exporter's format: one request per
// line) or, when the first line is not a whole JSON value, a stream of
// request documents spanning many lines.
func (s *scanner) scanJSON(name string, linesOnly bool, br *bufio.Reader) {
	if b, _ := br.Peek(3); bytes.Equal(b, utf8BOM) {
		_, _ = br.Discard(3)
	}
	if linesOnly || firstLineIsJSON(br) {
		s.scanJSONLines(name, br)
		return
	}
	s.scanJSONDocuments(name, br)
}

// firstLineIsJSON looks at the first line that is not blank, within the
// read-ahead: a line longer than that is taken as a JSON line too.
func firstLineIsJSON(br *bufio.Reader) bool {
	buf, _ := br.Peek(readBufferSize)
	i := 0
	for i < len(buf) && isJSONSpace(buf[i]) {
		i++
	}
	if i == len(buf) {
		return true
	}
	end := bytes.IndexByte(buf[i:], '\n')
	if end < 0 {
		return true // one line to the end, or to beyond the read-ahead
	}
	return json.Valid(buf[i : i+end])
}

func (s *scanner) scanJSONLines(name string, br *bufio.Reader) {
	for lineNo := 1; ; lineNo++ {
		line, tooLong, err := s.readLine(br)
		if err != nil && err != io.EOF {
			// The line was cut short by the source (a truncated gzip
			// stream): it is not judged, everything before it was.
			s.fail(&inputError{input: name, line: lineNo, err: err})
			return
		}
		switch text := bytes.TrimSpace(line); {
		case tooLong:
			s.fail(&inputError{input: name, line: lineNo,
				err: fmt.Errorf("line longer than %d MiB: not one OTLP request per line?", maxRequestBytes>>20)})
		case len(text) > 0:
			td, uerr := s.jsonU.UnmarshalTraces(text)
			if uerr == nil && !json.Valid(text) {
				// The OTLP reader stops at the end of the first object and
				// would not notice what follows it.
				uerr = errors.New("not one JSON object (trailing data, or invalid JSON)")
			}
			if uerr != nil {
				s.fail(&inputError{input: name, line: lineNo, err: fmt.Errorf("invalid OTLP JSON: %w", uerr)})
			} else {
				s.feed(location{input: name, line: lineNo, offset: -1}, td)
			}
		}
		if err == io.EOF {
			return
		}
		// A single huge line must not pin its buffer for the rest of the input.
		if cap(s.line) > 4*readBufferSize {
			s.line = nil
		}
	}
}

// readLine reads one line into the scanner's buffer, keeping at most
// maxRequestBytes of it. err is io.EOF after the last line.
func (s *scanner) readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	buf := s.line[:0]
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) <= maxRequestBytes {
			buf = append(buf, frag...)
		} else {
			tooLong = true
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		s.line = buf
		return buf, tooLong, err
	}
}

// lineCounter counts the newlines read through it, so that a position the
// JSON decoder reports can be turned into a line number.
type lineCounter struct {
	r        io.Reader
	newlines int
}

func (c *lineCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.newlines += bytes.Count(p[:n], []byte{'\n'})
	return n, err
}

// lineAt is the 1-based line of input offset off, which must lie at or after
// the decoder's position: the newlines read so far, less those the decoder
// holds buffered beyond off.
func lineAt(dec *json.Decoder, lc *lineCounter, off int64) int {
	r := dec.Buffered() // a bytes.Reader over the decoder's buffer: no copy below
	if rel := off - dec.InputOffset(); rel > 0 {
		if sk, ok := r.(io.Seeker); ok {
			_, _ = sk.Seek(rel, io.SeekCurrent)
		} else {
			_, _ = io.CopyN(io.Discard, r, rel)
		}
	}
	var after newlineCount
	_, _ = io.Copy(&after, r)
	return 1 + lc.newlines - int(after)
}

// newlineCount counts the newlines written to it.
type newlineCount int

func (c *newlineCount) Write(p []byte) (int, error) {
	*c += newlineCount(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}

// scanJSONDocuments streams request documents with a json.Decoder: each
// resourceSpans entry is decoded and judged on its own, within one batch per
// document, so memory is bounded by the largest entry, not the document.
func (s *scanner) scanJSONDocuments(name string, r io.Reader) {
	lc := &lineCounter{r: r}
	dec := json.NewDecoder(lc)
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			s.fail(s.jsonError(name, dec, lc, err))
			return
		}
		if tok != json.Delim('{') {
			s.fail(&inputError{input: name, line: lineAt(dec, lc, dec.InputOffset()),
				err: fmt.Errorf("expected an OTLP request (a JSON object), found %v", tok)})
			return
		}
		at := location{input: name, line: lineAt(dec, lc, dec.InputOffset()), offset: -1}
		s.cur = at
		b := s.d.NewBatch()
		err = s.readDocument(name, dec, lc, b)
		b.Close() // judge what was read, even when the rest is not readable
		if err != nil {
			s.fail(err.(*inputError))
			return
		}
	}
}

// readDocument reads the members of one request object, its '{' consumed.
func (s *scanner) readDocument(name string, dec *json.Decoder, lc *lineCounter, b *detector.Batch) error {
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return s.jsonError(name, dec, lc, err)
		}
		key, _ := tok.(string)
		if key != "resourceSpans" && key != "resource_spans" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return s.jsonError(name, dec, lc, err)
			}
			continue
		}
		if tok, err = dec.Token(); err != nil {
			return s.jsonError(name, dec, lc, err)
		}
		if tok == nil {
			continue // "resourceSpans": null
		}
		if tok != json.Delim('[') {
			return &inputError{input: name, line: lineAt(dec, lc, dec.InputOffset()),
				err: fmt.Errorf("%s: expected an array, found %v", key, tok)}
		}
		for i := 0; dec.More(); i++ {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return s.jsonError(name, dec, lc, err)
			}
			doc := make([]byte, 0, len(raw)+20)
			doc = append(append(append(doc, `{"resourceSpans":[`...), raw...), "]}"...)
			td, err := s.jsonU.UnmarshalTraces(doc)
			if err != nil {
				// The JSON is well formed, so the entries after it still
				// read: report this one and go on.
				line := lineAt(dec, lc, dec.InputOffset()) - bytes.Count(raw, []byte{'\n'})
				s.fail(&inputError{input: name, line: line, err: fmt.Errorf("%s[%d]: invalid OTLP JSON: %w", key, i, err)})
				continue
			}
			s.invalid += s.ex.Feed(b, td)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return s.jsonError(name, dec, lc, err)
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return s.jsonError(name, dec, lc, err)
	}
	return nil
}

func (s *scanner) jsonError(name string, dec *json.Decoder, lc *lineCounter, err error) *inputError {
	var (
		syn *json.SyntaxError
		rd  *readError
	)
	switch {
	case errors.As(err, &rd):
		return &inputError{input: name, line: lc.newlines + 1, err: rd}
	case errors.As(err, &syn):
		return &inputError{input: name, line: lineAt(dec, lc, syn.Offset), err: fmt.Errorf("invalid JSON: %w", err)}
	case errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF:
		return &inputError{input: name, line: lc.newlines + 1,
			err: errors.New("the JSON ends inside a request (truncated file?)")}
	}
	return &inputError{input: name, line: lineAt(dec, lc, dec.InputOffset()), err: err}
}

// ---------------------------------------------------------------- OTLP protobuf

// pbReader counts the bytes read, for error positions.
type pbReader struct {
	br  *bufio.Reader
	off int64
}

func (r *pbReader) Read(p []byte) (int, error) {
	n, err := r.br.Read(p)
	r.off += int64(n)
	return n, err
}

func (r *pbReader) ReadByte() (byte, error) {
	c, err := r.br.ReadByte()
	if err == nil {
		r.off++
	}
	return c, err
}

// uvarint reads a protobuf varint: io.EOF when the input ends before it,
// io.ErrUnexpectedEOF when it ends inside it.
func (r *pbReader) uvarint() (uint64, error) {
	start := r.off
	v, err := binary.ReadUvarint(r)
	if err == io.EOF && r.off != start {
		err = io.ErrUnexpectedEOF
	}
	return v, err
}

// scanProto reads an ExportTraceServiceRequest, or a sequence of the file
// exporter's length-prefixed records (4-byte big-endian length, then the
// request), telling them apart by the first byte: a request starts with the
// tag of its resource_spans field, 0x0a; a record's length with 0x00 unless
// it is 16 MiB or larger.
func (s *scanner) scanProto(name string, compressed bool, br *bufio.Reader) {
	head, err := br.Peek(1)
	if len(head) == 0 {
		var rd *readError
		if errors.As(err, &rd) {
			s.fail(&inputError{input: name, err: rd})
		}
		return // empty: no request
	}
	r := &pbReader{br: br}
	switch {
	case head[0] == 0x0a:
		s.scanProtoRequest(name, compressed, r)
	case head[0] < 0x10:
		s.scanProtoRecords(name, compressed, r)
	default:
		s.fail(&inputError{input: name, err: fmt.Errorf("neither OTLP JSON nor OTLP protobuf: starts with byte 0x%02x "+
			"(a request starts with '{' or 0x0a, a file exporter record with 0x00)", head[0])})
	}
}

func (s *scanner) pbError(name string, compressed bool, off int64, err error) *inputError {
	return &inputError{input: name, off: off, hasOff: true, compressed: compressed, err: err}
}

// truncated explains a read that ended early, or passes a source error on.
func truncated(err error, what string, want uint64, got int) error {
	var rd *readError
	if errors.As(err, &rd) {
		return rd
	}
	return fmt.Errorf("truncated: %s declares %d bytes, the input ends after %d", what, want, got)
}

// scanProtoRequest streams one ExportTraceServiceRequest: each top-level
// resource_spans entry is read and judged on its own, within one batch, so
// memory is bounded by the largest entry rather than the request.
func (s *scanner) scanProtoRequest(name string, compressed bool, r *pbReader) {
	s.cur = location{input: name, offset: -1}
	b := s.d.NewBatch()
	defer b.Close() // judge what was read, even when the rest is not readable
	for {
		start := r.off
		tag, err := r.uvarint()
		if err == io.EOF {
			return
		}
		if err != nil {
			s.fail(s.pbError(name, compressed, start, truncated(err, "a field tag", 1, 0)))
			return
		}
		field, wire := tag>>3, tag&7
		switch {
		case field == 1 && wire == 2:
			n, err := r.uvarint()
			if err != nil {
				s.fail(s.pbError(name, compressed, start, truncated(err, "the resource_spans length", 1, 0)))
				return
			}
			if n > maxRequestBytes {
				s.fail(s.pbError(name, compressed, start, fmt.Errorf(
					"resource_spans entry of %d bytes, over the %d MiB limit: corrupt, or not OTLP protobuf", n, maxRequestBytes>>20)))
				return
			}
			// Re-frame the entry as a request holding only it.
			msg := binary.AppendUvarint([]byte{0x0a}, n)
			hdr := len(msg)
			msg = append(msg, make([]byte, n)...)
			if got, err := io.ReadFull(r, msg[hdr:]); err != nil {
				s.fail(s.pbError(name, compressed, start, truncated(err, "resource_spans entry", n, got)))
				return
			}
			td, err := s.protoU.UnmarshalTraces(msg)
			if err != nil {
				s.fail(s.pbError(name, compressed, start, fmt.Errorf("invalid OTLP protobuf in resource_spans entry: %w", err)))
				continue // the framing holds: the next entry still reads
			}
			s.invalid += s.ex.Feed(b, td)
		case field == 0 || wire == 3 || wire == 4 || wire > 5:
			s.fail(s.pbError(name, compressed, start, fmt.Errorf(
				"not an OTLP ExportTraceServiceRequest (field %d, wire type %d)", field, wire)))
			return
		default: // a field this reader does not know: skip it
			var skip uint64
			switch wire {
			case 0:
				_, err = r.uvarint()
			case 1:
				skip = 8
			case 2:
				skip, err = r.uvarint()
			case 5:
				skip = 4
			}
			if err == nil && skip > 0 {
				var got int64
				got, err = io.CopyN(io.Discard, r, int64(skip))
				if err != nil {
					err = truncated(err, fmt.Sprintf("field %d", field), skip, int(got))
				}
			}
			if err != nil {
				s.fail(s.pbError(name, compressed, start, truncated(err, fmt.Sprintf("field %d", field), 1, 0)))
				return
			}
		}
	}
}

// scanProtoRecords reads the file exporter's length-prefixed records, one
// request each (protobuf, or JSON when the record starts with '{').
func (s *scanner) scanProtoRecords(name string, compressed bool, r *pbReader) {
	for {
		start := r.off
		var hdr [4]byte
		if got, err := io.ReadFull(r, hdr[:]); err != nil {
			if err != io.EOF {
				s.fail(s.pbError(name, compressed, start, truncated(err, "a record length prefix", 4, got)))
			}
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxRequestBytes {
			s.fail(s.pbError(name, compressed, start, fmt.Errorf(
				"record of %d bytes, over the %d MiB limit: corrupt, or not a file exporter proto file", n, maxRequestBytes>>20)))
			return
		}
		msg := make([]byte, n)
		if got, err := io.ReadFull(r, msg); err != nil {
			s.fail(s.pbError(name, compressed, start, truncated(err, "record", uint64(n), got)))
			return
		}
		var (
			td  ptrace.Traces
			err error
		)
		if t := bytes.TrimLeft(msg, " \t\r\n"); len(t) > 0 && t[0] == '{' {
			if td, err = s.jsonU.UnmarshalTraces(msg); err == nil && !json.Valid(msg) {
				err = errors.New("not one JSON object (trailing data, or invalid JSON)")
			}
		} else {
			td, err = s.protoU.UnmarshalTraces(msg)
		}
		if err != nil {
			s.fail(s.pbError(name, compressed, start, fmt.Errorf("invalid OTLP record: %w", err)))
			continue
		}
		s.feed(location{input: name, offset: start}, td)
	}
}

// warnings are the things about a scan that make its result less than it
// seems.
func (s *scanner) warnings() []string {
	st := s.d.Stats()
	var w []string
	if st.TracesEvicted > 0 {
		w = append(w, fmt.Sprintf("%d trace(s) were evicted before the input ended (max_traces %d): harmless unless "+
			"a trace's spans lie further apart in the input than that many other traces, which are then judged in parts; "+
			"raise the limit with --set processors.tenantguard.max_traces=N", st.TracesEvicted, s.cfg.MaxTraces))
	}
	if s.invalid > 0 {
		w = append(w, fmt.Sprintf("%d span(s) with an all-zero trace id were skipped", s.invalid))
	}
	if st.SpansOverCap > 0 {
		w = append(w, fmt.Sprintf("%d span(s) beyond max_spans_per_trace (%d) counted but left no crossing edge",
			st.SpansOverCap, s.cfg.MaxSpansPerTrace))
	}
	if st.TenantsRejected > 0 {
		w = append(w, fmt.Sprintf("%d tenant value(s) rejected (longer than %d bytes, or not a string, int or double)",
			st.TenantsRejected, detector.MaxTenantLength))
	}
	return w
}

// ---------------------------------------------------------------- report

type reportFinding struct {
	ev      store.Evidence
	at      location
	failing bool
	// arrival says why the collector could judge the finding otherwise.
	arrival string
}

type scanReport struct {
	findings  []reportFinding
	failing   int
	withdrawn int // allowed findings left out (without --all)
	skipped   int // files of a directory that are not OTLP
	arrival   int // findings whose result depends on when their spans arrive
	failOn    int
	inputs    int
	spans     uint64
	traces    uint64
	errs      []*inputError
	// listErrors repeats the input errors in a text report written to a
	// file; on standard output they were printed to stderr as they came.
	listErrors bool
	elapsed    time.Duration
	started    time.Time
}

func (s *scanner) report(failRank int, all bool, elapsed time.Duration) *scanReport {
	st := s.d.Stats()
	rep := &scanReport{
		failOn:  failRank,
		inputs:  s.inputs,
		spans:   st.Spans,
		traces:  st.TracesExpired + st.TracesEvicted,
		errs:    s.errs,
		skipped: s.skipped,
		elapsed: elapsed,
		started: time.Now().Add(-elapsed),
	}
	for _, sf := range s.findings {
		ev := store.NewEvidence(&sf.f, s.cfg.Instance)
		allowed := sf.f.Status == detector.StatusAllowed
		if allowed && !all {
			rep.withdrawn++
			continue
		}
		failing := !allowed && detector.Severity(ev.Severity).Rank() >= failRank
		if failing {
			rep.failing++
		}
		note := s.arrivalNote(sf)
		if note != "" {
			rep.arrival++
		}
		rep.findings = append(rep.findings, reportFinding{ev: ev, at: sf.at, failing: failing, arrival: note})
	}
	slices.SortFunc(rep.findings, func(a, b reportFinding) int {
		if c := detector.Severity(b.ev.Severity).Rank() - detector.Severity(a.ev.Severity).Rank(); c != 0 {
			return c
		}
		if c := strings.Compare(a.ev.TraceID, b.ev.TraceID); c != 0 {
			return c
		}
		return strings.Compare(a.ev.Rule, b.ev.Rule)
	})
	return rep
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func failOnName(rank int) string {
	for _, s := range detector.Severities {
		if s.Rank() == rank {
			return string(s)
		}
	}
	return "none"
}

// summary is the report's last line.
func (r *scanReport) summary() string {
	var b strings.Builder
	if len(r.findings) == 0 {
		b.WriteString("no findings")
	} else {
		counts := map[string]int{}
		for _, f := range r.findings {
			counts[f.ev.Severity]++
		}
		var parts []string
		for _, s := range slices.Backward(detector.Severities) {
			if sev := string(s); counts[sev] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", counts[sev], sev))
				delete(counts, sev)
			}
		}
		for _, sev := range slices.Sorted(maps.Keys(counts)) { // severities of newer rules
			parts = append(parts, fmt.Sprintf("%d %s", counts[sev], sev))
		}
		fmt.Fprintf(&b, "%s (%s; %d at or above --fail-on %s)", plural(len(r.findings), "finding", "findings"),
			strings.Join(parts, ", "), r.failing, failOnName(r.failOn))
	}
	fmt.Fprintf(&b, " in %s (%s) from %s", plural(int(r.traces), "trace", "traces"),
		plural(int(r.spans), "span", "spans"), plural(r.inputs, "input", "inputs"))
	if r.withdrawn > 0 {
		fmt.Fprintf(&b, "; %s withdrawn by an allow rule (--all lists them)", plural(r.withdrawn, "finding", "findings"))
	}
	if r.arrival > 0 {
		fmt.Fprintf(&b, "; %s on when spans arrive, which only the collector sees (see \"arrival\")",
			plural(r.arrival, "finding depends", "findings depend"))
	}
	if r.skipped > 0 {
		fmt.Fprintf(&b, "; %s skipped (not OTLP)", plural(r.skipped, "file", "files"))
	}
	if len(r.errs) > 0 {
		fmt.Fprintf(&b, "; %s: the report covers what was readable", plural(len(r.errs), "input error", "input errors"))
	}
	return b.String()
}

func edgeText(e store.CrossingEdge) string {
	s := fmt.Sprintf("%s `%s` (%s) → %s `%s` (%s)", e.From.Service, e.From.Span, e.From.Tenant, e.To.Service, e.To.Span, e.To.Tenant)
	if e.Hops > 0 {
		s += fmt.Sprintf(", through %s without a tenant", plural(e.Hops, "span", "spans"))
	}
	return s
}

// details is one finding as the text report and the JUnit failure body
// show it: the alert sentence, then the evidence.
func (f *reportFinding) details(indent string) string {
	ev := &f.ev
	var b strings.Builder
	row := func(label, value string) { fmt.Fprintf(&b, "%s%-9s %s\n", indent, label, value) }
	fmt.Fprintf(&b, "%s%s\n", indent, ev.Message(store.Plain))
	row("trace", ev.TraceID)
	row("tenants", strings.Join(ev.Tenants, ", "))
	row("services", strings.Join(ev.Services, ", "))
	for i, e := range ev.CrossingEdges {
		label := ""
		if i == 0 {
			label = "crossing"
		}
		row(label, edgeText(e))
	}
	for i, m := range ev.Mismatches {
		label := ""
		if i == 0 {
			label = "mismatch"
		}
		var vals []string
		for _, v := range m.Values {
			src := ""
			if v.Resource {
				src = " (resource)"
			}
			vals = append(vals, fmt.Sprintf("%s=%s%s", v.Key, v.Tenant, src))
		}
		row(label, fmt.Sprintf("%s `%s` span %s: %s", m.Service, m.Span, m.SpanID, strings.Join(vals, ", ")))
	}
	for i, sp := range ev.Spans {
		label := ""
		if i == 0 {
			label = "spans"
		}
		tenant := "no tenant"
		if sp.Tenant != "" {
			tenant = fmt.Sprintf("tenant %s (%s)", sp.Tenant, sp.TenantKey)
		}
		row(label, fmt.Sprintf("%s %s `%s`, %s", sp.SpanID, sp.Service, sp.Name, tenant))
	}
	if ev.AllowedBy != "" {
		row("allowed", ev.AllowedBy)
	}
	if f.arrival != "" {
		row("arrival", f.arrival)
	}
	row("found in", f.at.String())
	row("leak id", fmt.Sprintf("%s (%s, %s)", ev.LeakID, ev.Status, plural(ev.SpanCount, "span", "spans")))
	return b.String()
}

func (f *reportFinding) verdict(failOn int) string {
	switch {
	case f.failing:
		return "FAIL"
	case f.ev.Status == string(detector.StatusAllowed):
		return string(detector.StatusAllowed)
	}
	return "note (below --fail-on " + failOnName(failOn) + ")"
}

func (r *scanReport) writeText(w io.Writer) error {
	for i := range r.findings {
		f := &r.findings[i]
		fmt.Fprintf(w, "%s %s %s\n%s\n", f.ev.Severity, f.ev.Rule, f.verdict(r.failOn), f.details("  "))
	}
	if r.listErrors {
		for _, e := range r.errs {
			fmt.Fprintf(w, "input error: %v\n", e)
		}
	}
	_, err := fmt.Fprintf(w, "tenantguard scan: %s\n", r.summary())
	return err
}

// writeJSON writes one object per finding per line, with the fields of the
// evidence journal and `leaks list --json`.
func (r *scanReport) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i := range r.findings {
		if err := enc.Encode(&r.findings[i].ev); err != nil {
			return err
		}
	}
	return nil
}

// ---------------------------------------------------------------- JUnit

// JUnit XML as Jenkins, GitLab and the GitHub test-report actions read it:
// testsuites > testsuite > testcase > failure|error, plus system-out.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Skipped   int         `xml:"skipped,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr"`
	Hostname  string      `xml:"hostname,attr,omitempty"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	File      string        `xml:"file,attr,omitempty"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	SystemOut *junitText    `xml:"system-out,omitempty"`
}

type junitText struct {
	Text string `xml:",cdata"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:",cdata"`
}

// xmlText replaces what XML 1.0 cannot carry (control characters, invalid
// UTF-8; span names are user data) with U+FFFD, as encoding/xml does in
// attributes but not in CDATA.
func xmlText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r',
			r >= 0x20 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
			return r
		}
		return '\ufffd'
	}, strings.ToValidUTF8(s, "\ufffd"))
}

// writeJUnit writes one suite per rule (classname tenantguard.RULE): a
// failing test case per finding at or above --fail-on, a passing one (the
// finding in system-out) per finding below it, and a passing "no finding"
// case for a rule nothing tripped, so that a clean scan still reports tests.
// Input errors are error test cases in the suite tenantguard.input.
func (r *scanReport) writeJUnit(w io.Writer) error {
	host, _ := os.Hostname()
	stamp := r.started.UTC().Format("2006-01-02T15:04:05")
	var rules []string
	for _, rule := range detector.Rules {
		rules = append(rules, string(rule))
	}
	for _, f := range r.findings { // rules of a newer build
		if !slices.Contains(rules, f.ev.Rule) {
			rules = append(rules, f.ev.Rule)
		}
	}
	doc := junitSuites{Name: "tenantguard scan", Time: fmt.Sprintf("%.3f", r.elapsed.Seconds())}
	for _, rule := range rules {
		suite := junitSuite{Name: "tenantguard." + rule, Time: "0", Timestamp: stamp, Hostname: host}
		for i := range r.findings {
			f := &r.findings[i]
			if f.ev.Rule != rule {
				continue
			}
			c := junitCase{
				Name:      fmt.Sprintf("trace %s (%s)", f.ev.TraceID, strings.Join(f.ev.Tenants, ", ")),
				Classname: suite.Name,
				File:      f.at.input,
				Time:      "0",
			}
			if f.failing {
				c.Failure = &junitProblem{Message: f.ev.Message(store.Plain), Type: f.ev.Severity, Body: xmlText(f.details(""))}
				suite.Failures++
			} else {
				c.SystemOut = &junitText{xmlText(f.verdict(r.failOn) + "\n" + f.details(""))}
			}
			suite.Cases = append(suite.Cases, c)
		}
		if len(suite.Cases) == 0 {
			suite.Cases = append(suite.Cases, junitCase{
				Name:      fmt.Sprintf("no %s finding in %s", rule, plural(int(r.traces), "trace", "traces")),
				Classname: suite.Name,
				Time:      "0",
			})
		}
		suite.Tests = len(suite.Cases)
		doc.Suites = append(doc.Suites, suite)
	}
	if len(r.errs) > 0 {
		suite := junitSuite{Name: "tenantguard.input", Time: "0", Timestamp: stamp, Hostname: host}
		for _, e := range r.errs {
			suite.Cases = append(suite.Cases, junitCase{
				Name: "read " + e.input, Classname: suite.Name, File: e.input, Time: "0",
				Error: &junitProblem{Message: e.Error(), Type: "input", Body: xmlText(e.Error())},
			})
		}
		suite.Tests, suite.Errors = len(suite.Cases), len(suite.Cases)
		doc.Suites = append(doc.Suites, suite)
	}
	for _, s := range doc.Suites {
		doc.Tests += s.Tests
		doc.Failures += s.Failures
		doc.Errors += s.Errors
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// ---------------------------------------------------------------- SARIF

type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool        sarifTool         `json:"tool"`
	Results     []sarifResult     `json:"results"`
	Invocations []sarifInvocation `json:"invocations"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name    string      `json:"name"`
	Version string      `json:"version"`
	Rules   []sarifRule `json:"rules"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifRule struct {
	ID                   string         `json:"id"`
	ShortDescription     sarifText      `json:"shortDescription"`
	DefaultConfiguration map[string]any `json:"defaultConfiguration"`
}

type sarifResult struct {
	RuleID              string            `json:"ruleId"`
	RuleIndex           int               `json:"ruleIndex"`
	Level               string            `json:"level"`
	Message             sarifText         `json:"message"`
	Locations           []sarifLocation   `json:"locations,omitempty"`
	PartialFingerprints map[string]string `json:"partialFingerprints"`
	Properties          map[string]any    `json:"properties"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation struct {
		URI string `json:"uri"`
	} `json:"artifactLocation"`
	Region *sarifRegion `json:"region,omitempty"`
}

type sarifRegion struct {
	StartLine  int    `json:"startLine,omitempty"`
	ByteOffset *int64 `json:"byteOffset,omitempty"`
}

type sarifInvocation struct {
	ExecutionSuccessful bool                `json:"executionSuccessful"`
	Notifications       []sarifNotification `json:"toolExecutionNotifications,omitempty"`
}

type sarifNotification struct {
	Level   string    `json:"level"`
	Message sarifText `json:"message"`
}

// sarifLevel maps a severity onto SARIF's levels.
func sarifLevel(severity string) string {
	switch detector.Severity(severity) {
	case detector.SeverityLow:
		return "note"
	case detector.SeverityMedium:
		return "warning"
	}
	return "error"
}

// ruleLevel is the severity a rule's served finding gets at most: the
// default level of its SARIF rule.
var ruleLevel = map[detector.Rule]detector.Severity{
	detector.RuleCrossTenantTrace:  detector.SeverityCritical,
	detector.RuleBlockedAttempt:    detector.SeverityLow,
	detector.RuleTenantMismatch:    detector.SeverityHigh,
	detector.RuleForeignSigningKey: detector.SeverityCritical,
	detector.RuleUnscopedQuery:     detector.SeverityHigh,
	detector.RuleMissingTenant:     detector.SeverityMedium,
}

// writeSARIF writes a SARIF 2.1.0 log: one result per finding, ruleId the
// rule, level from the severity, located at the input the finding was
// detected in.
func (r *scanReport) writeSARIF(w io.Writer) error {
	run := sarifRun{
		Tool:        sarifTool{Driver: sarifDriver{Name: "tenantguard", Version: version}},
		Results:     []sarifResult{},
		Invocations: []sarifInvocation{{ExecutionSuccessful: len(r.errs) == 0}},
	}
	ruleIndex := map[string]int{}
	addRule := func(rule, severity string) int {
		if i, ok := ruleIndex[rule]; ok {
			return i
		}
		desc := detector.Rule(rule).Describe()
		if desc == "" {
			desc = rule
		}
		ruleIndex[rule] = len(run.Tool.Driver.Rules)
		run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, sarifRule{
			ID: rule, ShortDescription: sarifText{desc},
			DefaultConfiguration: map[string]any{"level": sarifLevel(severity)},
		})
		return ruleIndex[rule]
	}
	for _, rule := range detector.Rules {
		addRule(string(rule), string(ruleLevel[rule]))
	}
	for i := range r.findings {
		f := &r.findings[i]
		res := sarifResult{
			RuleID:              f.ev.Rule,
			RuleIndex:           addRule(f.ev.Rule, f.ev.Severity),
			Level:               sarifLevel(f.ev.Severity),
			Message:             sarifText{f.ev.Message(store.Plain)},
			PartialFingerprints: map[string]string{"tenantguardLeakId/v1": f.ev.LeakID},
			Properties: map[string]any{
				"severity": f.ev.Severity, "status": f.ev.Status, "trace_id": f.ev.TraceID,
				"tenants": f.ev.Tenants, "services": f.ev.Services, "fails": f.failing,
			},
		}
		if f.arrival != "" {
			res.Properties["arrival"] = f.arrival
		}
		var loc sarifLocation
		loc.PhysicalLocation.ArtifactLocation.URI = (&url.URL{Path: filepath.ToSlash(f.at.input)}).String()
		switch {
		case f.at.line > 0:
			loc.PhysicalLocation.Region = &sarifRegion{StartLine: f.at.line}
		case f.at.offset >= 0:
			off := f.at.offset
			loc.PhysicalLocation.Region = &sarifRegion{ByteOffset: &off}
		}
		res.Locations = []sarifLocation{loc}
		run.Results = append(run.Results, res)
	}
	for _, e := range r.errs {
		run.Invocations[0].Notifications = append(run.Invocations[0].Notifications,
			sarifNotification{Level: "error", Message: sarifText{e.Error()}})
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{
		Schema:  "https://json.schemastore.org/sarif-2.1.0.json",
		Version: "2.1.0",
		Runs:    []sarifRun{run},
	})
}
