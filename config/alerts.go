package config

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/confmap"

	"github.com/tenantguard/tenantguard/detector"
)

// Alerts says who is told about findings.
type Alerts struct {
	// Log writes each finding to the collector's log. Default: on.
	Log LogAlerts `mapstructure:"log"`
	// Slack posts findings to a channel. Default: off (no token, no webhook).
	Slack Slack `mapstructure:"slack"`
}

// LogAlerts configures the log notifier.
type LogAlerts struct {
	Enabled bool `mapstructure:"enabled"`
}

// Slack configures the Slack notifier. Set either Token and Channel (bot
// mode: one message per finding, updates in its thread) or WebhookURL
// (incoming webhook: one message per finding, no threads).
type Slack struct {
	// Token is a bot token (xoxb-…); use ${env:SLACK_BOT_TOKEN}. Needs
	// chat:write, and channels:history to find its own messages after a crash.
	Token configopaque.String `mapstructure:"token"`
	// Channel is the channel id or name for bot mode.
	Channel string `mapstructure:"channel"`
	// WebhookURL is an incoming-webhook URL; use ${env:SLACK_WEBHOOK_URL}.
	WebhookURL configopaque.String `mapstructure:"webhook_url"`
	// APIURL overrides https://slack.com/api/ (Enterprise Grid, proxies, tests).
	APIURL string `mapstructure:"api_url"`
	// TraceURLTemplate links each message to the trace; {trace_id} is
	// replaced, e.g. https://jaeger.example.com/trace/{trace_id}. Default: no link.
	TraceURLTemplate string `mapstructure:"trace_url_template"`
	// RunbookURL is linked from every message. Default: none.
	RunbookURL string `mapstructure:"runbook_url"`
	// MinSeverity is the lowest severity that is posted. Default: high.
	MinSeverity string `mapstructure:"min_severity"`
	// GroupWindow collapses findings with the same tenant pair and crossing
	// edge into the first one's message for this long. Default: 10m.
	GroupWindow time.Duration `mapstructure:"group_window"`
	// PseudonymizeTenants shows tenants as stable pseudonyms (t-3f9a…)
	// instead of their ids, for channels wider than the incident team.
	PseudonymizeTenants bool `mapstructure:"pseudonymize_tenants"`
	// PseudonymKey keys the pseudonyms; use ${env:TENANTGUARD_PSEUDONYM_KEY}.
	PseudonymKey configopaque.String `mapstructure:"pseudonym_key"`
	// OutboxPath keeps alerts until Slack has them, and which message each
	// finding went to, across restarts. Default: ./data/slack-outbox.jsonl.
	OutboxPath string `mapstructure:"outbox_path"`
	// Timeout bounds one Slack call. Default: 10s.
	Timeout time.Duration `mapstructure:"timeout"`
	// InitialBackoff is the wait before an alert's first retry; each
	// further failure of the same alert doubles it, up to MaxBackoff (a
	// larger value is cut to MaxBackoff). Default: 1s.
	InitialBackoff time.Duration `mapstructure:"initial_backoff"`
	// MaxBackoff caps the wait between retries. Default: 5m.
	MaxBackoff time.Duration `mapstructure:"max_backoff"`

	// written lists which of token, webhook_url and channel the
	// configuration wrote, whatever they resolved to.
	written []string
}

// slackKeys are the keys whose presence says Slack is meant to be on.
var slackKeys = []string{"token", "webhook_url", "channel"}

// Unmarshal decodes the section and remembers which keys it wrote, so that
// CheckSecrets can tell "Slack off" (no key) from "a secret resolved to
// nothing" (`token: ${env:SLACK_BOT_TOKEN}` with the variable unset).
func (s *Slack) Unmarshal(conf *confmap.Conf) error {
	s.written = s.written[:0]
	for _, k := range slackKeys {
		if conf.IsSet(k) {
			s.written = append(s.written, k)
		}
	}
	return conf.Unmarshal(s)
}

// DefaultSlack returns the Slack defaults (off).
func DefaultSlack() Slack {
	return Slack{
		MinSeverity:    string(detector.SeverityHigh),
		GroupWindow:    10 * time.Minute,
		OutboxPath:     "./data/slack-outbox.jsonl",
		Timeout:        10 * time.Second,
		InitialBackoff: time.Second,
		MaxBackoff:     5 * time.Minute,
	}
}

// Enabled reports whether a token or webhook is configured.
func (s *Slack) Enabled() bool { return s.Token != "" || s.WebhookURL != "" }

// Validate names the bad field. Secrets are never echoed.
func (s *Slack) Validate() error {
	if !s.Enabled() {
		return nil
	}
	var errs []error
	if s.Token != "" && s.WebhookURL != "" {
		errs = append(errs, errors.New("alerts.slack: set either token (bot mode) or webhook_url, not both"))
	}
	if s.Token != "" && strings.TrimSpace(s.Channel) == "" {
		errs = append(errs, errors.New("alerts.slack.channel: required with a bot token"))
	}
	if s.WebhookURL != "" {
		if u, err := url.Parse(string(s.WebhookURL)); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, errors.New("alerts.slack.webhook_url: not an http(s) URL"))
		}
	}
	for name, v := range map[string]string{"api_url": s.APIURL, "runbook_url": s.RunbookURL} {
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, fmt.Errorf("alerts.slack.%s: %q is not an absolute URL", name, v))
		}
	}
	if s.TraceURLTemplate != "" && !strings.Contains(s.TraceURLTemplate, "{trace_id}") {
		errs = append(errs, fmt.Errorf("alerts.slack.trace_url_template: %q has no {trace_id}", s.TraceURLTemplate))
	}
	if _, err := detector.ParseSeverity(s.MinSeverity); err != nil {
		errs = append(errs, fmt.Errorf("alerts.slack.min_severity: %w", err))
	}
	if s.GroupWindow < 0 {
		errs = append(errs, fmt.Errorf("alerts.slack.group_window: must not be negative, got %s", s.GroupWindow))
	}
	if s.PseudonymizeTenants && len(s.PseudonymKey) < 16 {
		errs = append(errs, errors.New("alerts.slack.pseudonym_key: at least 16 characters are required with pseudonymize_tenants"))
	}
	if strings.TrimSpace(s.OutboxPath) == "" {
		errs = append(errs, errors.New("alerts.slack.outbox_path: must not be empty"))
	}
	if s.Timeout <= 0 || s.MaxBackoff <= 0 {
		errs = append(errs, errors.New("alerts.slack.timeout and max_backoff: must be positive"))
	}
	if s.InitialBackoff <= 0 {
		errs = append(errs, fmt.Errorf("alerts.slack.initial_backoff: must be positive, got %s", s.InitialBackoff))
	}
	return errors.Join(errs...)
}

// CheckSecrets refuses a Slack section that names a destination but
// resolved to no secret: alerts would silently go nowhere. The collector
// checks it when it builds the processor, not in Validate: the analyst
// commands read the same config where the secrets need not be set.
func (s *Slack) CheckSecrets() error {
	var errs []error
	for _, k := range s.written {
		switch {
		case k == "token" && s.Token == "", k == "webhook_url" && s.WebhookURL == "":
			errs = append(errs, fmt.Errorf("alerts.slack.%s: is empty (an unset environment variable?); set it, or remove the key to turn Slack off", k))
		case k == "channel" && !s.Enabled() && !slices.Contains(s.written, "token") && !slices.Contains(s.written, "webhook_url"):
			errs = append(errs, errors.New("alerts.slack.token: required with channel; set it, or remove channel to turn Slack off"))
		}
	}
	return errors.Join(errs...)
}
