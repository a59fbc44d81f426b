// Package demoapp is a tiny multi-tenant shop, instrumented with the
// OpenTelemetry Go SDK, that end-to-end tests drive to produce real traces:
// a `gateway` service authenticates `Authorization: Bearer tenant:<id>` on
// `GET /inventory?item=ID` (span "GET /inventory", tenant.id = the verified
// tenant) and calls `inventory-svc` over HTTP with W3C traceparent and
// X-Tenant-Id, which answers from an in-memory stock table (spans
// "GET /stock" and "SELECT stock", the latter's tenant.id naming the tenant
// that owns the rows read, its db.query.text the statement). Options.Forgetful
// makes inventory-svc drop its tenant filter, so a tenant reading another
// tenant's item produces a cross-tenant trace and a statement without a
// tenant_id predicate; with the filter on, that read is a 404 that touches
// no foreign rows.
//
// The tenant-scoped route `GET /t/{tenant}/inventory?item=ID` puts the
// tenant in the URL: the gateway span ("GET /t/{tenant}/inventory") carries
// the token's tenant.id and the requested url.path, and is forwarded as is
// to inventory-svc's `GET /t/{tenant}/stock`, whose server span has no
// tenant.id (only a derivation on url.path names its tenant). A token for
// one tenant on another tenant's URL is an IDOR attempt: with the filter on,
// inventory-svc refuses it with 403 before querying, and the gateway passes
// the 403 on (both server spans record http.response.status_code 403 and
// leave the span status unset, as for any 4xx on a server span); forgetful,
// it serves the other tenant's row. Client.TenantInventory makes such calls.
//
// Start takes one TracerProvider per service (see NewTracerProvider) and
// returns both services on loopback httptest servers; NewGatewayHandler and
// NewInventoryHandler give the bare handlers, and Client calls the gateway
// as a tenant would, propagating the caller's span context and returning
// the trace id the gateway recorded.
package demoapp
