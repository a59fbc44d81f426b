// Package tenantguardprocessor adapts the collector to the detector: the tenantguard
// processor reads each request's spans into the detector, passes the request
// downstream unchanged, and moves findings through a bounded evidence queue
// to the store and the notifiers, off the span path.
package tenantguardprocessor
