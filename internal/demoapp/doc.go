// Package demoapp is a tiny multi-tenant shop, instrumented with the
// OpenTelemetry Go SDK, that end-to-end tests drive to produce real traces:
// a `gateway` service authenticates `Authorization: Bearer tenant:<id>` on
// `GET /inventory?item=ID` (span "GET /inventory", tenant.id = the verified
// tenant) and calls `inventory-svc` over HTTP with W3C traceparent and
// X-Tenant-Id, which answers from an in-memory stock table (spans
// "GET /stock" and "SELECT stock", the latter's tenant.id naming the tenant
// that owns the rows read). Options.Forgetful makes inventory-svc drop its
// tenant filter, so a tenant reading another tenant's item produces a
// cross-tenant trace; with the filter on, that read is a 404 that touches no
// foreign rows. Start takes one TracerProvider per service (see
// NewTracerProvider) and returns both services on loopback httptest servers;
// NewGatewayHandler and NewInventoryHandler give the bare handlers, and
// Client calls the gateway as a tenant would, propagating the caller's span
// context and returning the trace id the gateway recorded.
package demoapp
