package tenantguardprocessor

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

const testEvidenceKey = "0123456789abcdef-evidence-test-key"

// The secret values of the evidence spans: none may reach the journal.
const (
	secretPath  = "/t/globex/orders/4711?card=4111111111111111"
	secretQuery = "SELECT * FROM stock WHERE sku = 'globex-secret-sku'"
)

// privacyRequest is the forgetful inventory service with the attributes
// real instrumentation records.
func privacyRequest(trace byte) spanSpec {
	return spanSpec{trace, 3, 2, "inventory-svc", "SELECT stock", map[string]any{
		"tenant.id": "globex", "db.system.name": "postgresql", "db.query.text": secretQuery,
		"url.path": secretPath, "http.request.method": "GET", "retries": 3,
	}}
}

// runPrivacy sends a leaking trace whose crossing span carries
// attributes, then (in a second request) a span that updates the finding,
// and returns the journal's latest record.
func runPrivacy(t *testing.T, cfg *Config, logger *zap.Logger) store.Evidence {
	t.Helper()
	p := startProcessor(t, cfg, logger)
	if err := p.start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	td := request(
		spanSpec{1, 1, 0, "gateway", "GET /inventory", map[string]any{"tenant.id": "acme", "http.route": "/inventory"}},
		spanSpec{1, 2, 1, "inventory-svc", "GET /stock", nil},
		privacyRequest(1),
	)
	spanIn(td, 3).SetKind(ptrace.SpanKindClient)
	consume(t, p, td)
	// A later request adds a third tenant: a new version, built when the
	// crossing span's request is gone.
	consume(t, p, request(spanSpec{1, 4, 2, "inventory-svc", "SELECT stock", map[string]any{"tenant.id": "initech"}}))
	if err := p.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	latest := journaled(t, cfg)
	if len(latest) != 1 {
		t.Fatalf("want one finding, got %d", len(latest))
	}
	return latest[0]
}

func evidenceSpan(t *testing.T, ev store.Evidence, id string) store.Span {
	t.Helper()
	for _, s := range ev.Spans {
		if s.SpanID == id {
			return s
		}
	}
	t.Fatalf("span %s is not in the evidence: %+v", id, ev.Spans)
	return store.Span{}
}

func TestEvidenceKeepsDigestsNotValues(t *testing.T) {
	cfg := testConfig(t)
	cfg.EvidenceAttributes.HMACKey = configopaque.String(testEvidenceKey)
	ev := runPrivacy(t, cfg, nil)
	if len(ev.Tenants) != 3 || ev.Status != "closed" {
		t.Fatalf("the finding must have grown to three tenants and closed: %+v", ev)
	}
	crossing := evidenceSpan(t, ev, spanID(3).String())
	mac := func(v string) string {
		m := hmac.New(sha256.New, []byte(testEvidenceKey))
		m.Write([]byte(v))
		return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
	}
	want := map[string]string{
		"tenant.id":           "globex",     // tenant ids stay in clear
		"db.system.name":      "postgresql", // default clear list
		"http.request.method": "GET",
		"db.query.text":       mac(secretQuery),
		"url.path":            mac(secretPath),
		"retries":             mac("3"),
	}
	if len(crossing.Attributes) != len(want) {
		t.Errorf("attributes %v, want %v", crossing.Attributes, want)
	}
	for k, v := range want {
		if crossing.Attributes[k] != v {
			t.Errorf("%s = %q, want %q", k, crossing.Attributes[k], v)
		}
	}
	if crossing.Kind != "client" {
		t.Errorf("kind %q, want client", crossing.Kind)
	}
	if !crossing.StartTime.Equal(time.Unix(1_700_000_000, 0)) || crossing.Status != "unset" {
		t.Errorf("start %s status %q", crossing.StartTime, crossing.Status)
	}
	// The gateway span's own route is in clear; equal values give equal
	// digests across findings, which is what lets analysts correlate.
	if gw := evidenceSpan(t, ev, spanID(1).String()); gw.Attributes["http.route"] != "/inventory" {
		t.Errorf("gateway attributes %v", gw.Attributes)
	}
	if Digest([]byte(testEvidenceKey), secretPath) != want["url.path"] {
		t.Error("Digest must be the HMAC-SHA256 of the value under the key")
	}
	raw, err := os.ReadFile(cfg.Store.Journal.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{secretPath, "4111111111111111", "globex-secret-sku", testEvidenceKey} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the journal holds %q", secret)
		}
	}
}

func TestEvidenceWithoutKeyWithholdsValuesAndSaysSo(t *testing.T) {
	cfg := testConfig(t)
	core, logs := observer.New(zap.InfoLevel)
	ev := runPrivacy(t, cfg, zap.New(core))
	crossing := evidenceSpan(t, ev, spanID(3).String())
	if crossing.Attributes["url.path"] != config.RedactedValue || crossing.Attributes["db.query.text"] != config.RedactedValue {
		t.Errorf("without a key, values outside the clear list must be withheld: %v", crossing.Attributes)
	}
	if crossing.Attributes["tenant.id"] != "globex" || crossing.Attributes["db.system.name"] != "postgresql" {
		t.Errorf("tenant and clear-listed values are kept: %v", crossing.Attributes)
	}
	if logs.FilterMessageSnippet("evidence_attributes.hmac_key is not set").Len() != 1 {
		t.Error("a missing key must be said once at start")
	}
}

func TestEvidenceAttributesBoundedAndOff(t *testing.T) {
	cfg := testConfig(t)
	cfg.EvidenceAttributes.HMACKey = configopaque.String(testEvidenceKey)
	cfg.EvidenceAttributes.MaxPerSpan = 2
	cfg.EvidenceAttributes.Clear = []string{"big"}
	p := startProcessor(t, cfg, nil)
	if err := p.start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	td := request(
		spanSpec{1, 1, 0, "gateway", "GET /inventory", map[string]any{"tenant.id": "acme"}},
		spanSpec{1, 3, 1, "inventory-svc", "SELECT stock", nil},
	)
	// In a fixed order: the first two are kept, and the clear-listed 1 MB
	// value is one of them.
	attrs := spanIn(td, 3).Attributes()
	attrs.PutStr("big", strings.Repeat("x", 1<<20))
	attrs.PutStr("tenant.id", "globex")
	attrs.PutInt("a", 1)
	attrs.PutStr("c", "\xff\xfe")
	consume(t, p, td)
	if err := p.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	crossing := evidenceSpan(t, journaled(t, cfg)[0], spanID(3).String())
	if len(crossing.Attributes) != 2 || crossing.Attributes["tenant.id"] != "globex" {
		t.Errorf("max_per_span 2: %v", crossing.Attributes)
	}
	if big := crossing.Attributes["big"]; len(big) > maxEvidenceClearBytes || !strings.HasPrefix(big, "xxx") || !strings.HasSuffix(big, "…") {
		t.Errorf("the clear-listed 1 MB value is kept as %d bytes, want it cut to %d and marked", len(big), maxEvidenceClearBytes)
	}

	cfg = testConfig(t)
	cfg.EvidenceAttributes.Enabled = false
	ev := runPrivacy(t, cfg, nil)
	if c := evidenceSpan(t, ev, spanID(3).String()); c.Attributes != nil || c.Kind != "" {
		t.Errorf("evidence_attributes off keeps no details: %+v", c)
	}
}

// spanIn is the span of request td with span id spanID(id).
func spanIn(td ptrace.Traces, id byte) ptrace.Span {
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		spans := rss.At(i).ScopeSpans().At(0).Spans()
		for k := 0; k < spans.Len(); k++ {
			if spans.At(k).SpanID() == spanID(id) {
				return spans.At(k)
			}
		}
	}
	panic(fmt.Sprintf("no span %d in the request", id))
}

func TestCapUTF8(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdefghij", 8, "abcde…"},
		{"ééééé", 7, "éé…"}, // never cuts a rune in two
		{"a\xffb", 10, "a\uFFFDb"},
		{"abcdef", 2, "ab"}, // no room for the mark: never longer than n
		{"éé", 1, ""},
	} {
		if got := capUTF8(tc.in, tc.n); got != tc.want {
			t.Errorf("capUTF8(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// storm is one request carrying the leaking traces from to to, their spans
// interleaved (every trace's span 1, then every trace's span 2, ...), each
// span starting at an instant that names its trace and span.
func storm(from, to int) ptrace.Traces {
	var specs []spanSpec
	for _, s := range leakingSpans {
		for tr := from; tr <= to; tr++ {
			s.trace = byte(tr)
			specs = append(specs, s)
		}
	}
	td := request(specs...)
	for sp := range Spans(td) {
		sp.SetStartTimestamp(stormStart(sp.TraceID()[15], sp.SpanID()[7]))
	}
	return td
}

// leakingSpans are leakingTrace's spans (without a trace id).
var leakingSpans = []spanSpec{
	{0, 1, 0, "gateway", "GET /inventory", map[string]any{"tenant.id": "acme"}},
	{0, 2, 1, "inventory-svc", "GET /stock", nil},
	{0, 3, 2, "inventory-svc", "SELECT stock", map[string]any{"tenant.id": "globex", "db.system.name": "postgresql"}},
}

func stormStart(trace, span byte) pcommon.Timestamp {
	return pcommon.NewTimestampFromTime(time.Unix(1_700_000_000+int64(trace)*10+int64(span), 0))
}

// A request that raises more findings than walksBeforeIndex (a leak storm)
// gives each of them its own spans' details: the ones found by walking the
// request and the ones found in its index alike.
func TestEvidenceDetailsInALeakStorm(t *testing.T) {
	const traces = 3 * walksBeforeIndex
	cfg := testConfig(t)
	p := startProcessor(t, cfg, nil)
	if err := p.start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	consume(t, p, storm(1, traces))
	if err := p.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	latest := journaled(t, cfg)
	if len(latest) != traces {
		t.Fatalf("%d findings, want one per leaking trace (%d)", len(latest), traces)
	}
	for _, ev := range latest {
		trace, err := hex.DecodeString(ev.TraceID)
		if err != nil || len(ev.Spans) == 0 {
			t.Fatalf("finding %s: trace id %q, %d evidence spans", ev.LeakID, ev.TraceID, len(ev.Spans))
		}
		for _, s := range ev.Spans {
			id, err := hex.DecodeString(s.SpanID)
			if err != nil {
				t.Fatal(err)
			}
			want := stormStart(trace[15], id[7]).AsTime()
			if !s.StartTime.Equal(want) || s.Attributes == nil {
				t.Errorf("trace %s span %s: started %s with attributes %v, want the details of its own span (started %s)",
					ev.TraceID, s.SpanID, s.StartTime, s.Attributes, want)
			}
		}
	}
}

// The reader's index grows with the parts of a request read after it was
// built (scan feeds a large request in parts), keeps a trace's spans in
// request order (the first of two spans with one id fills the first
// evidence span with it), and forgets the request at Reset.
func TestEvidenceReaderIndexesPartsInOrder(t *testing.T) {
	q := NewEvidenceReader(testConfig(t))
	finding := func(trace byte, spans ...byte) *detector.Finding {
		f := &detector.Finding{TraceID: detector.TraceID(traceID(trace))}
		for _, s := range spans {
			f.Spans = append(f.Spans, detector.EvidenceSpan{SpanID: detector.SpanID(spanID(s))})
		}
		return f
	}
	// starts fills f and returns when its evidence spans started (-1:
	// no details).
	starts := func(f *detector.Finding) (out []int64) {
		q.Fill(f)
		for _, s := range f.Spans {
			if s.Detail == nil {
				out = append(out, -1)
			} else {
				out = append(out, time.Unix(0, int64(s.Detail.StartUnixNano)).Unix()-1_700_000_000)
			}
		}
		return out
	}
	for round := range 2 { // the second round reuses the buffers Reset kept
		q.Reset()
		q.Read(storm(1, 4))
		for i := range walksBeforeIndex + 1 { // the last one is looked up in the index
			if got := starts(finding(2, 1, 3)); !slices.Equal(got, []int64{21, 23}) {
				t.Fatalf("round %d, finding %d: trace 2's spans 1 and 3 started at %v", round, i, got)
			}
		}
		// A second part: trace 2's span 3 again (a broken client), and a
		// trace the first part did not have.
		again := storm(1, 5)
		for sp := range Spans(again) {
			if sp.TraceID()[15] == 2 {
				sp.SetStartTimestamp(stormStart(9, 9))
			}
		}
		q.Read(again)
		if got := starts(finding(2, 3, 3, 2)); !slices.Equal(got, []int64{23, 99, 22}) {
			t.Errorf("round %d: two spans 3 and a span 2 of trace 2 in two parts started at %v, want 23, 99 (in request order), 22", round, got)
		}
		if got := starts(finding(5, 1)); !slices.Equal(got, []int64{51}) {
			t.Errorf("round %d: trace 5, only in the second part: %v", round, got)
		}
		if got := starts(finding(7, 1)); !slices.Equal(got, []int64{-1}) {
			t.Errorf("round %d: a trace the request does not carry got details: %v", round, got)
		}
	}
	q.Reset()
	if got := starts(finding(2, 1)); !slices.Equal(got, []int64{-1}) {
		t.Errorf("after Reset the request is forgotten, but trace 2 still got details: %v", got)
	}
}
