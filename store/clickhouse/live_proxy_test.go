package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/internal/tcpproxy"
	"github.com/tenantguard/tenantguard/store"
)

// proxies are the proxies of a config's endpoints, stopped and started
// together: one server (or cluster) going down.
type proxies []*tcpproxy.Proxy

func (ps proxies) Stop() {
	for _, p := range ps {
		p.Stop()
	}
}

func (ps proxies) Start(t *testing.T) {
	t.Helper()
	for _, p := range ps {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
	}
}

// The part of a server outage this machine can run: the shipper, the
// Connector and the real driver against a proxy whose server is stopped,
// then one that hangs up on every connection. Records stay in the journal,
// failures and the backlog are reported, nothing is dead-lettered however
// many attempts fail (a dead server is never the data's fault).
func TestShipperThroughAStoppedProxyKeepsEveryRecord(t *testing.T) {
	hangUp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := hangUp.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = hangUp.Close() })
	p := tcpproxy.New(t, hangUp.Addr().String())
	p.Stop()

	cfg := testConfig()
	cfg.Endpoints = []string{p.Addr()}
	cfg.TLS.Insecure = true
	path := tempJournal(t)
	recs := findings(0, 6)
	appendJournal(t, path, recs...)
	conn := NewConnector(cfg, zaptest.NewLogger(t))
	defer conn.Close()
	var attempts atomic.Int32
	s, err := NewShipper(cfg, path, writerFunc(func(ctx context.Context, b []store.Evidence, tok string) error {
		attempts.Add(1)
		return conn.Write(ctx, b, tok)
	}), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	failing := func(phase string, atLeast int32) {
		t.Helper()
		eventually(t, phase, func() (bool, string) {
			st := s.Status()
			return attempts.Load() >= atLeast && st.LastError != "" && st.Backlog == int64(len(recs)),
				fmt.Sprintf("%d attempts, %+v", attempts.Load(), st)
		})
	}
	failing("failures while nothing listens", int32(2*cfg.MaxAttempts))
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	from := attempts.Load()
	failing("failures while the server hangs up", from+int32(2*cfg.MaxAttempts))
	if p.Accepted() == 0 {
		t.Fatal("the driver never reached the proxy")
	}
	st := s.Status()
	if st.Shipped != 0 || st.DeadLetters != 0 {
		t.Fatalf("a dead server must not ship or dead-letter anything: %+v", st)
	}
	if _, err := os.Stat(path + DeadLetterSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dead-letter file written for a dead server: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); !errors.Is(err, ErrNotDrained) {
		t.Fatalf("Stop with the server down: %v, want ErrNotDrained", err)
	}
}

type writerFunc func(ctx context.Context, batch []store.Evidence, token string) error

func (f writerFunc) Write(ctx context.Context, batch []store.Evidence, token string) error {
	return f(ctx, batch, token)
}

// ---------------------------------------------------------------- live: a real server stopped and started

// liveProxiedConfig is liveConfig with each endpoint behind its own proxy,
// on a fresh database. It returns the direct config too, for checking the
// database without the proxy.
func liveProxiedConfig(t *testing.T) (direct, proxied config.ClickHouse, px proxies) {
	t.Helper()
	direct = liveConfig(t)
	freshDatabase(t, direct)
	proxied = direct
	proxied.Endpoints = nil
	for _, ep := range direct.Endpoints {
		p := tcpproxy.New(t, ep)
		px = append(px, p)
		proxied.Endpoints = append(proxied.Endpoints, p.Addr())
	}
	if !direct.TLS.Insecure && direct.TLS.ServerName == "" {
		// The certificate names the server, not the proxy.
		host, _, _ := net.SplitHostPort(direct.Endpoints[0])
		proxied.TLS.ServerName = host
	}
	return direct, proxied, px
}

// cutMidBatch arms every proxy to stop right after the nth insert into
// tenant_leak_spans from now goes out: that batch's findings are in
// tenant_leaks, its spans never arrive (or arrive and their acknowledgement
// is lost). Over HTTP the statement travels URL-encoded in the request
// line. Through TLS the query is not visible; it returns nil then.
func cutMidBatch(cfg config.ClickHouse, px proxies, nth int) []<-chan struct{} {
	if !cfg.TLS.Insecure {
		return nil
	}
	marker := "INSERT INTO tenant_leak_spans"
	if cfg.Protocol == "http" {
		marker = url.QueryEscape(marker)
	}
	var cuts []<-chan struct{}
	for _, p := range px {
		cuts = append(cuts, p.StopWhenClientSends(marker, nth))
	}
	return cuts
}

// awaitCut waits for an armed cut, or (through TLS, where none can be
// armed) stops the proxies once the shipper has made progress.
func awaitCut(t *testing.T, cuts []<-chan struct{}, px proxies, s *Shipper, shippedBefore uint64) {
	t.Helper()
	if cuts == nil {
		eventually(t, "progress before the outage", func() (bool, string) {
			st := s.Status()
			return st.Shipped > shippedBefore, fmt.Sprintf("%+v", st)
		})
		px.Stop()
		return
	}
	fired, done := make(chan struct{}), make(chan struct{})
	defer close(done)
	var once sync.Once
	for _, c := range cuts {
		go func() {
			select {
			case <-c:
				once.Do(func() { close(fired) })
			case <-done:
			}
		}()
	}
	select {
	case <-fired:
		px.Stop() // the other endpoints, if any, go down with it
	case <-time.After(30 * time.Second):
		t.Fatalf("the proxy never saw the insert it was to cut: %+v", s.Status())
	}
}

// failingWithBacklog waits until the shipper reports a failure newer than
// its last success and the backlog is everything appended and not shipped.
func failingWithBacklog(t *testing.T, s *Shipper, appended int) ShipperStatus {
	t.Helper()
	var st ShipperStatus
	eventually(t, "failures and the backlog while the server is down", func() (bool, string) {
		st = s.Status()
		return st.LastError != "" && st.LastErrorAt.After(st.LastSuccessAt) && st.Backlog > 0 &&
			st.Backlog == int64(appended)-int64(st.Shipped), fmt.Sprintf("%+v", st)
	})
	if st.DeadLetters != 0 {
		t.Fatalf("records dead-lettered because the server was down: %+v", st)
	}
	return st
}

// liveProxyFixture is the live fixture and twenty more findings: enough
// batches (of 4) for an outage to land in the middle of shipping.
func liveProxyFixture() []store.Evidence {
	return append(liveFixture(), findings(20, 40)...)
}

func TestLiveProxyServerStoppedAndStartedDeliversEveryFindingOnce(t *testing.T) {
	direct, cfg, px := liveProxiedConfig(t)
	path := tempJournal(t)
	recs := liveProxyFixture()
	logger := zaptest.NewLogger(t)

	conn := NewConnector(cfg, logger)
	defer conn.Close()
	s, err := NewShipper(cfg, path, conn, logger)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	}()

	// 1. The server stops while the collector is idle: the driver's pooled
	// connections are dead when the next findings come.
	appendJournal(t, path, recs[:5]...)
	s.Wake()
	eventually(t, "the first records", func() (bool, string) {
		st := s.Status()
		return st.Shipped == 5 && st.Backlog == 0, fmt.Sprintf("%+v", st)
	})
	if px[0].Accepted() == 0 {
		t.Fatal("the driver does not go through the proxy")
	}
	px.Stop()
	appendJournal(t, path, recs[5:9]...)
	s.Wake()
	failingWithBacklog(t, s, 9)
	px.Start(t)
	eventually(t, "the backlog after the first outage", func() (bool, string) {
		st := s.Status()
		return st.Backlog == 0 && st.Shipped == 9, fmt.Sprintf("%+v", st)
	})

	// 2. The server stops mid-stream: while a backlog ships, between the
	// two inserts of a batch. More findings arrive while it is down.
	cuts := cutMidBatch(cfg, px, 2)
	appendJournal(t, path, recs[9:25]...)
	s.Wake()
	awaitCut(t, cuts, px, s, 9)
	appendJournal(t, path, recs[25:]...)
	s.Wake()
	st := failingWithBacklog(t, s, len(recs))
	if st.Shipped <= 9 || st.Shipped >= uint64(len(recs)) {
		t.Fatalf("the outage was not mid-stream: %+v", st)
	}
	px.Start(t)
	eventually(t, "the backlog after the second outage", func() (bool, string) {
		st := s.Status()
		return st.Backlog == 0 && st.Shipped == uint64(len(recs)), fmt.Sprintf("%+v", st)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st.DeadLetters != 0 {
		t.Fatalf("dead letters: %+v", st)
	}
	assertEachVersionOnce(t, direct, recs)
}

func TestLiveProxyCollectorRestartsWhileTheServerIsDown(t *testing.T) {
	direct, cfg, px := liveProxiedConfig(t)
	path := tempJournal(t)
	recs := liveProxyFixture()
	logger := zaptest.NewLogger(t)

	conn := NewConnector(cfg, logger)
	s, err := NewShipper(cfg, path, conn, logger)
	if err != nil {
		t.Fatal(err)
	}
	// The server stops between the two inserts of the second batch: the
	// cursor records that batch as in flight.
	cuts := cutMidBatch(cfg, px, 2)
	appendJournal(t, path, recs[:13]...)
	s.Start()
	awaitCut(t, cuts, px, s, 0)
	appendJournal(t, path, recs[13:17]...)
	s.Wake()
	before := failingWithBacklog(t, s, 17)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); !errors.Is(err, ErrNotDrained) {
		t.Fatalf("Stop with the server down: %v, want ErrNotDrained", err)
	}
	_ = conn.Close()

	// The collector starts again while the server is still down, and more
	// findings arrive.
	appendJournal(t, path, recs[17:]...)
	conn2 := NewConnector(cfg, logger)
	defer conn2.Close()
	s2, err := NewShipper(cfg, path, conn2, logger)
	if err != nil {
		t.Fatal(err)
	}
	if st := s2.Status(); st.Backlog != int64(len(recs))-int64(before.Shipped) {
		t.Fatalf("after the restart the backlog is %d, want %d: %+v", st.Backlog, int64(len(recs))-int64(before.Shipped), st)
	}
	s2.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s2.Stop(ctx)
	}()
	eventually(t, "the restarted shipper to fail", func() (bool, string) {
		st := s2.Status()
		return st.LastError != "" && st.Shipped == 0 && st.DeadLetters == 0, fmt.Sprintf("%+v", st)
	})

	px.Start(t)
	drainAndStop(t, s2)
	if st := s2.Status(); st.DeadLetters != 0 || st.Shipped != uint64(len(recs))-before.Shipped {
		t.Fatalf("the restarted shipper shipped %+v, want %d records and no dead letters", st, uint64(len(recs))-before.Shipped)
	}
	assertEachVersionOnce(t, direct, recs)
}
