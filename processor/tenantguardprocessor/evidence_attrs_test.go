package tenantguardprocessor

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tenantguard/tenantguard/config"
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
