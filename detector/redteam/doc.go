// Package redteam runs the tenantguard detector inside a Go service's own
// tests: a Guard is an OpenTelemetry SDK span processor that reads every span
// the services under test end (tenant values under the same keys, span
// attributes before resource attributes, normalised as the collector does)
// and judges them in-process with the production rules. A red-team test
// drives "tenant A's token against tenant B's resource" and asserts not only
// the refusal the client saw but what happened behind it: AssertBlocked
// checks that the request was refused and that no span of its trace touched
// B, AssertNoLeaks that no trace crossed a tenant boundary, and the Guard
// fails the test at cleanup for any finding no assertion reported.
package redteam
