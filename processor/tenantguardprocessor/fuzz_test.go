package tenantguardprocessor

// Fuzz targets for what reaches the processor from outside: OTLP requests
// (protobuf and JSON) and the processor's config section. Each reads its
// seed corpus explicitly from the shared ../testdata/fuzz/<Target>/ (go test
// itself only looks in processor/testdata/fuzz, where the fuzzer writes the
// inputs that fail: move them there once fixed), and adds the hostile cases
// of hostile_test.go with f.Add. Plain `go test` runs every seed; CI fuzzes
// each target for a short fixed time:
//
//	go test ./processor -run '^$' -fuzz '^FuzzOTLPProtobuf$' -fuzztime 10s
//	go test ./processor -run '^$' -fuzz '^FuzzOTLPJSON$' -fuzztime 10s
//	go test ./processor -run '^$' -fuzz '^FuzzProcessorConfig$' -fuzztime 10s
//
// After changing a scenario in testdata/scenarios, regenerate the seeds
// derived from it:
//
//	go test ./processor -run TestFuzzSeedCorpora -update-fuzz-seeds

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

var updateFuzzSeeds = flag.Bool("update-fuzz-seeds", false,
	"rewrite the scenario-derived seeds in testdata/fuzz/{FuzzOTLPProtobuf,FuzzOTLPJSON,FuzzProcessorConfig}")

var fzCorpusRoot = filepath.Join("..", "..", "testdata", "fuzz")

// The OTLP targets judge requests with every rule of testdata/config.yaml,
// with caps small enough that a fuzzed request reaches them: eviction,
// span records, evidence. Three shards do not divide max_traces, so the
// bound on traces in memory is checked where rounding could break it.
const (
	fzMaxTraces   = 8
	fzMaxSpans    = 16
	fzMaxEvidence = 4
	fzShards      = 3
)

// FuzzOTLPProtobuf feeds any bytes the OTLP protobuf unmarshaler accepts
// to the detector as the processor does; see checkOTLPRequest.
func FuzzOTLPProtobuf(f *testing.F) {
	for _, seed := range fzReadCorpus(f, "FuzzOTLPProtobuf") {
		f.Add(seed)
	}
	for _, hc := range hostileSeedRequests() {
		f.Add(fzProto(f, hc))
	}
	cfg := fzOTLPConfig(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var u ptrace.ProtoUnmarshaler
		td, err := u.UnmarshalTraces(data)
		if err != nil {
			return // the receiver answers 400; the processor never sees it
		}
		checkOTLPRequest(t, cfg, td)
	})
}

// FuzzOTLPJSON is FuzzOTLPProtobuf for OTLP/JSON (the HTTP receiver's
// application/json and `tenantguard scan`).
func FuzzOTLPJSON(f *testing.F) {
	for _, seed := range fzReadCorpus(f, "FuzzOTLPJSON") {
		f.Add(seed)
	}
	for _, hc := range hostileSeedRequests() {
		b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(hc)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	cfg := fzOTLPConfig(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var u ptrace.JSONUnmarshaler
		td, err := u.UnmarshalTraces(data)
		if err != nil {
			return
		}
		checkOTLPRequest(t, cfg, td)
	})
}

// checkOTLPRequest feeds td as one request, closes every trace (as on
// shutdown), feeds it again (late spans of closed traces) and closes again.
// It checks that:
//   - nothing panics, and Feed leaves the request as it was (the processor
//     forwards it unchanged: its protobuf encoding is the same before and after);
//   - every span is counted once: spans with an all-zero trace id are
//     skipped and reported by Feed, the others reach Stats().Spans;
//   - traces in memory never exceed max_traces, and none are left after Flush;
//   - every finding has a 32-hex-digit leak id (LeakID(trace, rule) for
//     per-trace rules), versions that grow per leak id, at most 255 tenants,
//     sorted, distinct, non-empty, trimmed and at most 256 bytes, crossing
//     edges between two different tenants, evidence spans within
//     max_evidence_spans, and stored evidence that is valid JSON and reads
//     back the same.
func checkOTLPRequest(t *testing.T, cfg *Config, td ptrace.Traces) {
	t.Helper()
	before := fzProto(t, td)
	spans, zero := 0, 0
	traces := map[detector.TraceID]bool{}
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				spans++
				if sp.TraceID().IsEmpty() {
					zero++
				} else {
					traces[detector.TraceID(sp.TraceID())] = true
				}
			}
		}
	}

	var (
		mu       sync.Mutex
		findings []detector.Finding
	)
	d, ex, err := NewDetector(cfg, func(f detector.Finding) {
		mu.Lock()
		findings = append(findings, f)
		mu.Unlock()
	}, func(dc *detector.Config) { dc.Shards = fzShards })
	if err != nil {
		t.Fatal(err)
	}
	for pass := 1; pass <= 2; pass++ {
		b := d.NewBatch()
		invalid := ex.Feed(b, td)
		b.Close()
		if invalid != zero {
			t.Fatalf("pass %d: Feed skipped %d spans, the request holds %d with an all-zero trace id", pass, invalid, zero)
		}
		st := d.Stats()
		if want := uint64(pass * (spans - zero)); st.Spans != want {
			t.Fatalf("pass %d: Stats().Spans = %d, want %d", pass, st.Spans, want)
		}
		if st.TracesActive > int64(cfg.MaxTraces) {
			t.Fatalf("pass %d: %d traces in memory, max_traces is %d", pass, st.TracesActive, cfg.MaxTraces)
		}
		if st.TracesActive > int64(len(traces)) {
			t.Fatalf("pass %d: %d traces in memory, the request holds %d", pass, st.TracesActive, len(traces))
		}
		d.Flush()
		if st := d.Stats(); st.TracesActive != 0 {
			t.Fatalf("pass %d: %d traces left in memory after Flush", pass, st.TracesActive)
		}
	}
	if after := fzProto(t, td); !bytes.Equal(before, after) {
		t.Fatal("reading the request changed it; the processor must forward requests unchanged")
	}

	mu.Lock()
	defer mu.Unlock()
	fzCheckFindings(t, cfg, findings)
}

func fzCheckFindings(t *testing.T, cfg *Config, findings []detector.Finding) {
	t.Helper()
	versions := map[string]uint64{}
	for i := range findings {
		f := &findings[i]
		where := fmt.Sprintf("finding %d (%s, trace %s)", i, f.Rule, f.TraceID)
		if !slices.Contains(detector.Rules, f.Rule) {
			t.Fatalf("%s: unknown rule", where)
		}
		if len(f.LeakID) != 32 || strings.ToLower(f.LeakID) != f.LeakID {
			t.Fatalf("%s: leak id %q is not 32 lowercase hex digits", where, f.LeakID)
		}
		if _, err := hex.DecodeString(f.LeakID); err != nil {
			t.Fatalf("%s: leak id %q is not hex: %v", where, f.LeakID, err)
		}
		perService := f.Rule == detector.RuleUnscopedQuery || f.Rule == detector.RuleMissingTenant
		if want := detector.LeakID(f.TraceID, f.Rule); !perService && f.LeakID != want {
			t.Fatalf("%s: leak id %s, want LeakID(trace, rule) = %s", where, f.LeakID, want)
		}
		if f.TraceID.IsEmpty() {
			t.Fatalf("%s: all-zero trace id", where)
		}
		if prev, ok := versions[f.LeakID]; ok && f.Version <= prev {
			t.Fatalf("%s: version %d after %d", where, f.Version, prev)
		}
		versions[f.LeakID] = f.Version
		if len(f.Tenants) > 255 {
			t.Fatalf("%s: %d tenants, at most 255", where, len(f.Tenants))
		}
		for j, tn := range f.Tenants {
			if tn == "" || len(tn) > detector.MaxTenantLength || strings.TrimSpace(tn) != tn {
				t.Fatalf("%s: tenant %q is empty, untrimmed or longer than %d bytes", where, tn, detector.MaxTenantLength)
			}
			if j > 0 && f.Tenants[j-1] >= tn {
				t.Fatalf("%s: tenants %q are not sorted and distinct", where, f.Tenants)
			}
		}
		if !slices.IsSorted(f.Services) {
			t.Fatalf("%s: services %q are not sorted", where, f.Services)
		}
		for _, e := range f.Edges {
			if e.From.Tenant == "" || e.To.Tenant == "" || e.From.Tenant == e.To.Tenant {
				t.Fatalf("%s: edge %+v does not cross between two tenants", where, e)
			}
			if !slices.Contains(f.Tenants, e.From.Tenant) || !slices.Contains(f.Tenants, e.To.Tenant) {
				t.Fatalf("%s: edge %+v names a tenant not in %q", where, e, f.Tenants)
			}
		}
		if len(f.Spans) > cfg.MaxEvidenceSpans {
			t.Fatalf("%s: %d evidence spans, max_evidence_spans is %d", where, len(f.Spans), cfg.MaxEvidenceSpans)
		}
		fzCheckEvidence(t, where, f)
	}
}

// fzCheckEvidence encodes the finding as the journal does and reads it back.
func fzCheckEvidence(t *testing.T, where string, f *detector.Finding) {
	t.Helper()
	ev := store.NewEvidence(f, "fuzz")
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&ev); err != nil {
		t.Fatalf("%s: encoding evidence: %v", where, err)
	}
	line := buf.Bytes()
	if !json.Valid(line) || !utf8.Valid(line) {
		t.Fatalf("%s: evidence is not valid UTF-8 JSON: %q", where, line)
	}
	var back store.Evidence
	if err := json.Unmarshal(line, &back); err != nil {
		t.Fatalf("%s: evidence does not read back: %v", where, err)
	}
	if back.LeakID != ev.LeakID || back.Version != ev.Version || back.TraceID != ev.TraceID ||
		len(back.Tenants) != len(ev.Tenants) || len(back.CrossingEdges) != len(ev.CrossingEdges) || len(back.Spans) != len(ev.Spans) {
		t.Fatalf("%s: evidence read back differs:\n%+v\n%+v", where, ev, back)
	}
}

// fzOTLPConfig is processors.tenantguard of testdata/config.yaml (every
// rule on, an OTTL allow condition) with small caps.
func fzOTLPConfig(tb testing.TB) *Config {
	tb.Helper()
	conf, err := confmaptest.LoadConf(filepath.Join("..", "..", "testdata", "config.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	sub, err := conf.Sub("processors::tenantguard")
	if err != nil {
		tb.Fatal(err)
	}
	cfg := createDefaultConfig().(*Config)
	if err := sub.Unmarshal(cfg); err != nil {
		tb.Fatal(err)
	}
	cfg.MaxTraces, cfg.MaxSpansPerTrace, cfg.MaxEvidenceSpans = fzMaxTraces, fzMaxSpans, fzMaxEvidence
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	return cfg
}

func fzProto(tb testing.TB, td ptrace.Traces) []byte {
	tb.Helper()
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		tb.Fatalf("marshalling a request: %v", err)
	}
	return b
}

// FuzzProcessorConfig reads any bytes as the processor's YAML config
// section, as the collector does (YAML → confmap → Unmarshal over the
// defaults → Validate). It checks that nothing panics, that an Unmarshal
// error quotes the key it could not decode, that every problem Validate
// reports begins with the config key it is about (so the collector stops
// with a pointer to the line to fix), and that a config Validate accepts
// builds a detector.
func FuzzProcessorConfig(f *testing.F) {
	for _, seed := range fzReadCorpus(f, "FuzzProcessorConfig") {
		f.Add(seed)
	}
	keys := fzConfigKeys()
	keyRE := regexp.MustCompile(`^(` + strings.Join(keys, "|") + `)([\[.:]| and )`)
	// mapstructure names the field it could not decode, or the struct
	// whose keys it does not know, in quotes.
	decodeRE := regexp.MustCompile(`'(` + regexp.QuoteMeta(fmt.Sprintf("%T", Config{})) + `|(` + strings.Join(keys, "|") + `)([.\[][^']*)?)'`)
	f.Fuzz(func(t *testing.T, data []byte) {
		retrieved, err := confmap.NewRetrievedFromYAML(data)
		if err != nil {
			return
		}
		conf, err := retrieved.AsConf()
		if err != nil {
			return // not a map: the collector refuses it before any processor
		}
		cfg := createDefaultConfig().(*Config)
		if err := conf.Unmarshal(cfg); err != nil {
			if !decodeRE.MatchString(err.Error()) {
				t.Fatalf("Unmarshal error %q names no config key", err)
			}
			return
		}
		verr := cfg.Validate()
		if verr == nil {
			if _, _, err := NewDetector(cfg, nil, nil); err != nil {
				t.Fatalf("Validate accepted the config, but the detector does not build: %v", err)
			}
			return
		}
		for _, leaf := range fzLeafErrors(verr) {
			if !keyRE.MatchString(leaf.Error()) {
				t.Fatalf("error %q does not begin with a config key (one of %s)", leaf.Error(), strings.Join(keys, ", "))
			}
		}
	})
}

// fzConfigKeys are the processor's top-level config keys, from the
// mapstructure tags, quoted for a regular expression.
func fzConfigKeys() []string {
	var keys []string
	rt := reflect.TypeFor[Config]()
	for i := range rt.NumField() {
		if tag := strings.Split(rt.Field(i).Tag.Get("mapstructure"), ",")[0]; tag != "" {
			keys = append(keys, regexp.QuoteMeta(tag))
		}
	}
	return keys
}

// fzLeafErrors flattens errors.Join trees.
func fzLeafErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, fzLeafErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// fzReadCorpus reads a shared seed corpus: files in Go's fuzz corpus format
// with one []byte value ("go test fuzz v1" then `[]byte("...")`).
func fzReadCorpus(tb testing.TB, target string) [][]byte {
	tb.Helper()
	dir := filepath.Join(fzCorpusRoot, target)
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatalf("reading the seed corpus: %v", err)
	}
	var seeds [][]byte
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		seed, err := fzParseCorpusFile(data)
		if err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
		seeds = append(seeds, seed)
	}
	if len(seeds) == 0 {
		tb.Fatalf("no seeds in %s", dir)
	}
	return seeds
}

func fzParseCorpusFile(data []byte) ([]byte, error) {
	header, value, _ := bytes.Cut(data, []byte("\n"))
	value = bytes.TrimSpace(value)
	if string(header) != "go test fuzz v1" || !bytes.HasPrefix(value, []byte("[]byte(")) || !bytes.HasSuffix(value, []byte(")")) {
		return nil, errors.New("not a fuzz corpus file with one []byte value")
	}
	s, err := strconv.Unquote(string(value[len("[]byte(") : len(value)-1]))
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

func fzCorpusFile(seed []byte) []byte {
	return []byte("go test fuzz v1\n[]byte(" + strconv.Quote(string(seed)) + ")\n")
}

// fzScenarioRequests returns every request of testdata/scenarios as its
// OTLP/JSON text, named scenario-<file>[-<line>].
func fzScenarioRequests(tb testing.TB) map[string][]byte {
	tb.Helper()
	dir := filepath.Join("..", "..", "testdata", "scenarios")
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasSuffix(name, ".golden.json") {
			continue
		}
		ext := filepath.Ext(name)
		if ext != ".json" && ext != ".jsonl" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			tb.Fatal(err)
		}
		base := "scenario-" + strings.TrimSuffix(name, ext)
		if ext == ".json" {
			out[base] = data
			continue
		}
		n := 0
		for line := range bytes.Lines(data) {
			line = bytes.TrimSpace(line)
			if len(line) == 0 || bytes.HasPrefix(line, []byte(`{"advance"`)) {
				continue
			}
			n++
			out[fmt.Sprintf("%s-%d", base, n)] = line
		}
	}
	if len(out) == 0 {
		tb.Fatalf("no scenarios in %s", dir)
	}
	return out
}

// fzConfigSection cuts the processors.tenantguard section out of a
// collector config file, dedented: the bytes FuzzProcessorConfig reads.
func fzConfigSection(tb testing.TB, path string) []byte {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var out bytes.Buffer
	in := false
	for line := range bytes.Lines(data) {
		trimmed := bytes.TrimRight(line, "\r\n")
		switch {
		case string(trimmed) == "  tenantguard:":
			in = true
		case in && len(bytes.TrimSpace(trimmed)) > 0 && !bytes.HasPrefix(trimmed, []byte("    ")):
			in = false
		case in:
			out.Write(bytes.TrimPrefix(line, []byte("    ")))
		}
	}
	if out.Len() == 0 {
		tb.Fatalf("%s: no processors.tenantguard section", path)
	}
	return out.Bytes()
}

// fzDerivedSeeds are the seeds generated from the scenarios and the
// shipped configs, by target and file name.
func fzDerivedSeeds(tb testing.TB) map[string]map[string][]byte {
	tb.Helper()
	seeds := map[string]map[string][]byte{"FuzzOTLPProtobuf": {}, "FuzzOTLPJSON": {}, "FuzzProcessorConfig": {}}
	var u ptrace.JSONUnmarshaler
	for name, js := range fzScenarioRequests(tb) {
		td, err := u.UnmarshalTraces(js)
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		seeds["FuzzOTLPJSON"][name] = js
		seeds["FuzzOTLPProtobuf"][name] = fzProto(tb, td)
	}
	seeds["FuzzProcessorConfig"]["scenario-config"] = fzConfigSection(tb, filepath.Join("..", "..", "testdata", "config.yaml"))
	seeds["FuzzProcessorConfig"]["local-config"] = fzConfigSection(tb, filepath.Join("..", "..", "config", "local.yaml"))
	return seeds
}

// TestFuzzSeedCorpora keeps the seeds derived from the scenarios and the
// shipped configs in step with them (-update-fuzz-seeds rewrites them), and
// checks that every corpus file parses.
func TestFuzzSeedCorpora(t *testing.T) {
	for target, files := range fzDerivedSeeds(t) {
		dir := filepath.Join(fzCorpusRoot, target)
		for name, seed := range files {
			path := filepath.Join(dir, name)
			if *updateFuzzSeeds {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, fzCorpusFile(seed), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("%s: %v (run go test ./processor -run TestFuzzSeedCorpora -update-fuzz-seeds)", path, err)
				continue
			}
			got, err := fzParseCorpusFile(data)
			if err != nil {
				t.Errorf("%s: %v", path, err)
				continue
			}
			if target == "FuzzOTLPProtobuf" {
				// Compare what the seed says, not how an older pdata encoded it.
				td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(got)
				if err != nil {
					t.Errorf("%s: %v", path, err)
					continue
				}
				got = fzProto(t, td)
			}
			if !bytes.Equal(got, seed) {
				t.Errorf("%s is out of date with its source (run go test ./processor -run TestFuzzSeedCorpora -update-fuzz-seeds)", path)
			}
		}
		fzReadCorpus(t, target)
	}
}
