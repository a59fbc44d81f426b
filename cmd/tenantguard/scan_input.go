package main

// Reading scan's inputs: files, directories and standard input, sniffed
// for OTLP and decompressed, fed request by request to one detector.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/detector"
	tenantguardprocessor "github.com/tenantguard/tenantguard/processor/tenantguardprocessor"
)

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
	// evidence keeps the evidence spans' details as the collector does;
	// nil when evidence_attributes is off.
	evidence *tenantguardprocessor.EvidenceReader
}

func newScanner(cfg *tenantguardprocessor.Config, errOut io.Writer) (*scanner, error) {
	s := &scanner{
		cfg:      cfg,
		errOut:   errOut,
		findings: map[string]*scanFinding{},
		traceReq: map[detector.TraceID]*traceRequests{},
		evidence: tenantguardprocessor.NewEvidenceReader(cfg),
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
	fmt.Fprintln(s.errOut, "tenantguard scan: "+oneLine(e.Error()))
}

// feed judges one request, as the processor does: one batch per request.
func (s *scanner) feed(at location, td ptrace.Traces) {
	r := s.beginRequest(at)
	defer r.end() // the batch holds a shard's lock between spans
	r.add(td)
}

// maxAnnotatedSpans bounds the spans of one request scan keeps until the
// request is judged, to give evidence spans their details as the collector
// does. A streamed request larger than that is judged whole, but spans past
// the bound leave their evidence without details (and a refusal without its
// status code in the message).
const maxAnnotatedSpans = 1 << 16

// request is one request being judged: one detector batch, fed the whole
// request or one resourceSpans entry at a time.
type request struct {
	s     *scanner
	b     *detector.Batch
	spans int // what the scanner's EvidenceReader holds of the request
}

func (s *scanner) beginRequest(at location) *request {
	s.cur = at
	s.request++
	s.feeding = true
	r := &request{s: s, b: s.d.NewBatch()}
	if s.evidence != nil {
		s.evidence.Reset()
		r.b.Annotate = s.evidence.Fill
	}
	return r
}

// add feeds one part of the request.
func (r *request) add(td ptrace.Traces) {
	r.s.noteTraces(td)
	if n := td.SpanCount(); r.s.evidence != nil && r.spans+n <= maxAnnotatedSpans {
		r.s.evidence.Read(td)
		r.spans += n
	}
	r.s.invalid += r.s.ex.Feed(r.b, td)
}

// end judges the request: the detector's rules run when its batch closes.
func (r *request) end() {
	defer func() { r.s.feeding = false }()
	r.b.Close()
}

// noteTraces records the request each trace of td came in.
func (s *scanner) noteTraces(td ptrace.Traces) {
	for sp := range tenantguardprocessor.Spans(td) {
		id := detector.TraceID(sp.TraceID())
		tr := s.traceReq[id]
		switch {
		case tr == nil && len(s.traceReq) < maxTimedTraces:
			s.traceReq[id] = &traceRequests{first: s.request, last: s.request, count: 1}
		case tr != nil && tr.last != s.request:
			tr.last, tr.count = s.request, tr.count+1
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
