package store

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tenantguard/tenantguard/detector"
)

// Style is how an output shows the telemetry-derived words of a message.
// The zero Style is plain text, as the collector log, `leaks` and `scan`
// print it; Slack escapes mrkdwn and may show tenants as pseudonyms.
type Style struct {
	// Text shows a word taken from telemetry: a service, tenant, table,
	// attribute key or allow rule. Default: as it is.
	Text func(string) string
	// Code shows a span name. Default: between backticks.
	Code func(string) string
	// Tenant maps a tenant id before Text shows it (a pseudonym).
	// Default: the id.
	Tenant func(string) string
}

// Plain is the zero Style: plain text.
var Plain = Style{}

// maxWordBytes caps each telemetry-derived word of a message, so that a
// hostile span name cannot make a log line or a Slack headline huge.
const maxWordBytes = 160

// maxTenantsNamed bounds the tenants a message lists by name.
const maxTenantsNamed = 5

// Message is the finding's story in one sentence, in on-call's words: what
// happened, where, to whom, and what the status changed. It is the only
// sentence tenantguard writes about a finding; the collector log, Slack,
// `leaks list`, `leaks show`, `scan` and the red-team helper all print it.
// It names tenants, services, span names, tables and attribute keys, never
// an attribute value (a key id, a statement): those stay in the record.
func (e *Evidence) Message(st Style) string {
	m := messageWriter{st: st}
	tid := shortTrace(e.TraceID)
	var s string
	switch detector.Rule(e.Rule) {
	case detector.RuleCrossTenantTrace, detector.RuleBlockedAttempt:
		s = m.crossing(e, tid)
	case detector.RuleTenantMismatch:
		s = m.mismatch(e, tid)
	case detector.RuleForeignSigningKey:
		s = m.foreignKey(e, tid)
	case detector.RuleUnscopedQuery:
		s = m.unscoped(e)
	case detector.RuleMissingTenant:
		s = m.missingTenant(e)
	default: // a rule a newer build wrote
		s = fmt.Sprintf("trace %s raised %s", tid, m.text(e.Rule))
		if len(e.Tenants) > 0 {
			s += " touching " + m.tenants(e.Tenants)
		}
	}
	switch detector.Status(e.Status) {
	case detector.StatusAllowed:
		if e.AllowedBy != "" {
			return s + "; withdrawn: the trace passed through allowed path " + m.text(e.AllowedBy)
		}
		return s + "; withdrawn by an allow rule"
	case detector.StatusReclassified:
		return s + "; reclassified, see the trace's " + string(detector.RuleBlockedAttempt) + " finding"
	}
	return s
}

type messageWriter struct{ st Style }

func (m messageWriter) text(s string) string {
	s = cleanWord(s)
	if m.st.Text != nil {
		return m.st.Text(s)
	}
	return s
}

func (m messageWriter) code(s string) string {
	s = cleanWord(s)
	if m.st.Code != nil {
		return m.st.Code(s)
	}
	return "`" + s + "`"
}

func (m messageWriter) tenant(t string) string {
	if t == "" {
		return "(none)"
	}
	if m.st.Tenant != nil {
		t = m.st.Tenant(t)
	}
	return m.text(t)
}

// tenants names tenants: "acme", "acme and globex", "a, b and 3 more".
func (m messageWriter) tenants(ts []string) string {
	n := min(len(ts), maxTenantsNamed)
	names := make([]string, 0, n+1)
	for _, t := range ts[:n] {
		names = append(names, m.tenant(t))
	}
	if more := len(ts) - n; more > 0 {
		names = append(names, fmt.Sprintf("%d more", more))
	}
	word := "tenant "
	if len(names) > 1 {
		word = "tenants "
	}
	switch len(names) {
	case 0:
		return "no tenant"
	case 1:
		return word + names[0]
	}
	return word + strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// at is "inventory-svc `GET /stock`", or whichever half is known.
func (m messageWriter) at(service, span string) string {
	switch {
	case service != "" && span != "":
		return m.text(service) + " " + m.code(span)
	case service != "":
		return m.text(service)
	case span != "":
		return m.code(span)
	}
	return "an unnamed span"
}

// crossing: cross_tenant_trace and blocked_attempt.
func (m messageWriter) crossing(e *Evidence, tid string) string {
	refused := e.Rule == string(detector.RuleBlockedAttempt) || e.Status == string(detector.StatusReclassified)
	if len(e.CrossingEdges) == 0 {
		s := fmt.Sprintf("trace %s carries %s", tid, m.tenants(e.Tenants))
		switch {
		case refused:
			return s + " and a request to another tenant was refused"
		case e.Status == string(detector.StatusOpen):
			return s + "; the crossing edge is not known yet"
		}
		// Why no edge (branches with no common tenant-carrying ancestor, a
		// late span whose parent left with the closed trace) is the reason.
		return s + "; no crossing edge was found between them"
	}
	want := detector.OutcomeSucceeded
	if refused {
		want = detector.OutcomeBlocked
	}
	i := 0
	for j, c := range e.CrossingEdges {
		if c.Outcome == want {
			i = j
			break
		}
	}
	c := e.CrossingEdges[i]
	verb := "reached"
	if refused {
		verb = "tried to reach"
	}
	s := fmt.Sprintf("trace %s from tenant %s %s tenant %s at %s", tid, m.tenant(c.From.Tenant), verb, m.tenant(c.To.Tenant),
		m.at(c.To.Service, c.To.Span))
	if c.From.Service != "" || c.From.Span != "" {
		if c.Link {
			s += ", through a span link from " + m.at(c.From.Service, c.From.Span)
		} else {
			s += ", from " + m.at(c.From.Service, c.From.Span)
		}
		switch {
		case c.Hops > 0 && c.Link:
			s += " and " + plural(c.Hops, "span", "spans") + " without a tenant"
		case c.Hops > 0:
			s += " through " + plural(c.Hops, "span", "spans") + " without a tenant"
		}
	}
	if refused {
		s += ", and was refused" + refusal(e, c.To.SpanID)
	}
	if more := len(e.CrossingEdges) - 1; more > 0 {
		s += "; " + plural(more, "more crossing edge", "more crossing edges")
	}
	return s
}

// refusal is how the refused span answered, when its evidence kept the
// status code: " (HTTP 403)", " (gRPC PERMISSION_DENIED)", " (error status)".
func refusal(e *Evidence, spanID string) string {
	for _, sp := range e.Spans {
		if sp.SpanID != spanID {
			continue
		}
		for _, k := range []string{"http.response.status_code", "http.status_code"} {
			if n, err := strconv.Atoi(sp.Attributes[k]); err == nil && n > 0 {
				return fmt.Sprintf(" (HTTP %d)", n)
			}
		}
		if n, err := strconv.Atoi(sp.Attributes["rpc.grpc.status_code"]); err == nil {
			if name, ok := grpcCodes[n]; ok {
				return " (gRPC " + name + ")"
			}
			return fmt.Sprintf(" (gRPC status %d)", n)
		}
		if sp.Status == "error" {
			return " (error status)"
		}
	}
	return ""
}

var grpcCodes = map[int]string{5: "NOT_FOUND", 7: "PERMISSION_DENIED", 16: "UNAUTHENTICATED"}

// served says what became of an offending span: " and was served",
// " and was refused", or nothing when its evidence span is not kept.
func served(e *Evidence, spanID string) string {
	for _, sp := range e.Spans {
		if sp.SpanID == spanID {
			switch sp.Outcome {
			case detector.OutcomeBlocked:
				return " and was refused" + refusal(e, spanID)
			case detector.OutcomeSucceeded:
				return " and was served"
			}
		}
	}
	return ""
}

func (m messageWriter) mismatch(e *Evidence, tid string) string {
	if len(e.Mismatches) == 0 {
		return fmt.Sprintf("trace %s carries disagreeing tenant values (%s)", tid, m.tenants(e.Tenants))
	}
	x := e.Mismatches[0]
	vals := make([]string, 0, len(x.Values))
	for _, v := range x.Values {
		where := ""
		if v.Resource {
			where = " on the resource"
		}
		vals = append(vals, m.text(v.Key)+"="+m.tenant(v.Tenant)+where)
	}
	s := fmt.Sprintf("%s in trace %s carried disagreeing tenants (%s)%s", m.at(x.Service, x.Span), tid,
		strings.Join(vals, ", "), served(e, x.SpanID))
	if more := len(e.Mismatches) - 1; more > 0 {
		s += ", and " + plural(more, "more span", "more spans")
	}
	return s
}

func (m messageWriter) foreignKey(e *Evidence, tid string) string {
	if len(e.Keys) == 0 {
		return fmt.Sprintf("trace %s used a signing key of another tenant (%s)", tid, m.tenants(e.Tenants))
	}
	k := e.Keys[0]
	whose := "a global key"
	if !k.Global && k.KeyTenant != "" {
		whose = "tenant " + m.tenant(k.KeyTenant) + "'s key"
	}
	token := "a token"
	if k.SpanTenant != "" {
		token = "a token of tenant " + m.tenant(k.SpanTenant)
	}
	s := fmt.Sprintf("%s in trace %s took %s verified with %s (%s)%s", m.at(k.Service, k.Span), tid, token, whose,
		m.text(k.Attribute), served(e, k.SpanID))
	if more := len(e.Keys) - 1; more > 0 {
		s += ", and " + plural(more, "more span", "more spans")
	}
	return s
}

func (m messageWriter) unscoped(e *Evidence) string {
	if len(e.Queries) == 0 {
		return fmt.Sprintf("%s ran a statement with no tenant predicate", m.text(strings.Join(e.Services, ", ")))
	}
	q := e.Queries[0]
	tables := make([]string, len(q.Tables))
	for i, t := range q.Tables {
		tables[i] = m.text(t)
	}
	stmt := "a statement"
	if q.Span != "" {
		stmt = m.code(q.Span)
	}
	s := fmt.Sprintf("%s ran %s with no tenant predicate (%s %s)", m.text(q.Service), stmt,
		pluralWord(len(tables), "table", "tables"), strings.Join(tables, ", "))
	if more := len(e.Queries) - 1; more > 0 {
		s += ", and " + plural(more, "more statement", "more statements")
	}
	return s
}

func (m messageWriter) missingTenant(e *Evidence) string {
	service, span := strings.Join(e.Services, ", "), ""
	if len(e.Spans) > 0 {
		service, span = e.Spans[0].Service, e.Spans[0].Name
	}
	return m.at(service, span) + " carried no tenant, though the service is listed as tenant-aware"
}

// shortTrace is a trace id's first 8 digits, enough to find it.
func shortTrace(id string) string {
	if len(id) > 8 {
		return id[:8] + "…"
	}
	if id == "" {
		return "(no id)"
	}
	return id
}

// OneLine makes a telemetry-derived value safe to print on one line of a
// message or a table: valid UTF-8 (U+FFFD for a bad byte) and a space for
// each control character (a newline, a tab, an escape sequence).
func OneLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// cleanWord is OneLine, at most maxWordBytes.
func cleanWord(s string) string {
	s = OneLine(s)
	if len(s) > maxWordBytes {
		cut := maxWordBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func pluralWord(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
