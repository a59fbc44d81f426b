package detector

import (
	"strings"
	"testing"
)

// TestOneRankingFailsClosed: the one severity ranking orders the known
// severities and puts one this build does not know above critical, so
// every threshold (Slack's min_severity, scan's --fail-on) acts on it.
func TestOneRankingFailsClosed(t *testing.T) {
	for i, s := range Severities {
		if s.Rank() != i+1 {
			t.Errorf("%s ranks %d, want %d", s, s.Rank(), i+1)
		}
	}
	if got := Severity("catastrophic").Rank(); got <= SeverityCritical.Rank() {
		t.Errorf("an unknown severity ranks %d, not above critical (%d)", got, SeverityCritical.Rank())
	}
}

// TestParseRejectsUnknownNames: each parse accepts exactly the names of
// its list and names them all when it refuses one.
func TestParseRejectsUnknownNames(t *testing.T) {
	for _, r := range Rules {
		if got, err := ParseRule(string(r)); err != nil || got != r {
			t.Errorf("ParseRule(%q) = %q, %v", r, got, err)
		}
	}
	for _, s := range Statuses {
		if got, err := ParseStatus(string(s)); err != nil || got != s {
			t.Errorf("ParseStatus(%q) = %q, %v", s, got, err)
		}
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{func() error { _, err := ParseRule("cross_tenant"); return err }(),
			`unknown rule "cross_tenant": want one of cross_tenant_trace, blocked_attempt, tenant_mismatch, foreign_signing_key, unscoped_query, missing_tenant`},
		{func() error { _, err := ParseSeverity("High"); return err }(), `unknown severity "High": want one of low, medium, high, critical`},
		{func() error { _, err := ParseStatus(""); return err }(), `unknown status "": want one of open, reclassified, allowed, closed`},
	} {
		if tc.err == nil || tc.err.Error() != tc.want {
			t.Errorf("got %v\nwant %s", tc.err, tc.want)
		}
	}
	for _, r := range Rules {
		if strings.TrimSpace(r.Describe()) == "" {
			t.Errorf("rule %s has no description", r)
		}
	}
}
