package tcpproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

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
	p := New(t, echo)
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
	p := New(t, echo)
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
