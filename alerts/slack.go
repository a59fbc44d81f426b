package alerts

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
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

// SlackNotifier posts one message per finding to Slack and threads later
// versions under it. Notify only writes the alert to a durable outbox and
// returns; a single sender goroutine delivers in order, honours rate limits
// and retries with capped backoff, so a slow or dead Slack never slows the
// evidence worker, and alerts survive a restart.
type SlackNotifier struct {
	cfg     config.Slack
	logger  *zap.Logger
	http    *http.Client
	api     *slack.Client
	now     func() time.Time
	observe func(string)

	ob *outbox

	mu      sync.Mutex
	pending []*alert
	posting map[uint64]bool
	threads map[string]thread
	groups  map[string]*group
	nextSeq uint64
	// leaks remembers, per open finding, what was last announced, so that
	// only material changes become thread replies.
	leaks map[string]*leakMemo

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

type leakMemo struct {
	tenants, edges int
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
// start. It waits for an in-flight Slack call up to ctx's deadline.
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
		memo, known = &leakMemo{tenants: th.Tenants, edges: th.Edges}, true
		n.leaks[ev.LeakID] = memo
	}
	final := ev.Status != "open"
	defer func() {
		if final {
			delete(n.leaks, ev.LeakID)
		}
	}()
	switch {
	case !known:
		if ev.Status == "allowed" {
			return ""
		}
		memo = &leakMemo{tenants: len(ev.Tenants), edges: len(ev.CrossingEdges)}
		n.leaks[ev.LeakID] = memo
		if detector.Severity(ev.Severity).Rank() < detector.Severity(n.cfg.MinSeverity).Rank() {
			memo.skipped = true
			return ""
		}
		return "new"
	case memo.skipped:
		return ""
	case ev.Status == "allowed":
		return "withdrawn"
	case len(ev.Tenants) > memo.tenants || len(ev.CrossingEdges) > memo.edges:
		memo.tenants, memo.edges = len(ev.Tenants), len(ev.CrossingEdges)
		return "update"
	default:
		return ""
	}
}

func (n *SlackNotifier) run() {
	defer close(n.done)
	backoff := time.Duration(0)
	for {
		if backoff > 0 {
			select {
			case <-n.stop:
				return
			case <-time.After(backoff):
			}
		} else {
			select {
			case <-n.stop:
				return
			case <-n.wake:
			}
		}
		backoff = n.drain()
	}
}

// drain delivers pending alerts in order and returns how long to wait
// before trying again (0: nothing left to retry).
func (n *SlackNotifier) drain() time.Duration {
	attempt := 0
	for {
		select {
		case <-n.stop:
			return 0
		default:
		}
		n.mu.Lock()
		if len(n.pending) == 0 {
			n.mu.Unlock()
			return 0
		}
		a := n.pending[0]
		n.mu.Unlock()

		result, wait, err := n.deliver(a)
		n.observe(result)
		if result == ResultRetried {
			attempt++
			if wait == 0 {
				wait = n.backoff(attempt)
			}
			n.logger.Warn("Slack delivery failed; will retry", zap.String("leak_id", a.LeakID),
				zap.Duration("retry_in", wait), zap.Error(err))
			return wait
		}
		if result == ResultFailed {
			n.logger.Error("Slack refused the alert for good; it is dropped (the finding is still in the evidence store)",
				zap.String("leak_id", a.LeakID), zap.String("trace_id", a.TraceID), zap.Error(err))
		}
		attempt = 0
		n.mu.Lock()
		n.pending = n.pending[1:]
		delete(n.posting, a.Seq)
		n.mu.Unlock()
	}
}

func (n *SlackNotifier) backoff(attempt int) time.Duration {
	d := time.Second << min(attempt-1, 16)
	d = min(d, n.cfg.MaxBackoff)
	// Jitter keeps several collectors from retrying in lockstep.
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// deliver sends one alert. It returns the result, a wait the server asked
// for (Retry-After), and the error if any.
func (n *SlackNotifier) deliver(a *alert) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timeout)
	defer cancel()
	if n.api == nil {
		return n.deliverWebhook(ctx, a)
	}
	return n.deliverBot(ctx, a)
}

func (n *SlackNotifier) deliverWebhook(ctx context.Context, a *alert) (string, time.Duration, error) {
	if a.Kind != "new" {
		// Webhooks cannot thread; one message per finding stays one message.
		return n.finish(a, ResultSkipped, "", "", "")
	}
	sig := a.signature()
	n.mu.Lock()
	g := n.groups[sig]
	n.mu.Unlock()
	if g != nil && n.now().Sub(g.At) < n.cfg.GroupWindow {
		n.mu.Lock()
		g.Count++
		n.mu.Unlock()
		return n.finish(a, ResultGrouped, "", "", "")
	}
	msg := &slack.WebhookMessage{Text: headlineText(a), Blocks: &slack.Blocks{BlockSet: n.blocks(a, 1)}}
	if err := slack.PostWebhookCustomHTTPContext(ctx, string(n.cfg.WebhookURL), n.http, msg); err != nil {
		return n.classifyErr(err)
	}
	now := n.now()
	n.mu.Lock()
	n.groups[sig] = &group{thread: thread{At: now}, Count: 1, Root: a}
	// Remembered like a bot message (with no thread to reply in), so a
	// restart does not announce the same finding again.
	n.threads[a.LeakID] = thread{Channel: webhookChannel, At: now, Tenants: len(a.Tenants), Edges: len(a.Edges) + a.MoreEdges}
	n.mu.Unlock()
	return n.finish(a, ResultDelivered, webhookChannel, "", sig)
}

func (n *SlackNotifier) deliverBot(ctx context.Context, a *alert) (string, time.Duration, error) {
	n.mu.Lock()
	th, hasThread := n.threads[a.LeakID]
	sig := a.signature()
	g := n.groups[sig]
	intent := n.posting[a.Seq]
	n.mu.Unlock()

	if a.Kind != "new" {
		if !hasThread {
			// The first message never went out (dropped for good): nothing to thread under.
			return n.finish(a, ResultSkipped, "", "", "")
		}
		_, _, err := n.api.PostMessageContext(ctx, th.Channel, slack.MsgOptionText(n.replyText(a), false), slack.MsgOptionTS(th.TS))
		if err != nil {
			return n.classifyErr(err)
		}
		return n.finish(a, ResultDelivered, "", "", "")
	}
	if hasThread {
		return n.finish(a, ResultSkipped, "", "", "") // already announced (a replayed version)
	}
	if g != nil && n.now().Sub(g.At) < n.cfg.GroupWindow {
		return n.deliverGrouped(ctx, a, g, sig)
	}
	if intent {
		// We may have posted this before a crash or a lost reply: look
		// before posting again.
		ch, ts, err := n.findPosted(ctx, a)
		switch {
		case ts != "":
			return n.finishTopLevel(a, ch, ts, sig)
		case err != nil && !missingScope(err):
			return n.classifyErr(err)
		case err != nil:
			n.logger.Warn("cannot check Slack for a message posted before a restart (grant channels:history); posting, which may duplicate it",
				zap.String("leak_id", a.LeakID), zap.Error(err))
		}
	}
	if err := n.ob.append(outboxRecord{Type: "posting", Seq: a.Seq}); err != nil {
		n.logger.Warn("cannot record the intent to post; a crash now could post this finding twice", zap.Error(err))
	}
	n.mu.Lock()
	n.posting[a.Seq] = true
	n.mu.Unlock()
	ch, ts, err := n.api.PostMessageContext(ctx, n.cfg.Channel, slackMessageOptions(n, a)...)
	if err != nil {
		if definiteRefusal(err) {
			// Slack answered no: nothing was posted, no need to look for it.
			n.mu.Lock()
			delete(n.posting, a.Seq)
			n.mu.Unlock()
		}
		return n.classifyErr(err)
	}
	return n.finishTopLevel(a, ch, ts, sig)
}

// deliverGrouped threads a finding under the first message with the same
// crossing and bumps that message's count.
func (n *SlackNotifier) deliverGrouped(ctx context.Context, a *alert, g *group, sig string) (string, time.Duration, error) {
	grouped := *a
	grouped.Kind = "grouped"
	if _, _, err := n.api.PostMessageContext(ctx, g.Channel, slack.MsgOptionText(n.replyText(&grouped), false), slack.MsgOptionTS(g.TS)); err != nil {
		return n.classifyErr(err)
	}
	n.mu.Lock()
	g.Count++
	count, root := g.Count, g.Root
	n.threads[a.LeakID] = g.thread
	n.mu.Unlock()
	// The count on the first message is a convenience: a failed update is logged, not retried.
	if _, _, _, err := n.api.UpdateMessageContext(ctx, g.Channel, g.TS,
		slack.MsgOptionText(headlineText(root), false), slack.MsgOptionBlocks(n.blocks(root, count)...)); err != nil {
		n.logger.Warn("could not update the grouped message's count", zap.String("leak_id", root.LeakID), zap.Error(err))
	}
	if err := n.ob.append(
		outboxRecord{Type: "thread", LeakID: a.LeakID, Channel: g.Channel, TS: g.TS, At: n.now()},
		outboxRecord{Type: "done", Seq: root.Seq, Alert: root, LeakID: root.LeakID, Channel: g.Channel, TS: g.TS, Sig: sig, Count: count, At: g.At},
	); err != nil {
		n.logger.Warn("Slack outbox write failed", zap.Error(err))
	}
	return n.finish(a, ResultGrouped, "", "", "")
}

func (n *SlackNotifier) finishTopLevel(a *alert, ch, ts, sig string) (string, time.Duration, error) {
	now := n.now()
	n.mu.Lock()
	n.threads[a.LeakID] = thread{Channel: ch, TS: ts, At: now, Tenants: len(a.Tenants), Edges: len(a.Edges) + a.MoreEdges}
	n.groups[sig] = &group{thread: thread{Channel: ch, TS: ts, At: now}, Count: 1, Root: a}
	n.mu.Unlock()
	return n.finish(a, ResultDelivered, ch, ts, sig)
}

// finish records the outcome durably.
func (n *SlackNotifier) finish(a *alert, result, ch, ts, sig string) (string, time.Duration, error) {
	rec := outboxRecord{Type: "done", Seq: a.Seq, LeakID: a.LeakID, Result: result, Channel: ch, TS: ts, At: n.now(),
		Tenants: len(a.Tenants), Edges: len(a.Edges) + a.MoreEdges}
	if result == ResultDelivered && a.Kind == "update" {
		// Remember how far the thread has been told, for the next start.
		n.mu.Lock()
		th := n.threads[a.LeakID]
		th.Tenants, th.Edges = rec.Tenants, rec.Edges
		n.threads[a.LeakID] = th
		n.mu.Unlock()
		rec = outboxRecord{Type: "done", Seq: a.Seq, LeakID: a.LeakID, Result: result, Channel: th.Channel, TS: th.TS, At: th.At,
			Tenants: th.Tenants, Edges: th.Edges}
	}
	if sig != "" && ts != "" {
		rec.Sig, rec.Alert, rec.Count = sig, a, 1
	}
	if err := n.ob.append(rec); err != nil {
		n.logger.Warn("Slack outbox write failed; this alert may be delivered again after a restart", zap.Error(err))
	}
	return result, 0, nil
}

// findPosted looks for a message of ours carrying this leak id, posted
// since the alert was queued.
func (n *SlackNotifier) findPosted(ctx context.Context, a *alert) (string, string, error) {
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
		return ResultRetried, min(max(rl.RetryAfter, time.Second), n.cfg.MaxBackoff), err
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
