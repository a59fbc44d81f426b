package tcpproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a loopback TCP proxy, put between a client and a real
// server to stop and start "the server" from a test: Stop closes the
// listener and every open connection (both sides), so the client sees a
// dead server (its connections cut, new ones refused); Start listens again
// on the same address, so the client's configured endpoint works again.
type Proxy struct {
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

// New listens on 127.0.0.1 (a free port) and forwards to target.
// The test's cleanup stops it.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.mu.Lock()
	p.serve(ln)
	p.mu.Unlock()
	t.Cleanup(p.Stop)
	return p
}

// Addr is the proxy's address, the same across Stop and Start.
func (p *Proxy) Addr() string { return p.addr }

// Accepted counts the connections the proxy has accepted.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// serve accepts on ln until Stop closes it. It holds p.mu.
func (p *Proxy) serve(ln net.Listener) {
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
func (p *Proxy) track(c net.Conn, run int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run != run || p.ln == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		_ = c.Close()
	}
}

func (p *Proxy) forward(ctx context.Context, client net.Conn, run int) {
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
func (p *Proxy) pipe(dst, src net.Conn, fromClient bool) {
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
func (p *Proxy) clientCut(fromClient bool, tail *[]byte, chunk []byte) chan struct{} {
	if !fromClient {
		return nil
	}
	return p.matchCut(tail, chunk)
}

// matchCut returns the cut's channel when chunk completes the cutNth
// occurrence of cutOn since StopWhenClientSends armed it, nil otherwise.
func (p *Proxy) matchCut(tail *[]byte, chunk []byte) chan struct{} {
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
func (p *Proxy) StopWhenClientSends(marker string, nth int) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutOn, p.cutNth, p.cut = []byte(marker), nth, make(chan struct{})
	return p.cut
}

// Stop closes the listener and cuts every open connection; it returns once
// all the proxy's goroutines are done. Stopping a stopped proxy is a no-op.
func (p *Proxy) Stop() {
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
func (p *Proxy) Start() error {
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
