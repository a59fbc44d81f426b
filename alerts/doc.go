// Package alerts tells people about findings. A Notifier receives each new
// version of a finding after it is durably stored; the log notifier writes
// one structured line per version, and Slack builds on the same interface.
// Notifiers see only what evidence holds (ids, services, span names,
// tenants), never attribute values.
package alerts
