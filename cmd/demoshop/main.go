// Command demoshop runs the demo shop (internal/demoapp: a gateway and
// inventory-svc, instrumented with the OpenTelemetry Go SDK) against a
// collector for a while, as a small multi-tenant SaaS would: every round,
// tenants acme, globex and initech read their own stock, and acme asks for
// globex's item on globex's URL and is refused (403). Once, at --leak-at,
// a forgetful inventory-svc (its tenant filter dropped) serves globex's row
// to acme: the one leak a report of the run should show.
//
//	go run ./cmd/tenantguard --config config/local.yaml --config config/demo.yaml &
//	go run ./cmd/demoshop --duration 3m
//	go run ./cmd/tenantguard leaks report --config config/local.yaml
//
// The gateway exports its spans over OTLP/gRPC and inventory-svc over
// OTLP/HTTP, each through the SDK's batching span processor, so a trace's
// spans reach the collector in separate requests, as they do in
// production. When the run ends, demoshop prints one JSON object on
// stdout: the rounds it ran, the requests, the period, and the leak's
// trace id.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tenantguard/tenantguard/internal/demoapp"
)

// TenantInitech is the third tenant: it has no stock of its own, so its
// reads are 404s that touch no one's rows.
const TenantInitech = "initech"

// Summary is what demoshop prints when the run ends.
type Summary struct {
	Rounds int `json:"rounds"`
	// Requests per tenant (the caller's token), refused ones included.
	Requests map[string]int `json:"requests"`
	// Refused are acme's requests for globex's item on globex's URL,
	// refused once a round.
	Refused     int       `json:"refused"`
	LeakTraceID string    `json:"leak_trace_id,omitempty"`
	From        time.Time `json:"from"`
	Until       time.Time `json:"until"`
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "demoshop:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demoshop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	grpcAddr := fs.String("otlp-grpc", "127.0.0.1:4317", "collector's OTLP/gRPC endpoint (the gateway's spans)")
	httpAddr := fs.String("otlp-http", "127.0.0.1:4318", "collector's OTLP/HTTP endpoint (inventory-svc's spans)")
	duration := fs.Duration("duration", 3*time.Minute, "how long to run")
	interval := fs.Duration("interval", 100*time.Millisecond, "pause between rounds")
	leakAt := fs.Duration("leak-at", -1, "when to inject the leak, from the start (default: half the duration; past the duration: never)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *duration <= 0 || *interval < 0 {
		return errors.New("--duration must be positive and --interval not negative")
	}
	if *leakAt < 0 {
		*leakAt = *duration / 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	gwExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(*grpcAddr), otlptracegrpc.WithInsecure())
	if err != nil {
		return fmt.Errorf("OTLP/gRPC exporter: %w", err)
	}
	invExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(*httpAddr), otlptracehttp.WithInsecure())
	if err != nil {
		return fmt.Errorf("OTLP/HTTP exporter: %w", err)
	}
	gwTP, err := demoapp.NewTracerProvider(demoapp.ServiceGateway, sdktrace.WithBatcher(gwExp))
	if err != nil {
		return err
	}
	invTP, err := demoapp.NewTracerProvider(demoapp.ServiceInventory, sdktrace.WithBatcher(invExp))
	if err != nil {
		return err
	}
	// Shutdown exports what is still batched: the run's last spans.
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = gwTP.Shutdown(sctx)
		_ = invTP.Shutdown(sctx)
	}()
	filtering := demoapp.Start(demoapp.Options{Gateway: gwTP, Inventory: invTP})
	defer filtering.Close()
	forgetful := demoapp.Start(demoapp.Options{Gateway: gwTP, Inventory: invTP, Forgetful: true})
	defer forgetful.Close()

	sum := Summary{Requests: map[string]int{}, From: time.Now().UTC()}
	get := func(c *demoapp.Client, tenant, owner, item string, want int) (string, error) {
		resp, err := c.TenantInventory(ctx, tenant, owner, item)
		if err != nil {
			return "", err
		}
		sum.Requests[tenant]++
		if resp.StatusCode != want {
			return "", fmt.Errorf("%s on /t/%s/inventory?item=%s: status %d, want %d", tenant, owner, item, resp.StatusCode, want)
		}
		return resp.TraceID.String(), nil
	}
	shop, leaky := filtering.Client(), forgetful.Client()
	fmt.Fprintf(stderr, "demoshop: running for %s, spans to %s (gRPC) and %s (HTTP)\n", *duration, *grpcAddr, *httpAddr)
	end := sum.From.Add(*duration)
	round := []struct {
		tenant, owner, item string
		want                int
	}{
		{demoapp.TenantAcme, demoapp.TenantAcme, demoapp.ItemAcmeAnvil, http.StatusOK},
		{demoapp.TenantGlobex, demoapp.TenantGlobex, demoapp.ItemGlobexGear, http.StatusOK},
		{TenantInitech, TenantInitech, demoapp.ItemAcmeRocket, http.StatusNotFound},
		{demoapp.TenantAcme, demoapp.TenantGlobex, demoapp.ItemGlobexWidget, http.StatusForbidden}, // refused
	}
rounds:
	for time.Now().Before(end) {
		for _, r := range round {
			if _, err := get(shop, r.tenant, r.owner, r.item, r.want); err != nil {
				if ctx.Err() != nil {
					break rounds // interrupted: the summary counts what was sent
				}
				return err
			}
			if r.want == http.StatusForbidden {
				sum.Refused++
			}
		}
		sum.Rounds++
		if sum.LeakTraceID == "" && time.Since(sum.From) >= *leakAt {
			if sum.LeakTraceID, err = get(leaky, demoapp.TenantAcme, demoapp.TenantGlobex, demoapp.ItemGlobexWidget, http.StatusOK); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "demoshop: leak injected in trace %s\n", sum.LeakTraceID)
		}
		select {
		case <-ctx.Done():
			break rounds
		case <-time.After(*interval):
		}
	}
	sum.Until = time.Now().UTC()
	if err := demoapp.ForceFlush(context.Background(), gwTP, invTP); err != nil {
		return fmt.Errorf("exporting the last spans: %w", err)
	}
	return json.NewEncoder(stdout).Encode(sum)
}
