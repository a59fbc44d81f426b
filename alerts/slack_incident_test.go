package alerts

import (
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/config/configopaque"
	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/alerts/slacktest"
	"github.com/tenantguard/tenantguard/store"
)

// unknownEdge is a finding whose crossing edge is not known yet: several
// tenants, no edge, high.
func unknownEdge(id, trace string, tenants ...string) *store.Evidence {
	ev := leak(id, trace, tenants...)
	ev.Severity, ev.CrossingEdges = "high", nil
	ev.Reason = "the trace carries several tenants; the crossing edge is not known yet"
	return ev
}

// toLedger is ev's next version: the edge is now known and reached
// ledger-svc's data, so it is critical.
func toLedger(ev *store.Evidence) *store.Evidence {
	up := *ev
	up.Version++
	up.Severity = "critical"
	up.Reason = "ledger-svc `INSERT entries` read or wrote globex's data"
	up.CrossingEdges = []store.CrossingEdge{{
		From: store.EdgeEnd{SpanID: "p1", Service: "payments-svc", Span: "POST /pay", Tenant: "acme"},
		To:   store.EdgeEnd{SpanID: "l1", Service: "ledger-svc", Span: "POST /entries", Tenant: "globex"},
	}}
	up.Spans = []store.Span{
		{SpanID: "l1", Service: "ledger-svc", Name: "POST /entries", Tenant: "globex"},
		{SpanID: "l2", ParentID: "l1", Service: "ledger-svc", Name: "INSERT entries", Tenant: "globex", Data: true},
	}
	return &up
}

func next(ev *store.Evidence, status, reason string) *store.Evidence {
	up := *ev
	up.Version++
	up.Status, up.Reason = status, reason
	return &up
}

// messageTS finds the top-level message of a finding.
func messageTS(t *testing.T, srv *slacktest.Server, leakID string) string {
	t.Helper()
	for _, p := range srv.TopLevel() {
		if leakOf(t, p) == leakID {
			return p.TS
		}
	}
	t.Fatalf("no top-level message for %s", leakID)
	return ""
}

// lastUpdateOf waits for an edit of the message ts whose blocks contain
// want, and returns it.
func lastUpdateOf(t *testing.T, srv *slacktest.Server, ts, want string) slacktest.Post {
	t.Helper()
	var got slacktest.Post
	waitFor(t, "an edit of "+ts+" saying "+want, func() bool {
		_, updates, _ := srv.Snapshot()
		for _, u := range updates {
			if u.TS == ts && strings.Contains(u.Blocks, want) {
				got = u
				return true
			}
		}
		return false
	})
	return got
}

func waitReply(t *testing.T, srv *slacktest.Server, ts, want string) slacktest.Post {
	t.Helper()
	var got slacktest.Post
	waitFor(t, "a reply under "+ts+" saying "+want, func() bool {
		for _, p := range srv.RepliesIn(ts) {
			if strings.Contains(p.Text, want) {
				got = p
				return true
			}
		}
		return false
	})
	return got
}

// Bot mode: each transition of a finding shows in Slack. Findings whose
// edge is unknown stand alone; findings with the same known edge group;
// an escalation edits the top-level message and says in the thread what
// changed; reclassification, allow and close edit the message so that the
// channel shows the current state.
func TestSlackTracksEachIncident(t *testing.T) {
	srv := slacktest.NewServer(t)
	n, res := startSlack(t, botConfig(t, srv, filepath.Join(t.TempDir(), "outbox.jsonl")))
	defer closeSlack(t, n)

	// new: two findings with the same tenants and no known edge are two incidents.
	a := unknownEdge("leak1", "00000000000000000000000000000001", "acme", "globex")
	b := unknownEdge("leak2", "00000000000000000000000000000002", "acme", "globex")
	notify(t, n, a)
	notify(t, n, b)
	waitFor(t, "two messages", func() bool { return len(srv.TopLevel()) == 2 })
	if g := res.count(ResultGrouped); g != 0 {
		t.Fatalf("findings with no known edge were grouped (%d)", g)
	}
	aTS, bTS := messageTS(t, srv, "leak1"), messageTS(t, srv, "leak2")

	// grouped: the same rule, tenants and known edge within the window.
	c := leak("leak3", "00000000000000000000000000000003", "acme", "initech")
	d := leak("leak4", "00000000000000000000000000000004", "acme", "initech")
	d.Severity = "high"
	notify(t, n, c)
	waitFor(t, "leak3's message", func() bool { return len(srv.TopLevel()) == 3 })
	notify(t, n, d)
	waitFor(t, "leak4 grouped", func() bool { return res.count(ResultGrouped) == 1 })
	cTS := messageTS(t, srv, "leak3")
	lastUpdateOf(t, srv, cTS, "×2")
	waitReply(t, srv, cTS, "leak4")

	// escalation: leak1's edge becomes known and reaches ledger-svc's data.
	notify(t, n, toLedger(a))
	up := lastUpdateOf(t, srv, aTS, "critical")
	for _, want := range []string{"payments-svc", "ledger-svc", ":rotating_light:"} {
		if !strings.Contains(up.Blocks, want) {
			t.Errorf("the escalated message lacks %q: %s", want, up.Blocks)
		}
	}
	reply := waitReply(t, srv, aTS, "now critical")
	if !strings.Contains(reply.Text, "now critical: reached ledger-svc's data (`INSERT entries`, tenant globex)") {
		t.Errorf("the escalation reply does not say what changed: %q", reply.Text)
	}
	if msg := toLedger(a).Message(store.Style{Text: esc, Code: code}); !strings.Contains(reply.Text, msg) {
		t.Errorf("the escalation reply lacks the finding's message %q: %q", msg, reply.Text)
	}

	// A grouped finding that escalates raises its incident's message.
	dUp := *d
	dUp.Version, dUp.Severity, dUp.Reason = 2, "critical", "inventory-svc `SELECT stock` read or wrote initech's data"
	notify(t, n, &dUp)
	lastUpdateOf(t, srv, cTS, "leak4")
	if r := waitReply(t, srv, cTS, "now critical"); !strings.Contains(r.Text, "`leak4`") {
		t.Errorf("a grouped finding's reply must name it: %q", r.Text)
	}

	// reclassified: later spans showed leak2's crossing was refused.
	notify(t, n, next(b, "reclassified", "every crossing in this trace was refused; see its blocked_attempt finding"))
	lastUpdateOf(t, srv, bTS, "Reclassified")
	waitReply(t, srv, bTS, "Reclassified: every crossing in this trace was refused")

	// allowed: leak3 is withdrawn by an allow rule.
	allowed := next(c, "allowed", "")
	allowed.AllowedBy = "allow.services: admin-console"
	notify(t, n, allowed)
	if u := lastUpdateOf(t, srv, cTS, "Withdrawn"); !strings.Contains(u.Blocks, "admin-console") {
		t.Errorf("the withdrawn message does not name the allow rule: %s", u.Blocks)
	}
	waitReply(t, srv, cTS, "Withdrawn")

	// closed: leak1's trace went idle; its message says so, nothing is posted.
	before, _, _ := srv.Snapshot()
	closed := next(toLedger(a), "closed", "")
	closed.Version++
	notify(t, n, closed)
	if u := lastUpdateOf(t, srv, aTS, "Closed"); !strings.Contains(u.Blocks, "critical") {
		t.Errorf("the closing edit must keep the severity: %s", u.Blocks)
	}
	waitFor(t, "all delivered", func() bool { return n.Pending() == 0 })
	if after, _, _ := srv.Snapshot(); len(after) != len(before) {
		t.Fatalf("closing posted %d message(s)", len(after)-len(before))
	}
	if got := len(srv.TopLevel()); got != 3 {
		t.Fatalf("%d top-level messages, want 3 (leak1, leak2, leak3 with leak4)", got)
	}
	if f := res.count(ResultFailed); f != 0 {
		t.Fatalf("%d alerts failed", f)
	}
}

// An escalation queued before a crash is applied by the next run: the edit
// is in the outbox until Slack has it, and applying it again is harmless.
func TestSlackEditIsReappliedAfterRestart(t *testing.T) {
	srv := slacktest.NewServer(t)
	cfg := botConfig(t, srv, filepath.Join(t.TempDir(), "outbox.jsonl"))
	a := unknownEdge("leak1", "00000000000000000000000000000001", "acme", "globex")

	n1, res1 := startSlack(t, cfg)
	notify(t, n1, a)
	waitFor(t, "the message", func() bool { return res1.count(ResultDelivered) == 1 })
	closeSlack(t, n1)
	ts := messageTS(t, srv, "leak1")

	// The escalation is queued, and the process dies before sending it.
	n2, err := NewSlack(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	notify(t, n2, toLedger(a))
	_ = n2.ob.close()

	n3, res3 := startSlack(t, cfg)
	lastUpdateOf(t, srv, ts, "critical")
	waitReply(t, srv, ts, "now critical")
	waitFor(t, "delivered", func() bool { return n3.Pending() == 0 })
	closeSlack(t, n3)
	if res3.count(ResultDelivered) != 1 {
		t.Fatalf("the restarted run delivered %v", res3.got)
	}

	// The edit took and was recorded: a fourth run has nothing to do, and
	// the same version replayed is not news.
	n4, res4 := startSlack(t, cfg)
	notify(t, n4, toLedger(a))
	if n4.Pending() != 0 || res4.count(ResultSkipped) != 1 {
		t.Fatalf("the applied escalation was queued again: pending %d, results %v", n4.Pending(), res4.got)
	}
	closeSlack(t, n4)
	if got := len(srv.RepliesIn(ts)); got != 1 {
		t.Fatalf("%d escalation replies, want 1", got)
	}
}

// Webhook mode cannot edit or thread: a new finding is a message, an
// escalation to critical is a new message saying what changed, and grouped
// findings, reclassification, allow, close and lesser escalations are
// counted as skipped.
func TestSlackWebhookTracksEachIncident(t *testing.T) {
	srv := slacktest.NewServer(t)
	cfg := botConfig(t, srv, filepath.Join(t.TempDir(), "outbox.jsonl"))
	cfg.Token, cfg.Channel, cfg.APIURL = "", "", ""
	cfg.WebhookURL = configopaque.String(srv.URL + "/webhook")
	cfg.MinSeverity = "medium"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, res := startSlack(t, cfg)
	defer closeSlack(t, n)
	hooks := func() []string { _, _, h := srv.Snapshot(); return h }

	a := unknownEdge("leak1", "00000000000000000000000000000001", "acme", "globex")
	b := unknownEdge("leak2", "00000000000000000000000000000002", "acme", "globex")
	c := leak("leak3", "00000000000000000000000000000003", "acme", "initech")
	d := leak("leak4", "00000000000000000000000000000004", "acme", "initech")
	m := unknownEdge("leak5", "00000000000000000000000000000005", "acme", "umbrella")
	m.Severity = "medium"
	for _, ev := range []*store.Evidence{a, b, c, d, m} {
		notify(t, n, ev)
	}
	waitFor(t, "new findings", func() bool { return res.count(ResultDelivered) == 4 && res.count(ResultGrouped) == 1 })

	notify(t, n, toLedger(a)) // high → critical: a message
	mHigh := *m
	mHigh.Version, mHigh.Severity = 2, "high" // medium → high: not a message
	notify(t, n, &mHigh)
	notify(t, n, next(b, "reclassified", "every crossing in this trace was refused; see its blocked_attempt finding"))
	allowed := next(c, "allowed", "")
	allowed.AllowedBy = "allow.services: admin-console"
	notify(t, n, allowed)
	notify(t, n, next(toLedger(a), "closed", ""))
	waitFor(t, "every alert handled", func() bool { return n.Pending() == 0 && res.count(ResultDelivered) == 5 })
	if s := res.count(ResultSkipped); s != 4 {
		t.Fatalf("%d skipped, want 4 (medium→high, reclassified, allowed, closed): %v", s, res.got)
	}
	h := hooks()
	if len(h) != 5 {
		t.Fatalf("%d webhook messages, want 5", len(h))
	}
	last := h[4]
	if !strings.Contains(last, "now critical: reached ledger-svc's data") || !strings.Contains(last, "leak1") {
		t.Fatalf("the escalation message does not say what changed: %s", last)
	}
}
