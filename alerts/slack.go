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
			// Unless the incident's message is known: then that post was a
			// reply in its thread.
			if sig := a.signature(); sig != "" && !n.groupOpen(sig) {
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

// groupOpen reports whether the incident sig has a message that its new
// findings join (within group_window). Guarded by mu.
func (n *SlackNotifier) groupOpen(sig string) bool {
	g := n.groups[sig]
	return g != nil && n.now().Sub(g.At) < n.cfg.GroupWindow
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
