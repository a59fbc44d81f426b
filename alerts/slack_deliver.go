package alerts

// How one alert reaches Slack: by webhook or as the bot (a new message, a
// reply grouped under an incident, an update in the finding's thread), and
// how Slack's errors are classified for retry.

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/slack-go/slack"
	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/detector"
)

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
	// A finding of an incident whose message is recent is a reply in its
	// thread; so was any post of it that went unanswered (while a first
	// post is unanswered, the incident's other findings wait: dispatch),
	// and postReply looks for it there.
	if g != nil && n.now().Sub(g.At) < n.cfg.GroupWindow {
		return n.deliverGrouped(a, g, sig)
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
	if err := n.postReply(a, g.Channel, g.TS, n.replyText(&grouped)); err != nil {
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
		if err := n.postReply(a, th.Channel, th.TS, text); err != nil {
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

// postReply posts text for a in the thread of the message ts. Like a
// top-level post, it records the intent first; an alert with unanswered
// posts (a crash or a lost answer after the reply went out) looks for its
// reply in the thread before posting again, so that neither a restart nor
// a retry repeats it.
func (n *SlackNotifier) postReply(a *alert, ch, ts, text string) error {
	n.mu.Lock()
	unconfirmed := n.posting[a.Seq]
	n.mu.Unlock()
	if unconfirmed > 0 {
		found, err := n.findReply(a, ch, ts)
		switch {
		case found:
			return nil
		case err == nil:
			n.mu.Lock()
			n.posting[a.Seq] = 0 // not in the thread: the unanswered posts never went out
			n.mu.Unlock()
		case !missingScope(err):
			return err
		default:
			n.logger.Warn("cannot check Slack for a reply posted before a restart or a lost answer (grant channels:history); posting, which may repeat it",
				zap.String("leak_id", a.LeakID), zap.Int("unanswered_posts", unconfirmed), zap.Error(err))
		}
	}
	if err := n.beginPost(a); err != nil {
		return err
	}
	ctx, cancel := n.callCtx()
	defer cancel()
	_, _, err := n.api.PostMessageContext(ctx, ch, slack.MsgOptionText(text, false), slack.MsgOptionTS(ts),
		slack.MsgOptionMetadata(replyMetadata(a)))
	if err != nil {
		n.postFailed(a, err)
	}
	return err
}

// replyMetadata marks a reply with the alert it tells, for findReply.
func replyMetadata(a *alert) slack.SlackMetadata {
	return slack.SlackMetadata{EventType: slackMetadataType,
		EventPayload: map[string]any{"leak_id": a.LeakID, "alert": strconv.FormatUint(a.Seq, 10)}}
}

// findReply reports whether the thread of ts holds a reply of ours for a,
// posted since the alert was queued.
func (n *SlackNotifier) findReply(a *alert, ch, ts string) (bool, error) {
	want := replyMetadata(a).EventPayload
	params := &slack.GetConversationRepliesParameters{
		ChannelID: ch, Timestamp: ts, Oldest: lookupOldest(a), Limit: lookupPageSize, IncludeAllMetadata: true,
	}
	for range lookupPages {
		ctx, cancel := n.callCtx()
		msgs, hasMore, next, err := n.api.GetConversationRepliesContext(ctx, params)
		cancel()
		if err != nil {
			return false, err
		}
		for _, m := range msgs {
			if m.Metadata.EventType == slackMetadataType && m.Metadata.EventPayload["leak_id"] == want["leak_id"] &&
				m.Metadata.EventPayload["alert"] == want["alert"] {
				return true, nil
			}
		}
		if !hasMore || next == "" {
			return false, nil
		}
		params.Cursor = next
	}
	n.lookupCut(a, "thread")
	return false, nil
}

// A lookup reads the messages posted since the alert was queued (a minute
// of clock skew allowed), a page at a time, at most lookupPages: Slack
// answers with one page, and after a long outage a busy channel or thread
// holds many pages above the message looked for (history is newest first).
const (
	lookupPageSize = 200
	lookupPages    = 25
)

func lookupOldest(a *alert) string {
	return fmt.Sprintf("%d.000000", a.At.Add(-time.Minute).Unix())
}

// lookupCut says that a lookup read its last page without reaching the
// alert's time: the message may be there, further back, and posting may
// repeat it.
func (n *SlackNotifier) lookupCut(a *alert, where string) {
	n.logger.Warn("stopped looking for a Slack message posted before a restart or a lost answer after "+
		strconv.Itoa(lookupPages*lookupPageSize)+" messages of the "+where+"; posting, which may repeat it",
		zap.String("leak_id", a.LeakID))
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
	ch := n.cfg.Channel
	n.mu.Lock()
	for _, t := range n.threads {
		if t.Channel != "" {
			ch = t.Channel // the id Slack returned; history needs ids, not names
			break
		}
	}
	n.mu.Unlock()
	params := &slack.GetConversationHistoryParameters{
		ChannelID: ch, Oldest: lookupOldest(a), Limit: lookupPageSize, IncludeAllMetadata: true,
	}
	for range lookupPages {
		ctx, cancel := n.callCtx()
		resp, err := n.api.GetConversationHistoryContext(ctx, params)
		cancel()
		if err != nil {
			return "", "", err
		}
		for _, m := range resp.Messages {
			if m.Metadata.EventType == slackMetadataType && m.Metadata.EventPayload["leak_id"] == a.LeakID {
				return ch, m.Timestamp, nil
			}
		}
		if !resp.HasMore || resp.ResponseMetaData.NextCursor == "" {
			return "", "", nil
		}
		params.Cursor = resp.ResponseMetaData.NextCursor
	}
	n.lookupCut(a, "channel")
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
