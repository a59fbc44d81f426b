package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/alerts/slacktest"
)

// TestSlackWebhookEscalationToCritical runs the built collector with a
// webhook and sends a leak in two requests: first the crossing (gateway of
// acme calls inventory-svc for globex: high, the crossing succeeded but no
// data of globex seen), then inventory-svc's SELECT on globex's data. The
// finding escalates to critical, and since a webhook cannot edit, that is a
// second message saying what changed.
func TestSlackWebhookEscalationToCritical(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the collector binary")
	}
	hooks := newSlackHooks(t)
	dir := t.TempDir()
	c := &crashCollector{
		bin: tenantguardBinary(t), dir: dir, cfg: filepath.Join(dir, "collector.yaml"),
		http: "127.0.0.1:" + strconv.Itoa(restartPort(t)), metrics: "127.0.0.1:" + strconv.Itoa(restartPort(t)),
	}
	cfg := fmt.Sprintf(crashConfig, c.http, strconv.Quote(filepath.Join(dir, "data", "leaks.jsonl")),
		"127.0.0.1:"+strconv.Itoa(restartPort(t)), c.metrics, hooks.srv.URL+"/services/T0/B0/x",
		strconv.Quote(filepath.Join(dir, "data", "slack-outbox.jsonl")))
	if err := os.WriteFile(c.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	crossing, data := splitSharedInventory(t)
	c.start(t)
	defer c.stop(t)
	post := func(body []byte) {
		t.Helper()
		resp, err := http.Post("http://"+c.http+"/v1/traces", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("OTLP post: %s", resp.Status)
		}
	}

	post(crossing)
	eventually(t, 15*time.Second, "the first message", func() (bool, string) {
		return len(hooks.messages()) == 1, fmt.Sprintf("%d messages", len(hooks.messages()))
	})
	if first := hooks.messages()[0]; !strings.Contains(first, ":warning:") || strings.Contains(first, "now critical") {
		t.Fatalf("the first message should be the high finding:\n%s", first)
	}
	post(data)
	eventually(t, 15*time.Second, "the escalation message", func() (bool, string) {
		return len(hooks.messages()) == 2, fmt.Sprintf("%d messages", len(hooks.messages()))
	})
	second := hooks.messages()[1]
	for _, want := range []string{"now critical: reached inventory-svc's data (`SELECT stock`, tenant globex)", ":rotating_light:"} {
		if !strings.Contains(second, want) {
			t.Errorf("the escalation message lacks %q:\n%s", want, second)
		}
	}
}

// TestSlackBotTracksTheIncident runs the built collector in bot mode
// against the local Slack API with the same two requests: the finding's
// message is posted at high, edited to critical with a thread reply that
// says what changed, and edited again when the trace closes.
func TestSlackBotTracksTheIncident(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the collector binary")
	}
	srv := slacktest.NewServer(t)
	dir := t.TempDir()
	c := &crashCollector{
		bin: tenantguardBinary(t), dir: dir, cfg: filepath.Join(dir, "collector.yaml"),
		http: "127.0.0.1:" + strconv.Itoa(restartPort(t)), metrics: "127.0.0.1:" + strconv.Itoa(restartPort(t)),
	}
	cfg := fmt.Sprintf(crashConfig, c.http, strconv.Quote(filepath.Join(dir, "data", "leaks.jsonl")),
		"127.0.0.1:"+strconv.Itoa(restartPort(t)), c.metrics, "WEBHOOK",
		strconv.Quote(filepath.Join(dir, "data", "slack-outbox.jsonl")))
	cfg = strings.Replace(cfg, "webhook_url: WEBHOOK", "token: xoxb-local-test\n        channel: C0LEAKS\n        api_url: "+srv.URL+"/api/", 1)
	cfg = strings.Replace(cfg, "idle_window: 30s", "idle_window: 2s", 1)
	if err := os.WriteFile(c.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	crossing, data := splitSharedInventory(t)
	c.start(t)
	defer c.stop(t)
	post := func(body []byte) {
		t.Helper()
		resp, err := http.Post("http://"+c.http+"/v1/traces", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("OTLP post: %s", resp.Status)
		}
	}

	post(crossing)
	eventually(t, 15*time.Second, "the finding's message", func() (bool, string) {
		return len(srv.TopLevel()) == 1, fmt.Sprintf("%d top-level messages", len(srv.TopLevel()))
	})
	top := srv.TopLevel()[0]
	if !strings.Contains(top.Blocks, "*Severity*\\nhigh") {
		t.Fatalf("the first message should show the high finding: %s", top.Blocks)
	}
	post(data)
	var reply string
	eventually(t, 15*time.Second, "the escalation edit and reply", func() (bool, string) {
		_, updates, _ := srv.Snapshot()
		edited := slices.ContainsFunc(updates, func(u slacktest.Post) bool {
			return u.TS == top.TS && strings.Contains(u.Blocks, "*Severity*\\ncritical")
		})
		for _, r := range srv.RepliesIn(top.TS) {
			if strings.Contains(r.Text, "now critical") {
				reply = r.Text
			}
		}
		return edited && reply != "", fmt.Sprintf("%d edits, reply %q", len(updates), reply)
	})
	if want := "now critical: reached inventory-svc's data (`SELECT stock`, tenant globex)"; !strings.Contains(reply, want) {
		t.Errorf("the escalation reply %q lacks %q", reply, want)
	}
	eventually(t, 20*time.Second, "the closing edit", func() (bool, string) {
		_, updates, _ := srv.Snapshot()
		return len(updates) > 0 && strings.Contains(updates[len(updates)-1].Blocks, "Closed"), fmt.Sprintf("%d edits", len(updates))
	})
	if n := len(srv.TopLevel()); n != 1 {
		t.Fatalf("%d top-level messages for one incident, want 1", n)
	}
}

// splitSharedInventory cuts the shared_inventory scenario into two
// requests: the crossing (gateway and inventory-svc's GET /stock, which
// carries globex's tenant here), and the SELECT on globex's data under it.
func splitSharedInventory(t *testing.T) (crossing, data []byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "scenarios", "shared_inventory.json"))
	if err != nil {
		t.Fatal(err)
	}
	type obj = map[string]any
	var doc struct {
		ResourceSpans []struct {
			Resource   obj `json:"resource"`
			ScopeSpans []struct {
				Scope obj   `json:"scope"`
				Spans []obj `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var first, second []obj
	for _, rs := range doc.ResourceSpans {
		var a, b []obj
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				one := obj{"scope": ss.Scope, "spans": []obj{s}}
				switch s["name"] {
				case "SELECT stock":
					b = append(b, one)
				case "GET /stock":
					s["attributes"] = append(s["attributes"].([]any), obj{"key": "tenant.id", "value": obj{"stringValue": "globex"}})
					a = append(a, one)
				default:
					a = append(a, one)
				}
			}
		}
		if len(a) > 0 {
			first = append(first, obj{"resource": rs.Resource, "scopeSpans": a})
		}
		if len(b) > 0 {
			second = append(second, obj{"resource": rs.Resource, "scopeSpans": b})
		}
	}
	crossing, _ = json.Marshal(obj{"resourceSpans": first})
	data, _ = json.Marshal(obj{"resourceSpans": second})
	return crossing, data
}
