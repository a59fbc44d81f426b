// Package sharedcomponent shares one resource (an open journal and its
// shipper, a metrics server) among the component instances that name it,
// with a reference count, as the collector's contrib
// internal/sharedcomponent does: the first instance to acquire a key opens
// the resource, the last to release it closes it. The map is owned by the
// component's factory, not the process, so two factories never share.
package sharedcomponent
