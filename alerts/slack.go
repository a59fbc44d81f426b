package alerts

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

// Delivery results, as counted in tenantguard_alert_deliveries_total.
const (
	ResultDelivered = "delivered" // a message or thread reply reached Slack
	ResultRetried   = "retried"   // Slack refused for now (429, 5xx, network); will retry
	ResultFailed    = "failed"    // Slack refused this message for good; dropped with an error log
	ResultGrouped   = "grouped"   // collapsed into an earlier message with the same crossing
	ResultSkipped   = "skipped"   // not worth a message (below min_severity, no change, no thread in webhook mode)
)

// webhookChannel stands for the channel of a message sent by webhook,
// which Slack does not name.
const webhookChannel = "webhook"

// slackMetadataType marks our messages so that, after a crash between
// posting and recording, the notifier can find what it already posted.
const slackMetadataType = "tenantguard_finding"

// SlackOption adjusts a SlackNotifier.
type SlackOption func(*SlackNotifier)

// WithDeliveryObserver is told the result of every delivery attempt.
func WithDeliveryObserver(f func(result string)) SlackOption {
	return func(n *SlackNotifier) { n.observe = f }
}

// WithHTTPClient sets the HTTP client (proxies, tests).
func WithHTTPClient(c *http.Client) SlackOption {
	return func(n *SlackNotifier) { n.http = c }
}

// WithClock sets the clock, for tests of grouping windows.
func WithClock(now func() time.Time) SlackOption {
	return func(n *SlackNotifier) { n.now = now }
}

// maxInFlight bounds the Slack calls in progress at once: enough that one
// slow or failing finding never holds the others, few enough to stay
// inside Slack's per-channel rate limits.
const maxInFlight = 4

// maxUnconfirmedPosts bounds the copies of one message a slow Slack can
// cause: a post whose answer never came (timed out, connection cut) may
// have been made. The bot first looks for it in the channel history; when
// it cannot look (webhook mode, or no channels:history), it posts at most
// this many times in all and then gives up with an error log.
const maxUnconfirmedPosts = 2

// SlackNotifier posts one message per incident to Slack, threads later
// versions under it and edits it so that it shows the finding's current
// state. Notify only writes the alert to a durable outbox and returns; a
// sender delivers up to maxInFlight findings at once, each finding's
// versions in order, and retries each alert on its own capped, jittered
// exponential backoff, so a slow or dead Slack never slows the evidence
// worker, one failing finding never holds the others, and alerts survive
// a restart.
type SlackNotifier struct {
	cfg     config.Slack
	logger  *zap.Logger
	http    *http.Client
	api     *slack.Client
	now     func() time.Time
	observe func(string)

	ob *outbox

	mu      sync.Mutex
	pending []*alert // undelivered, in Notify order
	// posting counts, per alert seq, posts whose outcome is unknown.
	posting map[uint64]int
	retry   map[uint64]*retryState
	// busy holds the findings (leak ids) with an alert in flight, and
	// busySig the signatures of new alerts in flight, so that two findings
	// of one incident do not both open a message.
	busy     map[string]bool
	busySig  map[string]bool
	inFlight int
	// pausedUntil is set by a 429: Slack's rate limit is per app, so every
	// delivery waits for its Retry-After.
	pausedUntil time.Time
	threads     map[string]thread
	groups      map[string]*group
	nextSeq     uint64
	// leaks remembers, per open finding, what was last announced, so that
	// only material changes become messages.
	leaks map[string]*leakMemo

	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	workers sync.WaitGroup
}

// retryState is one alert's retry schedule.
type retryState struct {
	attempts  int
	notBefore time.Time
}

type leakMemo struct {
	tenants, edges int
	severity       string
	skipped        bool
}

// NewSlack opens the outbox and returns a notifier; Start begins delivery.
func NewSlack(cfg config.Slack, logger *zap.Logger, opts ...SlackOption) (*SlackNotifier, error) {
	if !cfg.Enabled() {
		return nil, errors.New("alerts.slack: neither token nor webhook_url is set")
	}
	n := &SlackNotifier{
		cfg: cfg, logger: logger, http: &http.Client{Timeout: cfg.Timeout}, now: time.Now,
		observe: func(string) {}, leaks: map[string]*leakMemo{},
		retry: map[uint64]*retryState{}, busy: map[string]bool{}, busySig: map[string]bool{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	for _, o := range opts {
		o(n)
	}
	ob, st, err := openOutbox(cfg.OutboxPath, cfg.GroupWindow, n.now())
	if err != nil {
		return nil, err
	}
	n.ob = ob
	n.pending, n.posting, n.threads, n.groups, n.nextSeq = st.pending, st.posting, st.threads, st.groups, st.nextSeq
	if cfg.Token != "" {
		apiOpts := []slack.Option{slack.OptionHTTPClient(n.http)}
		if cfg.APIURL != "" {
			u := cfg.APIURL
			if !strings.HasSuffix(u, "/") {
				u += "/"
			}
			apiOpts = append(apiOpts, slack.OptionAPIURL(u))
		}
		n.api = slack.New(string(cfg.Token), apiOpts...)
	}
	return n, nil
}

// Name implements Notifier.
func (*SlackNotifier) Name() string { return "slack" }

// Mode says how messages are delivered: "bot" or "webhook".
func (n *SlackNotifier) Mode() string {
	if n.api != nil {
		return "bot"
	}
	return "webhook"
}

// Pending is the number of alerts not yet delivered.
func (n *SlackNotifier) Pending() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.pending)
}

// Start begins delivering, including alerts left pending by a previous run.
func (n *SlackNotifier) Start() {
	go n.run()
	n.poke()
}

// Close stops delivery; undelivered alerts stay in the outbox for the next
// start. It waits for the Slack calls in flight up to ctx's deadline.
func (n *SlackNotifier) Close(ctx context.Context) error {
	close(n.stop)
	select {
	case <-n.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return n.ob.close()
}

func (n *SlackNotifier) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Notify implements Notifier: it decides whether this version deserves a
// message and, if so, makes it durable for the sender.
func (n *SlackNotifier) Notify(_ context.Context, ev *store.Evidence) error {
	n.mu.Lock()
	kind := n.classify(ev)
	if kind == "" {
		n.mu.Unlock()
		n.observe(ResultSkipped)
		return nil
	}
	a := n.newAlert(ev, kind)
	a.Seq, a.At = n.nextSeq, n.now()
	n.nextSeq++
	// On disk before the sender can see it: its done record must follow
	// its alert record, or a restart would deliver it again.
	err := n.ob.append(outboxRecord{Type: "alert", Seq: a.Seq, Alert: a})
	n.pending = append(n.pending, a)
	n.mu.Unlock()
	n.poke()
	// The alert is queued in memory either way; a failed write only means
	// it would not survive a restart, which the caller logs.
	if err != nil {
		return fmt.Errorf("slack alert for %s will not survive a restart: %w", ev.LeakID, err)
	}
	return nil
}

// classify returns the alert kind for a finding version, or "" when it
// should not produce a message. It holds n.mu.
func (n *SlackNotifier) classify(ev *store.Evidence) string {
	memo, known := n.leaks[ev.LeakID]
	if th, posted := n.threads[ev.LeakID]; posted && !known {
		// Announced by a previous run: compare with what it announced.
		sev := th.Severity
		if sev == "" {
			sev = ev.Severity // an outbox from before severities were kept
		}
		memo, known = &leakMemo{tenants: th.Tenants, edges: th.Edges, severity: sev}, true
		n.leaks[ev.LeakID] = memo
	}
	if ev.Status != string(detector.StatusOpen) {
		defer delete(n.leaks, ev.LeakID) // the finding's last version
	}
	paged := detector.Severity(ev.Severity).Rank() >= detector.Severity(n.cfg.MinSeverity).Rank()
	switch {
	case !known:
		if ev.Status == string(detector.StatusAllowed) || ev.Status == string(detector.StatusReclassified) {
			return ""
		}
		n.leaks[ev.LeakID] = &leakMemo{tenants: len(ev.Tenants), edges: len(ev.CrossingEdges), severity: ev.Severity, skipped: !paged}
		if !paged {
			return ""
		}
		return "new"
	case memo.skipped:
		if !paged || ev.Status == string(detector.StatusAllowed) || ev.Status == string(detector.StatusReclassified) {
			return ""
		}
		// Below min_severity until now: this is its first message.
		*memo = leakMemo{tenants: len(ev.Tenants), edges: len(ev.CrossingEdges), severity: ev.Severity}
		return "new"
	}
	grew := len(ev.Tenants) > memo.tenants || len(ev.CrossingEdges) > memo.edges
	escalated := detector.Severity(ev.Severity).Rank() > detector.Severity(memo.severity).Rank()
	memo.tenants, memo.edges = max(memo.tenants, len(ev.Tenants)), max(memo.edges, len(ev.CrossingEdges))
	if escalated {
		memo.severity = ev.Severity
	}
	switch {
	case ev.Status == string(detector.StatusAllowed):
		return "withdrawn"
	case ev.Status == string(detector.StatusReclassified):
		return "reclassified"
	case escalated:
		return "escalated"
	case grew:
		return "update"
	case ev.Status == string(detector.StatusClosed):
		return "closed"
	default:
		return ""
	}
}

func (n *SlackNotifier) run() {
	defer close(n.done)
	defer n.workers.Wait()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var retry <-chan time.Time
		if wait := n.dispatch(); wait > 0 {
			timer.Reset(wait)
			retry = timer.C
		}
		select {
		case <-n.stop:
			return
		case <-n.wake:
		case <-retry:
		}
		timer.Stop()
	}
}

// dispatch starts a delivery for every alert that may go now: the oldest
// pending alert of its finding, not in flight, past its retry time, while
// fewer than maxInFlight calls are in progress. It returns how long until
// the next retry is due (0: none waiting).
func (n *SlackNotifier) dispatch() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	if now.Before(n.pausedUntil) {
		return n.pausedUntil.Sub(now)
	}
	// Candidates are each finding's oldest pending alert. Alerts never tried
	// go before retries, so failing findings cannot keep the slots from
	// findings that have not had their first attempt.
	var wait time.Duration
	var fresh, retries []*alert
	ahead := map[string]bool{} // findings with an older pending alert
	// unsure holds the incidents whose first message may be in Slack
	// already (a post went unanswered): a finding of the same incident
	// waits to join that message rather than open a second one.
	unsure := map[string]bool{}
	for _, a := range n.pending {
		if a.Kind == "new" && n.posting[a.Seq] > 0 {
			if sig := a.signature(); sig != "" {
				unsure[sig] = true
			}
		}
		if ahead[a.LeakID] {
			continue
		}
		ahead[a.LeakID] = true
		if n.busy[a.LeakID] {
			continue
		}
		r := n.retry[a.Seq]
		switch {
		case r == nil:
			fresh = append(fresh, a)
		case now.Before(r.notBefore):
			if d := r.notBefore.Sub(now); wait == 0 || d < wait {
				wait = d
			}
		default:
			retries = append(retries, a)
		}
	}
	for _, a := range append(fresh, retries...) {
		if n.inFlight >= maxInFlight {
			break // a finishing call pokes the sender
		}
		sig := ""
		if a.Kind == "new" {
			sig = a.signature()
		}
		if sig != "" && (n.busySig[sig] || (unsure[sig] && n.posting[a.Seq] == 0)) {
			continue // the incident's first message is on its way, or may be there
		}
		n.busy[a.LeakID] = true
		if sig != "" {
			n.busySig[sig] = true
		}
		n.inFlight++
		n.workers.Add(1)
		go n.attempt(a, sig)
	}
	return wait
}

// attempt delivers one alert once and schedules what follows.
func (n *SlackNotifier) attempt(a *alert, sig string) {
	defer n.workers.Done()
	defer n.poke()
	result, wait, err := n.deliver(a)
	// Observed once the schedule below is in place, so that whoever sees
	// the result sees its consequences (a 429's pause) too.
	defer n.observe(result)
	n.mu.Lock()
	n.inFlight--
	delete(n.busy, a.LeakID)
	delete(n.busySig, sig)
	if result != ResultRetried {
		for i, p := range n.pending {
			if p == a {
				n.pending = append(n.pending[:i:i], n.pending[i+1:]...)
				break
			}
		}
		delete(n.retry, a.Seq)
		delete(n.posting, a.Seq)
		n.mu.Unlock()
		if result == ResultFailed {
			n.logger.Error("Slack refused the alert for good; it is dropped (the finding is still in the evidence store)",
				zap.String("leak_id", a.LeakID), zap.String("trace_id", a.TraceID), zap.Error(err))
		}
		return
	}
	r := n.retry[a.Seq]
	if r == nil {
		r = &retryState{}
		n.retry[a.Seq] = r
	}
	r.attempts++
	now := time.Now()
	if wait > 0 {
		// Retry-After: Slack's rate limit holds every delivery, not just this one.
		if until := now.Add(wait); until.After(n.pausedUntil) {
			n.pausedUntil = until
		}
	} else {
		wait = n.backoff(r.attempts)
	}
	r.notBefore = now.Add(wait)
	attempts := r.attempts
	n.mu.Unlock()
	n.logger.Warn("Slack delivery failed; will retry", zap.String("leak_id", a.LeakID),
		zap.Int("attempt", attempts), zap.Duration("retry_in", wait), zap.Error(err))
}

// backoff is the wait after an alert's attempt-th failure: initial_backoff
// doubled per earlier failure, capped at max_backoff, of which a random
// half is kept ("equal jitter": the wait lies in [d/2, d]). Jitter keeps
// several collectors from retrying in lockstep, and since the next d is
// twice this one, waits never shrink until the cap.
func (n *SlackNotifier) backoff(attempt int) time.Duration {
	d := min(n.cfg.InitialBackoff, n.cfg.MaxBackoff)
	for i := 1; i < attempt && d < n.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, n.cfg.MaxBackoff)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// callCtx bounds one Slack call by the configured timeout.
func (n *SlackNotifier) callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), n.cfg.Timeout)
}

// deliver sends one alert. It returns the result, a wait the server asked
// for (Retry-After), and the error if any.
func (n *SlackNotifier) deliver(a *alert) (string, time.Duration, error) {
	if n.api == nil {
		return n.deliverWebhook(a)
	}
	return n.deliverBot(a)
}

// beginPost records the intent to post a message for a, or refuses when
// unanswered posts have already reached maxUnconfirmedPosts.
func (n *SlackNotifier) beginPost(a *alert) error {
	n.mu.Lock()
	sent := n.posting[a.Seq]
	if sent < maxUnconfirmedPosts {
		n.posting[a.Seq]++
	}
	n.mu.Unlock()
	if sent >= maxUnconfirmedPosts {
		return fmt.Errorf("%d posts of this alert went unanswered (timed out or cut off) and Slack cannot be asked whether they went out; "+
			"not posting again, so the channel has at most %d copies, possibly none", sent, maxUnconfirmedPosts)
	}
	if err := n.ob.append(outboxRecord{Type: "posting", Seq: a.Seq}); err != nil {
		n.logger.Warn("cannot record the intent to post; a crash now could post this finding twice", zap.Error(err))
	}
	return nil
}

// postFailed takes back the intent when the post certainly had no effect.
func (n *SlackNotifier) postFailed(a *alert, err error) {
	if !notPosted(err) {
		return
	}
	n.mu.Lock()
	if n.posting[a.Seq] > 0 {
		n.posting[a.Seq]--
	}
	n.mu.Unlock()
	_ = n.ob.append(outboxRecord{Type: "refused", Seq: a.Seq})
}

// deliverWebhook posts a new finding, or an escalation to critical, as a
// message of its own: an incoming webhook can neither thread nor edit, so
// the other changes are counted as skipped.
func (n *SlackNotifier) deliverWebhook(a *alert) (string, time.Duration, error) {
	escalation := a.Kind == "escalated" && a.Severity == string(detector.SeverityCritical)
	if a.Kind != "new" && !escalation {
		return n.finish(a, ResultSkipped)
	}
	sig := a.signature()
	n.mu.Lock()
	_, announced := n.threads[a.LeakID]
	g := n.groups[sig]
	if a.Kind == "new" && !announced && sig != "" && g != nil && n.now().Sub(g.At) < n.cfg.GroupWindow {
		g.Count++
		n.mu.Unlock()
		return n.finish(a, ResultGrouped)
	}
	n.mu.Unlock()
	if a.Kind == "new" && announced {
		return n.finish(a, ResultSkipped) // a replayed version
	}
	if err := n.beginPost(a); err != nil {
		return ResultFailed, 0, err
	}
	msg := &slack.WebhookMessage{Text: headlineText(a), Blocks: &slack.Blocks{BlockSet: n.blocks(a, 1)}}
	if escalation {
		msg.Text = escalationText(a)
		msg.Blocks.BlockSet = append([]slack.Block{slack.NewSectionBlock(
			slack.NewTextBlockObject(slack.MarkdownType, "*"+severityIcon[detector.Severity(a.Severity)]+" "+escalationText(a)+"*", false, false), nil, nil)},
			msg.Blocks.BlockSet...)
	}
	ctx, cancel := n.callCtx()
	defer cancel()
	if err := slack.PostWebhookCustomHTTPContext(ctx, string(n.cfg.WebhookURL), n.http, msg); err != nil {
		n.postFailed(a, err)
		return n.classifyErr(err)
	}
	now := n.now()
	n.mu.Lock()
	// Remembered like a bot message (with no thread to reply in), so a
	// restart does not announce the same finding again.
	th := n.threads[a.LeakID]
	th.Channel, th.At, th.Severity = webhookChannel, now, a.Severity
	th.Tenants, th.Edges = max(th.Tenants, len(a.Tenants)), max(th.Edges, len(a.Edges)+a.MoreEdges)
	n.threads[a.LeakID] = th
	recs := []outboxRecord{th.record(a.LeakID)}
	if a.Kind == "new" && sig != "" {
		g := &group{thread: thread{Channel: webhookChannel, At: now, Count: 1, Owner: a.LeakID}, Root: a}
		n.groups[sig] = g
		recs = append(recs, g.record(sig))
	}
	n.mu.Unlock()
	return n.finish(a, ResultDelivered, recs...)
}

func (n *SlackNotifier) deliverBot(a *alert) (string, time.Duration, error) {
	n.mu.Lock()
	th, hasThread := n.threads[a.LeakID]
	sig := a.signature()
	var g *group
	if sig != "" {
		g = n.groups[sig]
	}
	unconfirmed := n.posting[a.Seq]
	n.mu.Unlock()

	if a.Kind != "new" {
		if !hasThread || th.TS == "" {
			// The first message never went out (dropped for good), or went
			// by webhook before a switch to bot mode: nothing to edit or thread under.
			return n.finish(a, ResultSkipped)
		}
		return n.deliverChange(a, th)
	}
	if hasThread {
		return n.finish(a, ResultSkipped) // already announced (a replayed version)
	}
	if unconfirmed > 0 {
		// We may have posted this before a crash or a lost answer: look
		// before posting again.
		ch, ts, err := n.findPosted(a)
		switch {
		case ts != "":
			return n.finishTopLevel(a, ch, ts, sig)
		case err == nil:
			// Not in the channel: the unanswered posts never went out.
			n.mu.Lock()
			n.posting[a.Seq] = 0
			n.mu.Unlock()
		case !missingScope(err):
			return n.classifyErr(err)
		default:
			n.logger.Warn("cannot check Slack for a message posted before a restart or a lost answer (grant channels:history, configure the channel id); posting, which may duplicate it",
				zap.String("leak_id", a.LeakID), zap.Int("unanswered_posts", unconfirmed), zap.Error(err))
		}
	}
	if g != nil && n.now().Sub(g.At) < n.cfg.GroupWindow {
		return n.deliverGrouped(a, g, sig)
	}
	if err := n.beginPost(a); err != nil {
		return ResultFailed, 0, err
	}
	ctx, cancel := n.callCtx()
	defer cancel()
	ch, ts, err := n.api.PostMessageContext(ctx, n.cfg.Channel, slackMessageOptions(n, a)...)
	if err != nil {
		n.postFailed(a, err)
		return n.classifyErr(err)
	}
	return n.finishTopLevel(a, ch, ts, sig)
}

// deliverGrouped threads a finding under the first message of the same
// incident and bumps that message's count.
func (n *SlackNotifier) deliverGrouped(a *alert, g *group, sig string) (string, time.Duration, error) {
	grouped := *a
	grouped.Kind = "grouped"
	ctx, cancel := n.callCtx()
	defer cancel()
	if _, _, err := n.api.PostMessageContext(ctx, g.Channel, slack.MsgOptionText(n.replyText(&grouped), false), slack.MsgOptionTS(g.TS)); err != nil {
		return n.classifyErr(err)
	}
	n.mu.Lock()
	g.Count++
	count, root, owner := g.Count, g.Root, g.owner()
	th := thread{Channel: g.Channel, TS: g.TS, At: n.now(), Tenants: len(a.Tenants), Edges: len(a.Edges) + a.MoreEdges,
		Severity: a.Severity, Owner: owner}
	n.threads[a.LeakID] = th
	recs := []outboxRecord{th.record(a.LeakID), g.record(sig)}
	if ot, ok := n.threads[owner]; ok && ot.TS == g.TS {
		ot.Count = count
		n.threads[owner] = ot
		recs = append(recs, ot.record(owner))
	}
	n.mu.Unlock()
	// The count on the first message is a convenience: a failed update is logged, not retried.
	uctx, ucancel := n.callCtx()
	defer ucancel()
	if _, _, _, err := n.api.UpdateMessageContext(uctx, g.Channel, g.TS,
		slack.MsgOptionText(headlineText(root), false), slack.MsgOptionBlocks(n.blocks(root, count)...)); err != nil {
		n.logger.Warn("could not update the grouped message's count", zap.String("leak_id", root.LeakID), zap.Error(err))
	}
	return n.finish(a, ResultGrouped, recs...)
}

// deliverChange tells a later version of an announced finding. The top-level
// message is edited (chat.update) to show the finding's current state when
// the finding owns it, and for an escalation also when the finding was
// grouped into another's message (the incident is now as severe as its
// worst finding). Every change but closing also posts a thread reply that
// says what changed. chat.update is idempotent: when a restart or a retry
// repeats this alert, the edit is simply applied again.
func (n *SlackNotifier) deliverChange(a *alert, th thread) (string, time.Duration, error) {
	owner := th.Owner
	if owner == "" {
		owner = a.LeakID
	}
	edit := owner == a.LeakID || a.Kind == "escalated"
	if !edit && a.Kind == "closed" {
		return n.finish(a, ResultSkipped) // nothing to show in another finding's message
	}
	if edit {
		n.mu.Lock()
		count := 1
		if ot, ok := n.threads[owner]; ok {
			count = max(ot.Count, 1)
		}
		n.mu.Unlock()
		ctx, cancel := n.callCtx()
		_, _, _, err := n.api.UpdateMessageContext(ctx, th.Channel, th.TS,
			slack.MsgOptionText(headlineText(a), false), slack.MsgOptionBlocks(n.blocks(a, count)...))
		cancel()
		switch {
		case err == nil:
			n.mu.Lock()
			for _, g := range n.groups {
				if g.TS == th.TS && g.Channel == th.Channel {
					g.Root = a // later count updates show this state
				}
			}
			n.mu.Unlock()
		case messageGone(err):
			n.logger.Warn("cannot edit the finding's Slack message (deleted, or not ours); replying in its thread only",
				zap.String("leak_id", a.LeakID), zap.Error(err))
		default:
			return n.classifyErr(err)
		}
	}
	if a.Kind != "closed" {
		text := n.replyText(a)
		if owner != a.LeakID {
			text = fmt.Sprintf("Finding %s (trace %s): %s", code(a.LeakID), code(a.TraceID), text)
		}
		ctx, cancel := n.callCtx()
		_, _, err := n.api.PostMessageContext(ctx, th.Channel, slack.MsgOptionText(text, false), slack.MsgOptionTS(th.TS))
		cancel()
		if err != nil {
			return n.classifyErr(err)
		}
	}
	// Remember how far the thread has been told, for the next start.
	n.mu.Lock()
	th = n.threads[a.LeakID]
	th.Tenants, th.Edges = max(th.Tenants, len(a.Tenants)), max(th.Edges, len(a.Edges)+a.MoreEdges)
	if detector.Severity(a.Severity).Rank() > detector.Severity(th.Severity).Rank() {
		th.Severity = a.Severity
	}
	n.threads[a.LeakID] = th
	rec := th.record(a.LeakID)
	n.mu.Unlock()
	return n.finish(a, ResultDelivered, rec)
}

func (n *SlackNotifier) finishTopLevel(a *alert, ch, ts, sig string) (string, time.Duration, error) {
	now := n.now()
	n.mu.Lock()
	th := thread{Channel: ch, TS: ts, At: now, Tenants: len(a.Tenants), Edges: len(a.Edges) + a.MoreEdges, Severity: a.Severity, Count: 1}
	n.threads[a.LeakID] = th
	recs := []outboxRecord{th.record(a.LeakID)}
	if g := n.groups[sig]; sig != "" && (g == nil || n.now().Sub(g.At) >= n.cfg.GroupWindow) {
		g = &group{thread: thread{Channel: ch, TS: ts, At: now, Count: 1, Owner: a.LeakID}, Root: a}
		n.groups[sig] = g
		recs = append(recs, g.record(sig))
	}
	n.mu.Unlock()
	return n.finish(a, ResultDelivered, recs...)
}

// finish records the outcome durably, after recs (where the finding's
// message is), in one write.
func (n *SlackNotifier) finish(a *alert, result string, recs ...outboxRecord) (string, time.Duration, error) {
	recs = append(recs, outboxRecord{Type: "done", Seq: a.Seq, LeakID: a.LeakID, Result: result})
	if err := n.ob.append(recs...); err != nil {
		n.logger.Warn("Slack outbox write failed; this alert may be delivered again after a restart", zap.Error(err))
	}
	return result, 0, nil
}

// findPosted looks for a message of ours carrying this leak id, posted
// since the alert was queued.
func (n *SlackNotifier) findPosted(a *alert) (string, string, error) {
	ctx, cancel := n.callCtx()
	defer cancel()
	ch := n.cfg.Channel
	n.mu.Lock()
	for _, t := range n.threads {
		if t.Channel != "" {
			ch = t.Channel // the id Slack returned; history needs ids, not names
			break
		}
	}
	n.mu.Unlock()
	resp, err := n.api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{
		ChannelID: ch, Oldest: fmt.Sprintf("%d.000000", a.At.Add(-time.Minute).Unix()), Limit: 200, IncludeAllMetadata: true,
	})
	if err != nil {
		return "", "", err
	}
	for _, m := range resp.Messages {
		if m.Metadata.EventType == slackMetadataType && m.Metadata.EventPayload["leak_id"] == a.LeakID {
			return ch, m.Timestamp, nil
		}
	}
	return "", "", nil
}

func missingScope(err error) bool {
	var se slack.SlackErrorResponse
	return errors.As(err, &se) && (se.Err == "missing_scope" || se.Err == "not_allowed_token_type" || se.Err == "channel_not_found")
}

// messageGone is Slack saying a message cannot be edited: deleted, or not
// ours. Retrying cannot help.
func messageGone(err error) bool {
	var se slack.SlackErrorResponse
	return errors.As(err, &se) && (se.Err == "message_not_found" || se.Err == "cant_update_message" || se.Err == "edit_window_closed")
}

// notPosted tells a post that certainly had no effect (Slack answered, or
// the connection was never made) from one whose outcome is unknown.
func notPosted(err error) bool {
	var op *net.OpError
	var num *strconv.NumError // a 429 whose Retry-After slack-go could not read
	return definiteRefusal(err) || (errors.As(err, &op) && op.Op == "dial") || errors.As(err, &num)
}

// definiteRefusal is an answer from Slack (as opposed to a lost reply),
// so the message was certainly not posted.
func definiteRefusal(err error) bool {
	var rl *slack.RateLimitedError
	var se slack.SlackErrorResponse
	var sc slack.StatusCodeError
	return errors.As(err, &rl) || errors.As(err, &se) || errors.As(err, &sc)
}

// classifyErr sorts Slack errors into retry-later and give-up.
func (n *SlackNotifier) classifyErr(err error) (string, time.Duration, error) {
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		// Honoured as asked, however long: retrying sooner only earns another 429.
		return ResultRetried, max(rl.RetryAfter, time.Second), err
	}
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		switch se.Err {
		case "invalid_blocks", "invalid_blocks_format", "msg_too_long", "too_many_attachments", "invalid_arguments", "message_not_found", "cant_update_message":
			return ResultFailed, 0, err
		}
		// invalid_auth, channel_not_found, not_in_channel and the like are
		// configuration the operator can fix: keep the alert and retry.
		return ResultRetried, 0, err
	}
	var sc slack.StatusCodeError
	if errors.As(err, &sc) && sc.Code == http.StatusBadRequest {
		return ResultFailed, 0, err // webhooks answer 400 for a message they will never take
	}
	return ResultRetried, 0, err
}

// slackMessageOptions builds a finding's top-level message, tagged with its
// leak id in the message metadata.
func slackMessageOptions(n *SlackNotifier, a *alert) []slack.MsgOption {
	return []slack.MsgOption{
		slack.MsgOptionText(headlineText(a), false),
		slack.MsgOptionBlocks(n.blocks(a, 1)...),
		slack.MsgOptionMetadata(slack.SlackMetadata{EventType: slackMetadataType, EventPayload: map[string]any{"leak_id": a.LeakID}}),
	}
}
