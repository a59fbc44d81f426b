package clickhouse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/store"
)

// ---------------------------------------------------------------- the proxy

// tcpProxy is a loopback TCP proxy, put between the driver and a real
// server to stop and start "the server" from a test: Stop closes the
// listener and every open connection (both sides), so the driver sees a
// dead server (its connections cut, new ones refused); Start listens again
// on the same address, so the driver's configured endpoint works again.
type tcpProxy struct {
	target string
	addr   string

	mu     sync.Mutex
	ln     net.Listener       // nil while stopped
	cancel context.CancelFunc // cancels the current run's dials to target
	conns  map[net.Conn]struct{}
	run    int // incremented by Stop: connections of an earlier run are not kept
	cutOn  []byte
	cutNth int
	cut    chan struct{} // closed when a cutOn match stopped the proxy

	wg       sync.WaitGroup
	accepted atomic.Int64
	// life serialises Stop and Start: a Stop the marker set off waits for
	// the proxy's goroutines, and a Start must not add one meanwhile.
	life sync.Mutex
}

// newTCPProxy listens on 127.0.0.1 (a free port) and forwards to target.
// The test's cleanup stops it.
func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.mu.Lock()
	p.serve(ln)
	p.mu.Unlock()
	t.Cleanup(p.Stop)
	return p
}

// Addr is the proxy's address, the same across Stop and Start.
func (p *tcpProxy) Addr() string { return p.addr }

// Accepted counts the connections the proxy has accepted.
func (p *tcpProxy) Accepted() int64 { return p.accepted.Load() }

// serve accepts on ln until Stop closes it. It holds p.mu.
func (p *tcpProxy) serve(ln net.Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	p.ln, p.cancel = ln, cancel
	run := p.run
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // Stop closed the listener
			}
			p.accepted.Add(1)
			if !p.track(c, run) {
				_ = c.Close()
				continue
			}
			p.wg.Add(1)
			go p.forward(ctx, c, run)
		}
	}()
}

// track registers an open connection of run, or says no if that run was
// stopped meanwhile.
func (p *tcpProxy) track(c net.Conn, run int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run != run || p.ln == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *tcpProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		_ = c.Close()
	}
}

func (p *tcpProxy) forward(ctx context.Context, client net.Conn, run int) {
	defer p.wg.Done()
	var d net.Dialer
	up, err := d.DialContext(ctx, "tcp", p.target)
	if err != nil {
		p.untrack(client)
		return
	}
	if !p.track(up, run) {
		_ = up.Close()
		p.untrack(client)
		return
	}
	var both sync.WaitGroup
	both.Add(2)
	go func() { defer both.Done(); p.pipe(up, client, true) }()
	go func() { defer both.Done(); p.pipe(client, up, false) }()
	both.Wait()
	p.untrack(client, up)
}

// pipe copies src to dst. At src's end of stream it passes the half-close
// on; on an error (a connection cut by Stop, a reset) it closes both, which
// ends the other direction too.
func (p *tcpProxy) pipe(dst, src net.Conn, fromClient bool) {
	buf := make([]byte, 32<<10)
	var tail []byte // the end of the previous chunk, for a marker split across reads
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				_, _ = dst.Close(), src.Close()
				return
			}
			if cut := p.clientCut(fromClient, &tail, buf[:n]); cut != nil {
				// Forward nothing more: whatever the client sends after the
				// marker never reaches the server. Stop waits for this
				// goroutine, so it runs on another; the cut is announced
				// only once the proxy is down, so that a test restarting
				// it then cannot be stopped again by this late Stop.
				go func() {
					p.Stop()
					close(cut)
				}()
				return
			}
		}
		if errors.Is(rerr, io.EOF) {
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
				return
			}
			_ = dst.Close()
			return
		}
		if rerr != nil {
			_, _ = dst.Close(), src.Close()
			return
		}
	}
}

// clientCut is matchCut on what the client sends; what the server sends
// never cuts.
func (p *tcpProxy) clientCut(fromClient bool, tail *[]byte, chunk []byte) chan struct{} {
	if !fromClient {
		return nil
	}
	return p.matchCut(tail, chunk)
}

// matchCut returns the cut's channel when chunk completes the cutNth
// occurrence of cutOn since StopWhenClientSends armed it, nil otherwise.
func (p *tcpProxy) matchCut(tail *[]byte, chunk []byte) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.cutOn) == 0 {
		return nil
	}
	data := append(*tail, chunk...)
	// Occurrences that end inside this chunk (those within the tail were
	// counted with the previous one).
	for i := 0; ; {
		j := bytes.Index(data[i:], p.cutOn)
		if j < 0 {
			break
		}
		i += j + len(p.cutOn)
		if i <= len(*tail) {
			continue
		}
		p.cutNth--
		if p.cutNth == 0 {
			p.cutOn = nil
			return p.cut
		}
	}
	if k := len(p.cutOn) - 1; len(data) > k {
		data = data[len(data)-k:]
	}
	*tail = append((*tail)[:0], data...)
	return nil
}

// StopWhenClientSends arms the proxy to stop itself right after forwarding
// the nth occurrence (from now) of marker in what clients send; nothing the
// client sends after that chunk reaches the server. The channel is closed
// once the proxy has stopped. Plain text on the wire only: a marker is never seen through TLS.
func (p *tcpProxy) StopWhenClientSends(marker string, nth int) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutOn, p.cutNth, p.cut = []byte(marker), nth, make(chan struct{})
	return p.cut
}

// Stop closes the listener and cuts every open connection; it returns once
// all the proxy's goroutines are done. Stopping a stopped proxy is a no-op.
func (p *tcpProxy) Stop() {
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
		p.cancel()
	}
	p.run++
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
	p.mu.Unlock()
	p.wg.Wait()
}

// Start listens again on the proxy's address. Starting a running proxy is a
// no-op. The address is normally free again at once (Go listeners set
// SO_REUSEADDR); a short retry covers the port being briefly taken.
func (p *tcpProxy) Start() error {
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return nil
	}
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(ln)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("proxy: listening again on %s: %w", p.addr, err)
}

// proxies are the proxies of a config's endpoints, stopped and started
// together: one server (or cluster) going down.
type proxies []*tcpProxy

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

// ---------------------------------------------------------------- the proxy, tested without ClickHouse

// echoServer echoes each connection until its client half-closes, then
// closes it and reports that on closed.
func echoServer(t *testing.T) (addr string, closed <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 100)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
				_ = c.Close()
				done <- struct{}{}
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return ln.Addr().String(), done
}

func echoRoundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo through the proxy: %q, %v", got, err)
	}
}

func waitClosed(t *testing.T, closed <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestTCPProxyStopCutsConnectionsAndStartReopensTheSameAddress(t *testing.T) {
	echo, echoClosed := echoServer(t)
	p := newTCPProxy(t, echo)
	addr := p.Addr()

	c1, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	echoRoundTrip(t, c1, "hello")

	p.Stop()
	// The open connection is cut: the client reads the end of it (not a
	// timeout), and the server side is closed too.
	_ = c1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c1.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection open across Stop still works: read %d bytes, %v", n, err)
	}
	waitClosed(t, echoClosed, "Stop to close the server side of the cut connection")
	// Nothing listens: new connections are refused, as by a stopped server.
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("Stop left the address accepting connections")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dialling a stopped proxy: %v, want connection refused", err)
	}
	p.Stop() // a no-op

	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if p.Addr() != addr {
		t.Fatalf("Start moved the proxy from %s to %s", addr, p.Addr())
	}
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("after Start: %v", err)
	}
	defer c2.Close()
	echoRoundTrip(t, c2, "again")
	if err := p.Start(); err != nil { // a no-op
		t.Fatal(err)
	}
	echoRoundTrip(t, c2, "still")
	// A half-close passes through: the server sees the end of the request,
	// answers and closes, and the client reads the answer, then the end.
	if _, err := io.WriteString(c2, "bye"); err != nil {
		t.Fatal(err)
	}
	if err := c2.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(c2); err != nil || string(got) != "bye" {
		t.Fatalf("after a half-close: %q, %v", got, err)
	}
	waitClosed(t, echoClosed, "the server to close after the client's half-close")
	if n := p.Accepted(); n != 2 {
		t.Fatalf("the proxy accepted %d connections, want 2 (a refused dial is not one)", n)
	}
}

func TestTCPProxyStopsWhenTheClientSendsTheMarker(t *testing.T) {
	echo, echoClosed := echoServer(t)
	p := newTCPProxy(t, echo)
	cut := p.StopWhenClientSends("INSERT INTO t", 2)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoRoundTrip(t, c, "SELECT 1; INSERT INTO t VALUES (1);")
	// The second occurrence arrives split across two reads.
	echoRoundTrip(t, c, "INSERT IN")
	if _, err := io.WriteString(c, "TO t VALUES (2);"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cut:
	case <-time.After(5 * time.Second):
		t.Fatal("the second marker did not stop the proxy")
	}
	waitClosed(t, echoClosed, "the server side to be cut")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	// The echo of the marker's chunk may still arrive; then the end.
	if _, err := io.ReadAll(c); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the client's connection was not cut")
	}
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		c2.Close()
		t.Fatal("the proxy still accepts after the marker stopped it")
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
	p := newTCPProxy(t, hangUp.Addr().String())
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
		p := newTCPProxy(t, ep)
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
