// Package detector decides whether a trace crossed a tenant boundary.
//
// It keeps compact per-trace state (the tenants seen and, for each span, only
// its ids, endpoint and tenant), evaluates the rules as spans stream in, and
// reports a Finding the moment a trace touches a second tenant, updating the
// same finding (same leak id) as later spans arrive. It knows nothing of the
// collector: callers translate their spans into Span values, which is what lets
// the same engine run inside the collector and offline over OTLP files.
package detector
