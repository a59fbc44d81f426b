package alerts

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

// maxEdgesShown bounds the crossing edges one message lists.
const maxEdgesShown = 3

// newAlert reduces a finding version to what a message may carry: tenant
// ids (or pseudonyms), services, span names, the leak and trace ids. No
// attribute value other than the tenant leaves the process.
func (n *SlackNotifier) newAlert(ev *store.Evidence, kind string) *alert {
	a := &alert{
		Kind: kind, LeakID: ev.LeakID, Rule: ev.Rule, Severity: ev.Severity, TraceID: ev.TraceID,
		SpanCount: ev.SpanCount, FirstSeen: ev.FirstSeen, AllowedBy: ev.AllowedBy,
		Status: ev.Status, Reason: ev.Reason, Reached: n.reached(ev),
		Message: clip(ev.Message(store.Style{Text: esc, Code: code, Tenant: n.tenant}), maxMessage),
	}
	for _, t := range ev.Tenants {
		a.Tenants = append(a.Tenants, n.tenant(t))
	}
	for i, e := range ev.CrossingEdges {
		if i == maxEdgesShown {
			a.MoreEdges = len(ev.CrossingEdges) - maxEdgesShown
			break
		}
		a.Edges = append(a.Edges, edgeSummary{
			FromTenant: n.tenant(e.From.Tenant), FromService: e.From.Service, FromSpan: e.From.Span,
			ToTenant: n.tenant(e.To.Tenant), ToService: e.To.Service, ToSpan: e.To.Span, Hops: e.Hops,
		})
	}
	if len(ev.Mismatches) > 0 {
		m := ev.Mismatches[0]
		mv := &mismatchView{Service: m.Service, Span: m.Span}
		for _, v := range m.Values {
			mv.Values = append(mv.Values, v.Key+"="+n.tenant(v.Tenant))
		}
		a.Mismatch = mv
	}
	return a
}

// reached is the first data-bearing, not refused evidence span of a tenant
// the trace crossed into: what makes a crossing critical.
func (n *SlackNotifier) reached(ev *store.Evidence) *reachView {
	for _, e := range ev.CrossingEdges {
		for _, s := range ev.Spans {
			if s.Data && s.Outcome != "blocked" && s.Tenant != "" && s.Tenant == e.To.Tenant {
				return &reachView{Service: s.Service, Span: s.Name, Tenant: n.tenant(s.Tenant)}
			}
		}
	}
	return nil
}

// tenant shows a tenant id, or its stable pseudonym: the same tenant always
// maps to the same pseudonym, so on-call can still tell tenants apart and
// the incident team can map it back with the key.
func (n *SlackNotifier) tenant(t string) string {
	if !n.cfg.PseudonymizeTenants || t == "" {
		return t
	}
	m := hmac.New(sha256.New, []byte(n.cfg.PseudonymKey))
	m.Write([]byte(t))
	return "t-" + hex.EncodeToString(m.Sum(nil))[:12]
}

// esc neutralises Slack mrkdwn control characters in telemetry-derived
// text: a span named "<!channel>" must not page a whole channel, and a
// service name must not become a link.
func esc(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "`", "'")
	return r.Replace(s)
}

func code(s string) string { return "`" + esc(s) + "`" }

// maxMessage bounds the sentence a message carries (Slack cuts sections at 3,000 characters).
const maxMessage = 1000

// clip cuts s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

var severityIcon = map[detector.Severity]string{
	detector.SeverityCritical: ":rotating_light:",
	detector.SeverityHigh:     ":warning:",
	detector.SeverityMedium:   ":large_orange_diamond:",
	detector.SeverityLow:      ":information_source:",
}

// headline is the message's first line: an icon and the finding's message.
func headline(a *alert) string {
	return severityIcon[detector.Severity(a.Severity)] + " " + headlineText(a)
}

// headlineText is the headline without mrkdwn icons: the notification
// text. It is the finding's message (store.Evidence.Message), the sentence
// the log and `tenantguard leaks` print; an alert queued by an older build
// has none and is named by rule and leak id.
func headlineText(a *alert) string {
	if a.Message != "" {
		return a.Message
	}
	return fmt.Sprintf("%s finding %s", code(a.Rule), code(a.LeakID))
}

func edgeLine(e edgeSummary) string {
	hops := ""
	if e.Hops > 0 {
		hops = fmt.Sprintf(" (via %d span(s) without a tenant)", e.Hops)
	}
	return fmt.Sprintf("*%s* · %s %s  →  *%s* · %s %s%s",
		esc(e.FromTenant), esc(e.FromService), code(e.FromSpan), esc(e.ToTenant), esc(e.ToService), code(e.ToSpan), hops)
}

// blocks renders the top-level message. count > 1 says how many findings
// with the same crossing collapsed into it.
func (n *SlackNotifier) blocks(a *alert, count int) []slack.Block {
	title := headline(a)
	if count > 1 {
		title += fmt.Sprintf("  ×%d", count)
	}
	out := []slack.Block{
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "*"+title+"*", false, false), nil, nil),
	}
	if line := statusLine(a); line != "" {
		out = append(out, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, line, false, false), nil, nil))
	}
	fields := []*slack.TextBlockObject{
		mdField("Severity", a.Severity),
		mdField("Rule", code(a.Rule)),
		mdField("Tenants", esc(strings.Join(a.Tenants, ", "))),
		mdField("First seen", fmt.Sprintf("<!date^%d^{date_short_pretty} {time_secs}|%s>", a.FirstSeen.Unix(), a.FirstSeen.UTC().Format("2006-01-02 15:04:05Z"))),
		mdField("Spans", fmt.Sprint(a.SpanCount)),
		mdField("Leak id", code(a.LeakID)),
	}
	out = append(out, slack.NewSectionBlock(nil, fields, nil))
	var lines []string
	for _, e := range a.Edges {
		lines = append(lines, edgeLine(e))
	}
	if a.MoreEdges > 0 {
		lines = append(lines, fmt.Sprintf("_and %d more crossing edge(s)_", a.MoreEdges))
	}
	if a.Mismatch != nil {
		lines = append(lines, fmt.Sprintf("%s %s carries %s", esc(a.Mismatch.Service), code(a.Mismatch.Span), esc(strings.Join(a.Mismatch.Values, ", "))))
	}
	if len(lines) > 0 {
		out = append(out, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, strings.Join(lines, "\n"), false, false), nil, nil))
	}
	if links := n.links(a); len(links) > 0 {
		out = append(out, slack.NewContextBlock("", links...))
	}
	return out
}

func mdField(name, value string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, "*"+name+"*\n"+value, false, false)
}

func (n *SlackNotifier) links(a *alert) []slack.MixedElement {
	var out []slack.MixedElement
	if u := n.traceURL(a.TraceID); u != "" {
		out = append(out, slack.NewTextBlockObject(slack.MarkdownType, fmt.Sprintf("<%s|Open trace %s>", u, a.TraceID), false, false))
	} else {
		out = append(out, slack.NewTextBlockObject(slack.MarkdownType, "Trace "+code(a.TraceID), false, false))
	}
	if n.cfg.RunbookURL != "" {
		out = append(out, slack.NewTextBlockObject(slack.MarkdownType, fmt.Sprintf("<%s|Runbook>", n.cfg.RunbookURL), false, false))
	}
	return out
}

func (n *SlackNotifier) traceURL(traceID string) string {
	if n.cfg.TraceURLTemplate == "" {
		return ""
	}
	return strings.ReplaceAll(n.cfg.TraceURLTemplate, "{trace_id}", url.PathEscape(traceID))
}

// statusLine says, on the top-level message, where the finding stands when
// it is no longer simply open; "" while it is.
func statusLine(a *alert) string {
	switch detector.Status(a.Status) {
	case detector.StatusAllowed:
		return fmt.Sprintf(":white_check_mark: *Withdrawn*: the trace passed through an allowed path (%s). No action needed.", esc(a.AllowedBy))
	case detector.StatusReclassified:
		return ":white_check_mark: *Reclassified*: " + esc(a.Reason) + ". No leak: isolation held."
	case detector.StatusClosed:
		return "*Closed*: the trace went idle; this is the finding's final state."
	}
	return ""
}

// escalationText says what raised a finding's severity: "now critical:
// reached ledger-svc's data (`INSERT entries`, tenant globex)".
func escalationText(a *alert) string {
	if a.Reached != nil {
		return fmt.Sprintf("now %s: reached %s's data (%s, tenant %s)", a.Severity, esc(a.Reached.Service), code(a.Reached.Span), esc(a.Reached.Tenant))
	}
	if a.Reason != "" {
		return fmt.Sprintf("now %s: %s", a.Severity, esc(a.Reason))
	}
	return "now " + a.Severity
}

// replyText is a thread reply for a later version of a finding.
func (n *SlackNotifier) replyText(a *alert) string {
	switch a.Kind {
	case "withdrawn":
		return fmt.Sprintf("Withdrawn: the trace passed through an allowed path (%s). No action needed.", esc(a.AllowedBy))
	case "reclassified":
		return fmt.Sprintf("Reclassified: %s. %s", esc(a.Reason), a.Message)
	case "escalated":
		return fmt.Sprintf("%s %s\n%s", severityIcon[detector.Severity(a.Severity)], escalationText(a), a.Message)
	case "grouped":
		return fmt.Sprintf("Same crossing again in trace %s (leak %s): %s", code(a.TraceID), code(a.LeakID), headline(a))
	default:
		var parts []string
		parts = append(parts, fmt.Sprintf("Update: tenants now %s, %d span(s)", esc(strings.Join(a.Tenants, ", ")), a.SpanCount))
		for _, e := range a.Edges {
			parts = append(parts, edgeLine(e))
		}
		return strings.Join(parts, "\n")
	}
}
