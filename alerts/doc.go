// Package alerts tells people about findings. A Notifier receives each new
// version of a finding as it is raised, whatever the state of the evidence
// store; the log notifier writes one structured line per version, and Slack
// builds on the same interface (with an outbox of its own, so an alert
// survives a restart). Notifiers receive the whole evidence record, but what
// they send out holds ids, services, span names, tenants (pseudonymized in
// Slack when configured) and the finding's message, never the evidence
// spans' attributes.
package alerts
