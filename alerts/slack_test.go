package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/tenantguard/tenantguard/alerts/slacktest"
	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/store"
)

func botConfig(t *testing.T, srv *slacktest.Server, outbox string) config.Slack {
	cfg := config.DefaultSlack()
	cfg.Token = configopaque.String("xoxb-test-token")
	cfg.Channel = "#leaks"
	cfg.APIURL = srv.URL + "/api/"
	cfg.TraceURLTemplate = "https://jaeger.example.com/trace/{trace_id}"
	cfg.RunbookURL = "https://wiki.example.com/runbooks/tenant-leak"
	cfg.OutboxPath = outbox
	cfg.MaxBackoff = 2 * time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

type results struct {
	mu  sync.Mutex
	got []string
}

func (r *results) add(s string) { r.mu.Lock(); r.got = append(r.got, s); r.mu.Unlock() }
func (r *results) count(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, g := range r.got {
		if g == s {
			n++
		}
	}
	return n
}

func startSlack(t *testing.T, cfg config.Slack, opts ...SlackOption) (*SlackNotifier, *results) {
	t.Helper()
	res := &results{}
	opts = append(opts, WithDeliveryObserver(res.add))
	n, err := NewSlack(cfg, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	return n, res
}

func closeSlack(t *testing.T, n *SlackNotifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func leak(id, trace string, tenants ...string) *store.Evidence {
	return &store.Evidence{
		LeakID: id, Version: 1, Rule: "cross_tenant_trace", Severity: "critical", Status: "open", TraceID: trace,
		Tenants: tenants, SpanCount: 3, FirstSeen: time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC),
		CrossingEdges: []store.CrossingEdge{{
			From: store.EdgeEnd{SpanID: "a1", Service: "gateway", Span: "GET /inventory", Tenant: tenants[0]},
			To:   store.EdgeEnd{SpanID: "b2", Service: "inventory-svc", Span: "SELECT stock", Tenant: tenants[1]},
			Hops: 1,
		}},
	}
}

func notify(t *testing.T, n *SlackNotifier, ev *store.Evidence) {
	t.Helper()
	if err := n.Notify(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
}

func TestSlackBotOneMessagePerFindingWithThreadedUpdates(t *testing.T) {
	srv := slacktest.NewServer(t)
	n, _ := startSlack(t, botConfig(t, srv, filepath.Join(t.TempDir(), "outbox.jsonl")))
	defer closeSlack(t, n)

	ev := leak("leak1", "4bf92f3577b34da6a3ce929d0e0e4736", "acme", "globex")
	notify(t, n, ev)
	waitFor(t, "top-level message", func() bool { return len(srv.TopLevel()) == 1 })
	top := srv.TopLevel()[0]
	for _, want := range []string{"acme", "globex", "gateway", "GET /inventory", "inventory-svc", "SELECT stock",
		"https://jaeger.example.com/trace/4bf92f3577b34da6a3ce929d0e0e4736", "https://wiki.example.com/runbooks/tenant-leak",
		"leak1", "critical", "cross_tenant_trace"} {
		if !strings.Contains(top.Blocks, want) {
			t.Errorf("message blocks lack %q:\n%s", want, top.Blocks)
		}
	}
	if want := ev.Message(store.Plain); top.Text != want || !strings.Contains(top.Blocks, want) {
		t.Errorf("notification text %q, want the finding's message %q in the text and the blocks", top.Text, want)
	}
	if !strings.Contains(top.Metadata, `"leak_id":"leak1"`) {
		t.Errorf("message metadata must carry the leak id: %s", top.Metadata)
	}

	// More tenants: one thread reply, no new top-level message.
	v2 := leak("leak1", ev.TraceID, "acme", "globex")
	v2.Version, v2.Tenants = 2, []string{"acme", "globex", "initech"}
	notify(t, n, v2)
	waitFor(t, "thread reply", func() bool { posts, _, _ := srv.Snapshot(); return len(posts) == 2 })
	posts, _, _ := srv.Snapshot()
	if posts[1].ThreadTS != top.TS || !strings.Contains(posts[1].Text, "initech") {
		t.Errorf("update must be a reply in the finding's thread: %+v", posts[1])
	}
	// Nothing new but the end: the top-level message is edited to say so,
	// and nothing is posted.
	v3 := *v2
	v3.Version, v3.Status, v3.SpanCount = 3, "closed", 9
	notify(t, n, &v3)
	waitFor(t, "closing edit", func() bool {
		_, updates, _ := srv.Snapshot()
		return len(updates) > 0 && strings.Contains(updates[len(updates)-1].Blocks, "Closed")
	})
	posts, updates, _ := srv.Snapshot()
	if last := updates[len(updates)-1]; last.TS != top.TS || !strings.Contains(last.Blocks, "initech") {
		t.Errorf("the closing edit must be of the finding's message and show its last state: %+v", last)
	}
	if len(posts) != 2 || len(srv.TopLevel()) != 1 {
		t.Fatalf("closing posted a message: %d posts, %d top-level", len(posts), len(srv.TopLevel()))
	}
}

func TestSlackGroupsTheSameCrossingWithinTheWindow(t *testing.T) {
	srv := slacktest.NewServer(t)
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	n, res := startSlack(t, botConfig(t, srv, filepath.Join(t.TempDir(), "outbox.jsonl")), WithClock(clock))
	defer closeSlack(t, n)

	notify(t, n, leak("leak1", "00000000000000000000000000000001", "acme", "globex"))
	notify(t, n, leak("leak2", "00000000000000000000000000000002", "acme", "globex"))
	notify(t, n, leak("leak3", "00000000000000000000000000000003", "acme", "globex"))
	waitFor(t, "grouped", func() bool { return res.count(ResultGrouped) == 2 })
	if got := len(srv.TopLevel()); got != 1 {
		t.Fatalf("three findings with one crossing made %d top-level messages, want 1", got)
	}
	_, updates, _ := srv.Snapshot()
	if len(updates) != 2 || !strings.Contains(updates[1].Blocks, "×3") {
		t.Fatalf("the first message should show the count ×3: %+v", updates)
	}
	// Past the window, the same crossing is news again.
	mu.Lock()
	now = now.Add(11 * time.Minute)
	mu.Unlock()
	notify(t, n, leak("leak4", "00000000000000000000000000000004", "acme", "globex"))
	waitFor(t, "new top-level after window", func() bool { return len(srv.TopLevel()) == 2 })
	// A different tenant pair is a different message.
	notify(t, n, leak("leak5", "00000000000000000000000000000005", "acme", "umbrella"))
	waitFor(t, "other pair", func() bool { return len(srv.TopLevel()) == 3 })
}

func TestSlackWebhookMode(t *testing.T) {
	srv := slacktest.NewServer(t)
	cfg := config.DefaultSlack()
	cfg.WebhookURL = configopaque.String(srv.URL + "/webhook")
	cfg.OutboxPath = filepath.Join(t.TempDir(), "outbox.jsonl")
	n, res := startSlack(t, cfg)
	defer closeSlack(t, n)
	if n.Mode() != "webhook" {
		t.Fatalf("mode %s", n.Mode())
	}
	ev := leak("leak1", "4bf92f3577b34da6a3ce929d0e0e4736", "acme", "globex")
	notify(t, n, ev)
	up := *ev
	up.Version, up.Tenants = 2, []string{"acme", "globex", "initech"}
	notify(t, n, &up)
	waitFor(t, "webhook delivery", func() bool { return res.count(ResultDelivered) == 1 && res.count(ResultSkipped) == 1 })
	_, _, hooks := srv.Snapshot()
	if len(hooks) != 1 {
		t.Fatalf("want exactly one webhook message, got %d", len(hooks))
	}
	var msg map[string]any
	if err := json.Unmarshal([]byte(hooks[0]), &msg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(hooks[0], "acme") || !strings.Contains(hooks[0], "SELECT stock") || msg["blocks"] == nil {
		t.Errorf("webhook payload: %s", hooks[0])
	}
}

func TestSlackHonoursRateLimitsAndOutages(t *testing.T) {
	srv := slacktest.NewServer(t)
	srv.Set(func(s *slacktest.Server) { s.Fail429 = 2 })
	n, res := startSlack(t, botConfig(t, srv, filepath.Join(t.TempDir(), "outbox.jsonl")))
	defer closeSlack(t, n)
	start := time.Now()
	notify(t, n, leak("leak1", "00000000000000000000000000000001", "acme", "globex"))
	waitFor(t, "delivery after 429s", func() bool { return res.count(ResultDelivered) == 1 })
	if res.count(ResultRetried) != 2 {
		t.Errorf("want 2 retries for 2 rate-limited answers, got %d", res.count(ResultRetried))
	}
	if elapsed := time.Since(start); elapsed < 2*time.Second {
		t.Errorf("Retry-After: 1 twice must hold delivery for about 2s; delivered after %s", elapsed)
	}

	// Slack down (503), then back.
	srv.Set(func(s *slacktest.Server) { s.FailCode = http.StatusServiceUnavailable })
	notify(t, n, leak("leak2", "00000000000000000000000000000002", "acme", "umbrella"))
	waitFor(t, "a failed attempt", func() bool { return res.count(ResultRetried) >= 3 })
	if n.Pending() != 1 {
		t.Fatalf("the alert must stay pending while Slack is down: %d", n.Pending())
	}
	srv.Set(func(s *slacktest.Server) { s.FailCode = 0 })
	waitFor(t, "delivery after outage", func() bool { return res.count(ResultDelivered) == 2 })
	if got := len(srv.TopLevel()); got != 2 {
		t.Fatalf("want 2 top-level messages, got %d", got)
	}
}

func TestSlackPendingAlertsSurviveRestart(t *testing.T) {
	srv := slacktest.NewServer(t)
	outbox := filepath.Join(t.TempDir(), "outbox.jsonl")
	srv.Set(func(s *slacktest.Server) { s.FailCode = http.StatusBadGateway })
	n, _ := startSlack(t, botConfig(t, srv, outbox))
	notify(t, n, leak("leak1", "00000000000000000000000000000001", "acme", "globex"))
	waitFor(t, "first attempt", func() bool { return len(srv.Bodies()) > 0 })
	closeSlack(t, n)

	srv.Set(func(s *slacktest.Server) { s.FailCode = 0 })
	n2, res := startSlack(t, botConfig(t, srv, outbox))
	waitFor(t, "delivery after restart", func() bool { return res.count(ResultDelivered) == 1 })
	// The finding's later version threads under the message, not a new one.
	up := leak("leak1", "00000000000000000000000000000001", "acme", "globex")
	up.Version, up.Tenants = 2, []string{"acme", "globex", "initech"}
	notify(t, n2, up)
	waitFor(t, "reply", func() bool { return res.count(ResultDelivered) == 2 })
	closeSlack(t, n2)
	if got := len(srv.TopLevel()); got != 1 {
		t.Fatalf("want one top-level message across the restart, got %d", got)
	}

	// A third start must not deliver anything again.
	n3, res3 := startSlack(t, botConfig(t, srv, outbox))
	// Nothing was left pending, and a replayed version of an announced
	// finding is classified as no news when Notify returns: nothing is
	// queued that could be delivered later.
	pendingAtStart := n3.Pending()
	notify(t, n3, up)
	if pendingAtStart != 0 || n3.Pending() != 0 || res3.count(ResultSkipped) != 1 {
		t.Fatalf("restart queued an announced finding again: pending %d then %d, results %v", pendingAtStart, n3.Pending(), res3.got)
	}
	closeSlack(t, n3)
	if res3.count(ResultDelivered) != 0 || len(srv.TopLevel()) != 1 {
		t.Fatalf("restart re-delivered: %v, top-level %d", res3.got, len(srv.TopLevel()))
	}
}

// A crash after Slack accepted the message but before the outbox recorded
// it must not produce a second top-level message.
// crashAfterPost leaves what a crash between a post and its record
// leaves: leak1's alert queued, the intent to post it recorded, Slack
// holding the message, and no "done" record.
func crashAfterPost(t *testing.T, cfg config.Slack) {
	t.Helper()
	n, err := NewSlack(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	notify(t, n, leak("leak1", "00000000000000000000000000000001", "acme", "globex")) // the sender never started
	a := n.pending[0]
	if err := n.ob.append(outboxRecord{Type: "posting", Seq: a.Seq}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.api.PostMessageContext(context.Background(), cfg.Channel, slackMessageOptions(n, a)...); err != nil {
		t.Fatal(err)
	}
	_ = n.ob.close()
}

// crashBeforeReplyRecord delivers leak1's message, then queues second with
// a notifier that records its intent to reply in that thread and stops
// there, as a crash would: the caller posts the reply (or not) with n and
// a, then closes n's outbox. It returns the thread's ts.
func crashBeforeReplyRecord(t *testing.T, srv *slacktest.Server, cfg config.Slack, second *store.Evidence) (ts string, n *SlackNotifier, a *alert) {
	t.Helper()
	n1, res1 := startSlack(t, cfg)
	notify(t, n1, leak("leak1", "00000000000000000000000000000001", "acme", "globex"))
	waitFor(t, "the first message", func() bool { return res1.count(ResultDelivered) == 1 })
	closeSlack(t, n1)
	ts = messageTS(t, srv, "leak1")
	n, err := NewSlack(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	notify(t, n, second)
	a = n.pending[0]
	if err := n.ob.append(outboxRecord{Type: "posting", Seq: a.Seq}); err != nil {
		t.Fatal(err)
	}
	return ts, n, a
}

// postReplyBeforeCrash posts the reply of a in the thread ts, as the notifier would
// have before a crash.
func postReplyBeforeCrash(t *testing.T, n *SlackNotifier, a *alert, ts, text string) {
	t.Helper()
	if _, _, err := n.api.PostMessageContext(context.Background(), "C0LEAKS", slack.MsgOptionText(text, false),
		slack.MsgOptionTS(ts), slack.MsgOptionMetadata(replyMetadata(a))); err != nil {
		t.Fatal(err)
	}
}

// recoverSlack restarts the notifier on cfg's outbox, lets it deliver what
// the crash left, and stops it; it returns the results it reported.
func recoverSlack(t *testing.T, cfg config.Slack) *results {
	t.Helper()
	n, res := startSlack(t, cfg)
	waitFor(t, "recovery", func() bool { return n.Pending() == 0 })
	closeSlack(t, n)
	return res
}

func TestSlackCrashBetweenPostAndRecordPostsOnce(t *testing.T) {
	srv := slacktest.NewServer(t)
	cfg := botConfig(t, srv, filepath.Join(t.TempDir(), "outbox.jsonl"))
	crashAfterPost(t, cfg)

	res := recoverSlack(t, cfg)
	if got := len(srv.TopLevel()); got != 1 {
		t.Fatalf("crash recovery posted again: %d top-level messages", got)
	}
	if res.count(ResultDelivered) != 1 || srv.Histories() == 0 {
		t.Fatalf("recovery should find the message in history: results %v, history calls %d", res.got, srv.Histories())
	}
}

// TestSlackLookupsPageThroughABusyChannel: after a crash between a post and
// its record, the restarted notifier finds the message even when more than
// a page of other messages came after it in the channel (history is newest
// first), or before it in the thread (replies are oldest first).
func TestSlackLookupsPageThroughABusyChannel(t *testing.T) {
	const others = 2*lookupPageSize + 50
	chatter := func(t *testing.T, srv *slacktest.Server, threadTS string) {
		api := slack.New("xoxb-someone-else", slack.OptionAPIURL(srv.URL+"/api/"))
		for i := range others {
			opts := []slack.MsgOption{slack.MsgOptionText(fmt.Sprintf("chatter %d", i), false)}
			if threadTS != "" {
				opts = append(opts, slack.MsgOptionTS(threadTS))
			}
			if _, _, err := api.PostMessage("C0LEAKS", opts...); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("channel", func(t *testing.T) {
		srv := slacktest.NewServer(t)
		cfg := botConfig(t, srv, filepath.Join(t.TempDir(), "outbox.jsonl"))
		crashAfterPost(t, cfg)
		chatter(t, srv, "")

		res := recoverSlack(t, cfg)
		if got := len(srv.TopLevel()); got != others+1 {
			t.Fatalf("%d top-level messages, want the %d others and ours once", got, others)
		}
		if res.count(ResultDelivered) != 1 || srv.Histories() != 3 {
			t.Fatalf("results %v, %d history pages read; want delivered, found on the third page", res.got, srv.Histories())
		}
	})
	t.Run("thread", func(t *testing.T) {
		srv := slacktest.NewServer(t)
		cfg := botConfig(t, srv, filepath.Join(t.TempDir(), "outbox.jsonl"))
		update := leak("leak1", "00000000000000000000000000000001", "acme", "globex", "initech")
		update.Version = 2
		ts, n2, a := crashBeforeReplyRecord(t, srv, cfg, update)
		chatter(t, srv, ts) // the thread busy between the alert and its reply
		postReplyBeforeCrash(t, n2, a, ts, n2.replyText(a))
		_ = n2.ob.close()

		recoverSlack(t, cfg)
		if got := len(srv.RepliesIn(ts)); got != others+1 {
			t.Fatalf("%d replies in the thread, want the %d others and ours once", got, others)
		}
		if srv.Replies() != 3 {
			t.Errorf("%d pages of the thread read, want 3 (ours is the last reply)", srv.Replies())
		}
	})
}

func TestSlackRedactsAndEscapes(t *testing.T) {
	srv := slacktest.NewServer(t)
	cfg := botConfig(t, srv, filepath.Join(t.TempDir(), "outbox.jsonl"))
	cfg.PseudonymizeTenants = true
	cfg.PseudonymKey = "0123456789abcdef0123"
	n, res := startSlack(t, cfg)
	ev := leak("leak1", "00000000000000000000000000000001", "acme-corp", "globex-inc")
	ev.CrossingEdges[0].To.Span = "<!channel> SELECT * FROM stock"
	ev.CrossingEdges[0].From.Service = "<https://evil.example|click>"
	notify(t, n, ev)
	waitFor(t, "delivery", func() bool { return res.count(ResultDelivered) == 1 })
	closeSlack(t, n)
	for _, b := range srv.Bodies() {
		for _, secret := range []string{"acme-corp", "globex-inc", "<!channel>", "<https://evil.example"} {
			if strings.Contains(b, secret) {
				t.Errorf("payload contains %q", secret)
			}
		}
	}
	p := pseudonym(cfg, "acme-corp")
	posts, _, _ := srv.Snapshot()
	if !strings.Contains(posts[0].Blocks, p) || p == pseudonym(cfg, "globex-inc") {
		t.Errorf("tenants must appear as stable, distinct pseudonyms (%s): %s", p, posts[0].Blocks)
	}
	if !strings.Contains(posts[0].Blocks, `\u0026lt;!channel\u0026gt;`) {
		t.Errorf("span name must be escaped: %s", posts[0].Blocks)
	}
}

func TestSlackSkipsBelowMinSeverityAndWithdrawsAllowed(t *testing.T) {
	srv := slacktest.NewServer(t)
	n, res := startSlack(t, botConfig(t, srv, filepath.Join(t.TempDir(), "outbox.jsonl")))
	defer closeSlack(t, n)
	low := leak("low1", "00000000000000000000000000000001", "acme", "globex")
	low.Severity = "low"
	notify(t, n, low)
	ev := leak("leak2", "00000000000000000000000000000002", "acme", "globex")
	notify(t, n, ev)
	waitFor(t, "post", func() bool { return len(srv.TopLevel()) == 1 })
	withdrawn := *ev
	withdrawn.Version, withdrawn.Status, withdrawn.AllowedBy = 2, "allowed", "allow.services: admin-console"
	notify(t, n, &withdrawn)
	waitFor(t, "withdrawal reply", func() bool { posts, _, _ := srv.Snapshot(); return len(posts) == 2 })
	posts, _, _ := srv.Snapshot()
	if !strings.Contains(posts[1].Text, "Withdrawn") || posts[1].ThreadTS != posts[0].TS {
		t.Fatalf("withdrawal must reply in the thread: %+v", posts[1])
	}
	if res.count(ResultSkipped) != 1 || strings.Contains(posts[0].Blocks, "low1") {
		t.Fatalf("the low finding must be skipped: %v", res.got)
	}
}

func pseudonym(cfg config.Slack, t string) string {
	n := &SlackNotifier{cfg: cfg}
	return n.tenant(t)
}

// Webhooks cannot thread, but a restart must still not announce a finding
// that was already announced.
func TestSlackWebhookRestartDoesNotRepeat(t *testing.T) {
	srv := slacktest.NewServer(t)
	cfg := config.DefaultSlack()
	cfg.WebhookURL = configopaque.String(srv.URL + "/webhook")
	cfg.OutboxPath = filepath.Join(t.TempDir(), "outbox.jsonl")
	ev := leak("leak1", "4bf92f3577b34da6a3ce929d0e0e4736", "acme", "globex")
	n, res := startSlack(t, cfg)
	notify(t, n, ev)
	waitFor(t, "delivery", func() bool { return res.count(ResultDelivered) == 1 })
	closeSlack(t, n)

	n2, res2 := startSlack(t, cfg)
	again := *ev
	again.Version = 7 // the detector, restarted, reports the finding anew
	notify(t, n2, &again)
	closeSlack(t, n2)
	if _, _, hooks := srv.Snapshot(); len(hooks) != 1 || res2.count(ResultDelivered) != 0 {
		t.Fatalf("restart re-announced the finding: %d webhook messages", len(hooks))
	}
}

// A crash between a thread reply reaching Slack and the outbox's "done"
// record: the restarted notifier finds the reply in the thread
// (conversations.replies) and neither repeats it nor, for a finding grouped
// under another's message, counts it twice. When the reply never went out,
// it posts it once.
func TestSlackCrashBetweenReplyAndRecordRepliesOnce(t *testing.T) {
	cases := []struct {
		name    string
		second  *store.Evidence // what the reply is for
		grouped bool
	}{
		{"an update in the finding's thread", func() *store.Evidence {
			ev := leak("leak1", "00000000000000000000000000000001", "acme", "globex", "initech")
			ev.Version = 2
			return ev
		}(), false},
		{"a finding grouped under another's message", leak("leak2", "00000000000000000000000000000002", "acme", "globex"), true},
	}
	for _, c := range cases {
		for _, wentOut := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/reply sent %v", c.name, wentOut), func(t *testing.T) {
				srv := slacktest.NewServer(t)
				cfg := botConfig(t, srv, filepath.Join(t.TempDir(), "outbox.jsonl"))
				// What a crash leaves: the intent recorded and, if it went
				// out, the reply in the thread; no "done" record.
				ts, n2, a := crashBeforeReplyRecord(t, srv, cfg, c.second)
				if wentOut {
					text := n2.replyText(a)
					if c.grouped {
						g := *a
						g.Kind = "grouped"
						text = n2.replyText(&g)
					}
					postReplyBeforeCrash(t, n2, a, ts, text)
				}
				_ = n2.ob.close()

				res3 := recoverSlack(t, cfg)
				if got := len(srv.RepliesIn(ts)); got != 1 {
					t.Fatalf("%d replies in the thread, want 1", got)
				}
				if srv.Replies() == 0 {
					t.Error("the restarted notifier did not look in the thread")
				}
				want := ResultDelivered
				if c.grouped {
					want = ResultGrouped
					lastUpdateOf(t, srv, ts, "×2")
					_, updates, _ := srv.Snapshot()
					if last := updates[len(updates)-1]; !strings.Contains(last.Blocks, "×2") {
						t.Errorf("the incident's message ends up saying %.200q, want the count ×2", last.Blocks)
					}
				}
				if res3.count(want) != 1 {
					t.Errorf("the restarted run's results: %v, want one %s", res3.got, want)
				}
			})
		}
	}
}
