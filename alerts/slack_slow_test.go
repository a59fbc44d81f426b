package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/config/configopaque"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/store"
)

// Slack slow: the fault tests below put slowSlack in front of the fake
// Slack of slack_test.go. While slow, every request is held until the test
// lets it go (recover), and the tests do so only after the notifier's HTTP
// timeout (cfg.Timeout, shortened to 100ms) has given up on the first one:
// Slack answered too late. Ordering comes from channels (the held requests
// and their release), not from measured durations.

// slowMode is what a slow Slack does with a request it holds.
type slowMode int

const (
	// answerLate carries the request out at once (a chat.postMessage is
	// posted) and answers only when released: the client timed out on a
	// request that took effect.
	answerLate slowMode = iota
	// neverDone holds the request and then answers 503 without carrying it
	// out: the client timed out on a request that had no effect.
	neverDone
)

type slowSlack struct {
	*httptest.Server
	srv *slackServer

	mu      sync.Mutex
	slow    bool
	mode    slowMode
	release chan struct{} // closed by recover: held requests are answered

	held     chan string  // the path of every request held, in arrival order
	answered atomic.Int32 // held requests answered so far

	// historyByID answers conversations.history for a channel name (not an
	// id) with channel_not_found, as Slack's API documents that method takes
	// a conversation id. The fake Slack itself accepts names.
	historyByID atomic.Bool
}

func newSlowSlack(t *testing.T, srv *slackServer) *slowSlack {
	t.Helper()
	s := &slowSlack{srv: srv, release: make(chan struct{}), held: make(chan string, 1024)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.Close)
	// Cleanups run last-in first-out: held handlers are let go before Close
	// waits for them.
	t.Cleanup(s.recover)
	return s
}

func (s *slowSlack) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	slow, mode, release := s.slow, s.mode, s.release
	s.mu.Unlock()
	if !slow {
		s.carryOut(w, r)
		return
	}
	rec := httptest.NewRecorder()
	if mode == answerLate {
		s.carryOut(rec, r)
	}
	s.held <- r.URL.Path
	<-release
	if mode == neverDone {
		w.WriteHeader(http.StatusServiceUnavailable)
	} else {
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}
	s.answered.Add(1)
}

func (s *slowSlack) carryOut(w http.ResponseWriter, r *http.Request) {
	if s.historyByID.Load() && r.URL.Path == "/api/conversations.history" {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		if ch := form.Get("channel") + r.URL.Query().Get("channel"); strings.HasPrefix(ch, "#") {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"ok":false,"error":"channel_not_found"}`)
			return
		}
	}
	s.srv.handle(w, r)
}

// goSlow makes Slack slow until recover.
func (s *slowSlack) goSlow(mode slowMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.slow {
		s.slow, s.mode, s.release = true, mode, make(chan struct{})
	}
}

// recover answers every held request and makes Slack prompt again.
func (s *slowSlack) recover() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slow {
		s.slow = false
		close(s.release)
	}
}

// nextHeld waits for the next request Slack holds and returns its path.
func (s *slowSlack) nextHeld(t *testing.T) string {
	t.Helper()
	select {
	case p := <-s.held:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a request to reach the slow Slack")
		return ""
	}
}

// slowConfig is botConfig against the slow Slack, with a short HTTP
// timeout and retry cap so that the test takes well under a second.
func slowConfig(t *testing.T, srv *slackServer, slow *slowSlack) config.Slack {
	t.Helper()
	cfg := botConfig(t, srv, filepath.Join(t.TempDir(), "outbox.jsonl"))
	cfg.APIURL = slow.URL + "/api/"
	cfg.Timeout = 100 * time.Millisecond
	cfg.MaxBackoff = 50 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// notifyReturnsWhileHeld calls Notify while the slow Slack holds a request
// the test has not released, and fails if Notify does not return: a Notify
// that waited for Slack would wait for ever here, since only the test
// releases the request.
func notifyReturnsWhileHeld(t *testing.T, n *SlackNotifier, slow *slowSlack, ev *store.Evidence) {
	t.Helper()
	returned := make(chan error, 1)
	go func() { returned <- n.Notify(context.Background(), ev) }()
	select {
	case err := <-returned:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Notify(%s) blocked on a Slack request that is still held", ev.LeakID)
	}
	if a := slow.answered.Load(); a != 0 {
		t.Fatalf("%d held requests were answered before Notify returned; the test is not measuring what it claims", a)
	}
}

// leakOf is the leak id a top-level message carries in its metadata.
func leakOf(t *testing.T, p slackPost) string {
	t.Helper()
	var md struct {
		EventPayload map[string]any `json:"event_payload"`
	}
	if err := json.Unmarshal([]byte(p.Metadata), &md); err != nil {
		t.Fatalf("top-level message without metadata: %+v", p)
	}
	id, _ := md.EventPayload["leak_id"].(string)
	return id
}

// leakIDs counts the top-level messages per leak id.
func leakIDs(t *testing.T, srv *slackServer) map[string]int {
	t.Helper()
	ids := map[string]int{}
	for _, p := range srv.topLevel() {
		ids[leakOf(t, p)]++
	}
	return ids
}

func assertOnceEach(t *testing.T, srv *slackServer, want ...string) {
	t.Helper()
	ids := leakIDs(t, srv)
	for _, id := range want {
		if ids[id] != 1 {
			t.Errorf("finding %s has %d top-level messages, want exactly 1 (all: %v)", id, ids[id], ids)
		}
	}
	if len(ids) != len(want) {
		t.Errorf("top-level messages for %v, want only %v", ids, want)
	}
}

func TestSlackSlowAnswerNeverBlocksNotifyAndPostsOncePerFinding(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode slowMode
	}{
		// The dangerous case: Slack posted the message but the answer came
		// after the client's timeout. A blind retry would post it again.
		{"posted but answered after the timeout", answerLate},
		// Slack never carried the request out: the retry must post it.
		{"never carried out", neverDone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newSlackServer(t)
			slow := newSlowSlack(t, srv)
			cfg := slowConfig(t, srv, slow)
			n, res := startSlack(t, cfg)
			defer closeSlack(t, n)

			slow.goSlow(tc.mode)
			notify(t, n, leak("leak1", "00000000000000000000000000000001", "acme", "globex"))
			if p := slow.nextHeld(t); p != "/api/chat.postMessage" {
				t.Fatalf("first request %s, want the post", p)
			}
			// Slack holds the post; a second finding is queued all the same.
			notifyReturnsWhileHeld(t, n, slow, leak("leak2", "00000000000000000000000000000002", "acme", "umbrella"))

			// The post timed out; the retry must look for it in the channel
			// before posting again, and that look is slow too.
			if p := slow.nextHeld(t); p != "/api/conversations.history" {
				t.Fatalf("the retry after a timed-out post sent %s; it must check the channel history first", p)
			}
			waitFor(t, "retries while slow", func() bool { return res.count(ResultRetried) >= 2 })
			if got := n.Pending(); got != 2 {
				t.Fatalf("Pending() = %d while Slack is slow, want both findings", got)
			}
			if d := res.count(ResultDelivered); d != 0 {
				t.Fatalf("%d deliveries reported while every answer timed out", d)
			}
			wantPosts := 0
			if tc.mode == answerLate {
				wantPosts = 1 // Slack has leak1, the notifier does not know yet
			}
			if got := len(srv.topLevel()); got != wantPosts {
				t.Fatalf("%d top-level messages while slow, want %d (only the first finding is ever attempted)", got, wantPosts)
			}

			slow.recover()
			waitFor(t, "delivery after recovery", func() bool { return res.count(ResultDelivered) == 2 })
			if got := n.Pending(); got != 0 {
				t.Fatalf("Pending() = %d after delivery", got)
			}
			assertOnceEach(t, srv, "leak1", "leak2")
			top := srv.topLevel()
			if len(top) == 2 && (leakOf(t, top[0]) != "leak1" || leakOf(t, top[1]) != "leak2") {
				t.Errorf("findings delivered out of order: %s, %s", leakOf(t, top[0]), leakOf(t, top[1]))
			}

			// The thread the notifier remembers is the message Slack has: a
			// later version replies under it.
			up := leak("leak1", "00000000000000000000000000000001", "acme", "globex")
			up.Version, up.Tenants = 2, []string{"acme", "globex", "initech"}
			notify(t, n, up)
			waitFor(t, "thread reply", func() bool { return res.count(ResultDelivered) == 3 })
			posts, _, _ := srv.snapshot()
			last := posts[len(posts)-1]
			if last.ThreadTS != top[0].TS {
				t.Fatalf("update replied in %q, want the finding's message %q", last.ThreadTS, top[0].TS)
			}
			assertOnceEach(t, srv, "leak1", "leak2")
		})
	}
}

func TestSlackSlowBacklogIsKeptAndDeliveredOnceEach(t *testing.T) {
	srv := newSlackServer(t)
	slow := newSlowSlack(t, srv)
	cfg := slowConfig(t, srv, slow)
	n, res := startSlack(t, cfg)
	defer closeSlack(t, n)

	const findings = 25
	evs := make([]*store.Evidence, findings)
	ids := make([]string, findings)
	for i := range evs {
		// A different tenant pair each, so that none is grouped into another's message.
		ids[i] = fmt.Sprintf("leak%02d", i)
		evs[i] = leak(ids[i], fmt.Sprintf("%032x", i+1), "acme", fmt.Sprintf("tenant-%02d", i))
	}
	slow.goSlow(answerLate)
	notify(t, n, evs[0])
	if p := slow.nextHeld(t); p != "/api/chat.postMessage" {
		t.Fatalf("first request %s, want the post", p)
	}
	for i, ev := range evs[1:] {
		notifyReturnsWhileHeld(t, n, slow, ev)
		if got := n.Pending(); got != i+2 {
			t.Fatalf("Pending() = %d after %d findings while Slack is slow", got, i+2)
		}
	}
	waitFor(t, "retries while slow", func() bool { return res.count(ResultRetried) >= 3 })
	if got := n.Pending(); got != findings {
		t.Fatalf("Pending() = %d while Slack is slow, want the whole backlog of %d", got, findings)
	}
	if got := len(srv.topLevel()); got != 1 {
		t.Fatalf("%d top-level messages while slow: only the first finding may be attempted (in order)", got)
	}

	slow.recover()
	waitFor(t, "the backlog delivered", func() bool { return res.count(ResultDelivered) == findings })
	if got := n.Pending(); got != 0 {
		t.Fatalf("Pending() = %d after recovery", got)
	}
	assertOnceEach(t, srv, ids...)
	for i, p := range srv.topLevel() {
		if got := leakOf(t, p); got != ids[i] {
			t.Fatalf("message %d is %s, want %s: the backlog must go out in order", i, got, ids[i])
		}
	}
	if f := res.count(ResultFailed); f != 0 {
		t.Fatalf("%d alerts dropped", f)
	}
}

// The collector restarts while Slack is slow: what was pending, including
// a post Slack made but never confirmed, is delivered once by the next run.
func TestSlackSlowRestartKeepsTheBacklogAndPostsOnce(t *testing.T) {
	srv := newSlackServer(t)
	slow := newSlowSlack(t, srv)
	cfg := slowConfig(t, srv, slow)
	n, res := startSlack(t, cfg)

	slow.goSlow(answerLate)
	notify(t, n, leak("leak1", "00000000000000000000000000000001", "acme", "globex"))
	if p := slow.nextHeld(t); p != "/api/chat.postMessage" {
		t.Fatalf("first request %s, want the post", p)
	}
	notifyReturnsWhileHeld(t, n, slow, leak("leak2", "00000000000000000000000000000002", "acme", "umbrella"))
	waitFor(t, "a retry", func() bool { return res.count(ResultRetried) >= 1 })
	// Close waits at most for the call in flight, which the timeout bounds.
	closeSlack(t, n)
	if d := res.count(ResultDelivered); d != 0 {
		t.Fatalf("%d deliveries reported while every answer timed out", d)
	}

	slow.recover()
	n2, res2 := startSlack(t, cfg)
	defer closeSlack(t, n2)
	waitFor(t, "delivery by the next run", func() bool { return res2.count(ResultDelivered) == 2 })
	assertOnceEach(t, srv, "leak1", "leak2")
}

// Webhooks have no history to look in, so a webhook post that Slack made
// but answered after the timeout is posted again by the retry, once per
// timed-out attempt while Slack stays slow. This test pins that behaviour
// (at least once, never lost, but not exactly once): there is no API to
// check whether an incoming webhook message went out.
func TestSlackSlowWebhookAnsweredLateIsPostedAgain(t *testing.T) {
	srv := newSlackServer(t)
	slow := newSlowSlack(t, srv)
	cfg := slowConfig(t, srv, slow)
	cfg.Token, cfg.Channel, cfg.APIURL = "", "", ""
	cfg.WebhookURL = configopaque.String(slow.URL + "/webhook")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, res := startSlack(t, cfg)
	defer closeSlack(t, n)

	slow.goSlow(answerLate)
	notify(t, n, leak("leak1", "00000000000000000000000000000001", "acme", "globex"))
	if p := slow.nextHeld(t); p != "/webhook" {
		t.Fatalf("first request %s, want the webhook", p)
	}
	notifyReturnsWhileHeld(t, n, slow, leak("leak2", "00000000000000000000000000000002", "acme", "umbrella"))
	if p := slow.nextHeld(t); p != "/webhook" {
		t.Fatalf("the retry sent %s", p)
	}
	if got := n.Pending(); got != 2 {
		t.Fatalf("Pending() = %d while Slack is slow", got)
	}
	slow.recover()
	waitFor(t, "delivery after recovery", func() bool { return res.count(ResultDelivered) == 2 })
	_, _, hooks := srv.snapshot()
	perLeak := map[string]int{}
	for _, h := range hooks {
		for _, id := range []string{"leak1", "leak2"} {
			if strings.Contains(h, id) {
				perLeak[id]++
			}
		}
	}
	if perLeak["leak2"] != 1 {
		t.Fatalf("leak2 (never timed out) posted %d times", perLeak["leak2"])
	}
	// Current behaviour: one message per attempt that reached Slack.
	if perLeak["leak1"] < 2 {
		t.Fatalf("leak1 posted %d times; webhooks cannot check for a late-answered post, so at least 2 were expected "+
			"(if this now holds at 1, the duplicate is fixed: update this test)", perLeak["leak1"])
	}
}

// The lookup that prevents a second post needs the channel's id, which the
// notifier learns from Slack's answer to its first post. When the very
// first post of an outbox times out and the channel is configured by name
// (as in the README: channel: "#tenant-leaks"), conversations.history is
// asked for "#name", which Slack refuses with channel_not_found; the
// notifier takes that like a missing scope and posts again. With a channel
// id configured the lookup works. This test pins both behaviours; the name
// case is a known duplicate (reported with the commit that added it).
func TestSlackSlowFirstPostLookupNeedsAChannelID(t *testing.T) {
	for _, tc := range []struct {
		channel string
		want    int // top-level messages for the one finding
	}{
		{"C0LEAKS", 1},
		{"#leaks", 2}, // duplicate: history cannot be read by channel name
	} {
		t.Run(tc.channel, func(t *testing.T) {
			srv := newSlackServer(t)
			slow := newSlowSlack(t, srv)
			slow.historyByID.Store(true)
			cfg := slowConfig(t, srv, slow)
			cfg.Channel = tc.channel
			n, res := startSlack(t, cfg)
			defer closeSlack(t, n)

			slow.goSlow(answerLate)
			notify(t, n, leak("leak1", "00000000000000000000000000000001", "acme", "globex"))
			if p := slow.nextHeld(t); p != "/api/chat.postMessage" {
				t.Fatalf("first request %s, want the post", p)
			}
			if p := slow.nextHeld(t); p != "/api/conversations.history" {
				t.Fatalf("the retry sent %s; it must check the channel history first", p)
			}
			slow.recover()
			waitFor(t, "delivery after recovery", func() bool { return res.count(ResultDelivered) == 1 })
			if got := leakIDs(t, srv)["leak1"]; got != tc.want {
				t.Fatalf("channel %q: %d top-level messages for one finding, this test pins %d", tc.channel, got, tc.want)
			}
		})
	}
}
