package demoapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Service names, as set in each service's resource (service.name).
const (
	ServiceGateway   = "gateway"
	ServiceInventory = "inventory-svc"
)

// Span names and attribute keys the services record.
const (
	SpanGateway   = "GET /inventory"
	SpanStock     = "GET /stock"
	SpanSelect    = "SELECT stock"
	AttrTenant    = "tenant.id"
	AttrURLPath   = "url.path"
	HeaderTenant  = "X-Tenant-Id"
	HeaderTraceID = "X-Trace-Id"
	scopeName     = "github.com/tenantguard/tenantguard/internal/demoapp"
)

// The tenant-scoped routes: the tenant whose data is asked for is in the
// URL path. Server spans are named "{method} {http.route}", as HTTP
// instrumentation names them; their url.path is the path as requested
// (e.g. /t/globex/stock), so the path tenant is visible only to a
// derivation on url.path.
const (
	RouteTenantInventory = "/t/{tenant}/inventory"
	RouteTenantStock     = "/t/{tenant}/stock"
	SpanTenantGateway    = "GET " + RouteTenantInventory
	SpanTenantStock      = "GET " + RouteTenantStock
)

// The tenants and a few of their items.
const (
	TenantAcme   = "acme"
	TenantGlobex = "globex"

	ItemAcmeAnvil    = "anvil-1"  // owned by acme
	ItemAcmeRocket   = "rocket-7" // owned by acme
	ItemGlobexWidget = "widget-9" // owned by globex
	ItemGlobexGear   = "gear-3"   // owned by globex
)

// Item is one row of the stock table, as the gateway returns it.
type Item struct {
	ID       string `json:"item"`
	Tenant   string `json:"tenant"`
	Name     string `json:"name"`
	Quantity int    `json:"quantity"`
}

// Catalog returns the stock table. Item ids are unique across tenants, so a
// forgetful lookup by id alone reads exactly one other tenant's row.
func Catalog() []Item {
	return []Item{
		{ID: ItemAcmeAnvil, Tenant: TenantAcme, Name: "Anvil", Quantity: 12},
		{ID: ItemAcmeRocket, Tenant: TenantAcme, Name: "Rocket skates", Quantity: 3},
		{ID: ItemGlobexWidget, Tenant: TenantGlobex, Name: "Widget", Quantity: 40},
		{ID: ItemGlobexGear, Tenant: TenantGlobex, Name: "Gear", Quantity: 7},
	}
}

// Queries inventory-svc records as db.query.text.
const (
	QueryFiltered  = "SELECT item_id, tenant_id, name, quantity FROM stock WHERE item_id = $1 AND tenant_id = $2"
	QueryForgetful = "SELECT item_id, tenant_id, name, quantity FROM stock WHERE item_id = $1"
)

var propagator = propagation.TraceContext{}

// NewTracerProvider returns an SDK TracerProvider whose resource is the SDK
// default with service.name set to service. Pass exporters as options, e.g.
// sdktrace.WithBatcher(exp).
func NewTracerProvider(service string, opts ...sdktrace.TracerProviderOption) (*sdktrace.TracerProvider, error) {
	res, err := resource.Merge(resource.Default(),
		resource.NewSchemaless(attribute.String("service.name", service)))
	if err != nil {
		return nil, fmt.Errorf("building %s resource: %w", service, err)
	}
	all := append([]sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
	}, opts...)
	return sdktrace.NewTracerProvider(all...), nil
}

// Options configures Start.
type Options struct {
	// Gateway and Inventory are the services' tracer providers; their
	// resources should name the services (NewTracerProvider does).
	Gateway   trace.TracerProvider
	Inventory trace.TracerProvider
	// Forgetful makes inventory-svc skip its tenant filter: it reads the
	// requested item whoever owns it (its statement has no tenant_id
	// predicate), and on /t/{tenant}/stock it serves any path tenant, not
	// just the caller's. That is the leak.
	Forgetful bool
}

// Shop is the two services running on loopback.
type Shop struct {
	Gateway   *httptest.Server
	Inventory *httptest.Server
}

// Start runs inventory-svc and the gateway on loopback httptest servers.
// Close stops both.
func Start(opts Options) *Shop {
	inv := httptest.NewServer(NewInventoryHandler(opts.Inventory, opts.Forgetful))
	gw := httptest.NewServer(NewGatewayHandler(opts.Gateway, inv.URL, inv.Client()))
	return &Shop{Gateway: gw, Inventory: inv}
}

// Close stops both servers.
func (s *Shop) Close() {
	s.Gateway.Close()
	s.Inventory.Close()
}

// Client returns a client for the gateway.
func (s *Shop) Client() *Client {
	return &Client{BaseURL: s.Gateway.URL, HTTP: s.Gateway.Client()}
}

// NewGatewayHandler serves GET /inventory?item=ID and
// GET /t/{tenant}/inventory?item=ID. It trusts only the bearer token for
// the caller's tenant (any incoming X-Tenant-Id is ignored) and passes the
// verified tenant to inventory-svc at inventoryURL in X-Tenant-Id. On the
// tenant-scoped route it forwards the path tenant as it came
// (/t/{tenant}/stock): it authenticates, inventory-svc authorises, so a
// token for one tenant against another tenant's URL (an IDOR attempt)
// reaches inventory-svc, and the gateway answers what inventory-svc
// answered (403 when it refused).
func NewGatewayHandler(tp trace.TracerProvider, inventoryURL string, client *http.Client) http.Handler {
	if client == nil {
		client = http.DefaultClient
	}
	g := &gateway{tracer: tracerOf(tp), inventory: strings.TrimRight(inventoryURL, "/"), client: client}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /inventory", g.serveInventory)
	mux.HandleFunc("GET "+RouteTenantInventory, g.serveTenantInventory)
	return mux
}

type gateway struct {
	tracer    trace.Tracer
	inventory string
	client    *http.Client
}

func (g *gateway) serveInventory(w http.ResponseWriter, r *http.Request) {
	ctx, span, reply := serverSpan(g.tracer, w, r, SpanGateway, "/inventory")
	defer span.End()
	w.Header().Set(HeaderTraceID, span.SpanContext().TraceID().String())

	tenant, ok := bearerTenant(r.Header.Get("Authorization"))
	if !ok {
		reply(http.StatusUnauthorized, errorBody("missing or invalid bearer token"))
		return
	}
	span.SetAttributes(attribute.String(AttrTenant, tenant))
	item := r.URL.Query().Get("item")
	if item == "" {
		reply(http.StatusBadRequest, errorBody("item is required"))
		return
	}
	g.forward(ctx, span, reply, tenant, "/stock?item="+url.QueryEscape(item))
}

// serveTenantInventory serves GET /t/{tenant}/inventory?item=ID. The span's
// tenant.id is the token's tenant; the path tenant is only in url.path.
func (g *gateway) serveTenantInventory(w http.ResponseWriter, r *http.Request) {
	ctx, span, reply := serverSpan(g.tracer, w, r, SpanTenantGateway, RouteTenantInventory)
	defer span.End()
	w.Header().Set(HeaderTraceID, span.SpanContext().TraceID().String())

	tenant, ok := bearerTenant(r.Header.Get("Authorization"))
	if !ok {
		reply(http.StatusUnauthorized, errorBody("missing or invalid bearer token"))
		return
	}
	span.SetAttributes(attribute.String(AttrTenant, tenant))
	owner := r.PathValue("tenant")
	if !validTenant(owner) {
		reply(http.StatusNotFound, errorBody("no such tenant"))
		return
	}
	item := r.URL.Query().Get("item")
	if item == "" {
		reply(http.StatusBadRequest, errorBody("item is required"))
		return
	}
	g.forward(ctx, span, reply, tenant, "/t/"+owner+"/stock?item="+url.QueryEscape(item))
}

// forward asks inventory-svc for path (with its query) on behalf of the
// verified tenant and replies with what it answered: the item on 200, 403
// and 404 as they came, 502 for anything else.
func (g *gateway) forward(ctx context.Context, span trace.Span, reply func(int, any), tenant, path string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.inventory+path, nil)
	if err != nil {
		span.RecordError(err)
		reply(http.StatusInternalServerError, errorBody("building inventory request"))
		return
	}
	req.Header.Set(HeaderTenant, tenant)
	propagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := g.client.Do(req)
	if err != nil {
		span.RecordError(err)
		reply(http.StatusBadGateway, errorBody("inventory unavailable"))
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		span.RecordError(err)
		reply(http.StatusBadGateway, errorBody("reading inventory response"))
		return
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var it Item
		if err := json.Unmarshal(body, &it); err != nil {
			span.RecordError(err)
			reply(http.StatusBadGateway, errorBody("bad inventory response"))
			return
		}
		reply(http.StatusOK, it)
	case http.StatusForbidden:
		reply(http.StatusForbidden, errorBody("forbidden"))
	case http.StatusNotFound:
		reply(http.StatusNotFound, errorBody("no such item"))
	default:
		reply(http.StatusBadGateway, errorBody(fmt.Sprintf("inventory answered %d", resp.StatusCode)))
	}
}

// bearerTenant parses "Bearer tenant:<id>". This demo's "verification" is
// the shape check; a real gateway would verify a signed token here.
func bearerTenant(h string) (string, bool) {
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tenant, ok := strings.CutPrefix(strings.TrimSpace(cred), "tenant:")
	if !ok || !validTenant(tenant) {
		return "", false
	}
	return tenant, true
}

func validTenant(t string) bool {
	if t == "" || len(t) > 64 {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// NewInventoryHandler serves GET /stock?item=ID for the tenant named in
// X-Tenant-Id, and GET /t/{tenant}/stock?item=ID, where the path names the
// tenant whose stock is read. Unless forgetful, it only reads the caller's
// rows, and refuses a path tenant other than the caller's (X-Tenant-Id)
// with 403 before reading anything. Forgetful, it does neither: it serves
// whatever path it is asked and reads the item whoever owns it.
func NewInventoryHandler(tp trace.TracerProvider, forgetful bool) http.Handler {
	inv := &inventory{tracer: tracerOf(tp), forgetful: forgetful, rows: Catalog()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stock", inv.serveStock)
	mux.HandleFunc("GET "+RouteTenantStock, inv.serveTenantStock)
	return mux
}

type inventory struct {
	tracer    trace.Tracer
	forgetful bool
	rows      []Item
}

func (inv *inventory) serveStock(w http.ResponseWriter, r *http.Request) {
	ctx, span, reply := serverSpan(inv.tracer, w, r, SpanStock, "/stock")
	defer span.End()
	tenant := r.Header.Get(HeaderTenant)
	if !validTenant(tenant) {
		reply(http.StatusBadRequest, errorBody("X-Tenant-Id is required"))
		return
	}
	item := r.URL.Query().Get("item")
	found, ok := inv.selectStock(ctx, tenant, item)
	if !ok {
		reply(http.StatusNotFound, errorBody("no such item"))
		return
	}
	reply(http.StatusOK, found)
}

// serveTenantStock serves GET /t/{tenant}/stock. Its span carries no
// tenant.id (like GET /stock); the path tenant is in url.path. A refusal is
// a 4xx, so the span status stays unset, as OpenTelemetry's HTTP
// conventions have it for server spans.
func (inv *inventory) serveTenantStock(w http.ResponseWriter, r *http.Request) {
	ctx, span, reply := serverSpan(inv.tracer, w, r, SpanTenantStock, RouteTenantStock)
	defer span.End()
	caller := r.Header.Get(HeaderTenant)
	if !validTenant(caller) {
		reply(http.StatusBadRequest, errorBody("X-Tenant-Id is required"))
		return
	}
	owner := r.PathValue("tenant")
	if !validTenant(owner) {
		reply(http.StatusNotFound, errorBody("no such tenant"))
		return
	}
	if !inv.forgetful && owner != caller {
		reply(http.StatusForbidden, errorBody(fmt.Sprintf("tenant %s may not read tenant %s's stock", caller, owner)))
		return
	}
	found, ok := inv.selectStock(ctx, owner, r.URL.Query().Get("item"))
	if !ok {
		reply(http.StatusNotFound, errorBody("no such item"))
		return
	}
	reply(http.StatusOK, found)
}

// selectStock is the "database" call, scoped to tenant unless forgetful.
// Its span's tenant.id is the tenant whose rows were read: the owner of the
// row returned, or the tenant the request was scoped to when nothing was
// returned (no other tenant's row was touched).
func (inv *inventory) selectStock(ctx context.Context, tenant, item string) (Item, bool) {
	query := QueryFiltered
	if inv.forgetful {
		query = QueryForgetful
	}
	_, span := inv.tracer.Start(ctx, SpanSelect, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("db.system.name", "postgresql"),
			attribute.String("db.namespace", "shop"),
			attribute.String("db.collection.name", "stock"),
			attribute.String("db.operation.name", "SELECT"),
			attribute.String("db.query.text", query),
		))
	defer span.End()
	var (
		found Item
		rows  int
	)
	for _, row := range inv.rows {
		if row.ID != item {
			continue
		}
		if !inv.forgetful && row.Tenant != tenant {
			continue
		}
		found = row
		rows++
		break
	}
	owner := tenant
	if rows > 0 {
		owner = found.Tenant
	}
	span.SetAttributes(
		attribute.String(AttrTenant, owner),
		attribute.Int("db.response.returned_rows", rows),
	)
	return found, rows > 0
}

// Client calls the gateway as a tenant's browser would.
type Client struct {
	BaseURL string
	HTTP    *http.Client
}

// Response is what the gateway answered.
type Response struct {
	StatusCode int
	// Item is set on 200.
	Item *Item
	// TraceID is the trace the gateway recorded the request in (from its
	// X-Trace-Id header); it is the caller's trace when ctx carried a span.
	TraceID trace.TraceID
}

// Inventory asks for item as tenant (no Authorization header when tenant is
// empty). A span context in ctx is propagated as W3C traceparent, so the
// caller decides the trace id.
func (c *Client) Inventory(ctx context.Context, tenant, item string) (*Response, error) {
	return c.get(ctx, tenant, "/inventory?item="+url.QueryEscape(item))
}

// TenantInventory asks GET /t/{owner}/inventory?item=ID with tenant's
// token: owner other than tenant is an IDOR attempt. The gateway answers
// 403 when inventory-svc refuses it, 200 with owner's row when a forgetful
// inventory-svc serves it. Otherwise as Inventory.
func (c *Client) TenantInventory(ctx context.Context, tenant, owner, item string) (*Response, error) {
	return c.get(ctx, tenant, "/t/"+url.PathEscape(owner)+"/inventory?item="+url.QueryEscape(item))
}

func (c *Client) get(ctx context.Context, tenant, pathAndQuery string) (*Response, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.BaseURL, "/")+pathAndQuery, nil)
	if err != nil {
		return nil, err
	}
	if tenant != "" {
		req.Header.Set("Authorization", "Bearer tenant:"+tenant)
	}
	propagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	out := &Response{StatusCode: resp.StatusCode}
	if h := resp.Header.Get(HeaderTraceID); h != "" {
		if out.TraceID, err = trace.TraceIDFromHex(h); err != nil {
			return nil, fmt.Errorf("gateway sent a bad %s %q: %w", HeaderTraceID, h, err)
		}
	}
	if resp.StatusCode == http.StatusOK {
		var it Item
		if err := json.Unmarshal(body, &it); err != nil {
			return nil, fmt.Errorf("decoding gateway response: %w", err)
		}
		out.Item = &it
	}
	return out, nil
}

// ForceFlush flushes every provider that can be flushed (SDK providers can),
// so that all ended spans have been exported when it returns.
func ForceFlush(ctx context.Context, tps ...trace.TracerProvider) error {
	var errs []error
	for _, tp := range tps {
		if f, ok := tp.(interface{ ForceFlush(context.Context) error }); ok {
			errs = append(errs, f.ForceFlush(ctx))
		}
	}
	return errors.Join(errs...)
}

func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return noop.NewTracerProvider().Tracer(scopeName)
	}
	return tp.Tracer(scopeName)
}

func errorBody(msg string) map[string]string { return map[string]string{"error": msg} }

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// serverSpan continues the caller's trace in a server span named name, and
// returns a reply function that records the status code on it.
func serverSpan(tracer trace.Tracer, w http.ResponseWriter, r *http.Request, name, route string) (context.Context, trace.Span, func(int, any)) {
	ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("http.route", route),
			attribute.String(AttrURLPath, r.URL.Path),
		))
	reply := func(code int, body any) {
		span.SetAttributes(attribute.Int("http.response.status_code", code))
		if code >= 500 {
			span.SetStatus(codes.Error, http.StatusText(code))
		}
		writeJSON(w, code, body)
	}
	return ctx, span, reply
}
