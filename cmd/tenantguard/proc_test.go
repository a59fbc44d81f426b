package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// proc is one collector process a test runs: started, waited for until its
// OTLP/HTTP receiver answers, stopped with SIGTERM (or killed), its output
// kept for failure reports.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logs    *syncBuffer
	exited  chan struct{}
	waitErr error
	stopped bool // stop ran: a second call (the cleanup) does nothing
}

// launch starts bin with args in dir; env is added to the test's own. The
// process is returned by pointer: the goroutine that waits for it records
// its exit status there.
func launch(name, bin, dir string, args, env []string) (*proc, error) {
	p := &proc{name: name, logs: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		return p, err
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.exited) }()
	return p, nil
}

// waitHTTP returns once the OTLP/HTTP receiver on addr answers (receivers
// start after the rest of the pipeline; any answer, 405 for a GET, means it
// serves), or kills the process at deadline or reports that it exited.
func (p *proc) waitHTTP(hc *http.Client, addr string, deadline time.Time) error {
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited during startup: %v", p.name, p.waitErr)
		default:
		}
		resp, err := hc.Get("http://" + addr + "/v1/traces")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			p.kill()
			return fmt.Errorf("%s: OTLP/HTTP receiver on %s not answering: %v", p.name, addr, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// kill ends the process with SIGKILL, as a crash would.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// stop sends SIGTERM and waits; the collector must shut down cleanly (the
// processor's shutdown flushes its last findings and reports store
// failures as an error, which makes the process exit non-zero).
func (p *proc) stop(t *testing.T) {
	if p.stopped {
		return // stopped by the test already; this is the cleanup
	}
	p.stopped = true
	select {
	case <-p.exited:
		t.Errorf("%s exited before the test ended: %v", p.name, p.waitErr)
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
			if p.waitErr != nil {
				t.Errorf("%s did not shut down cleanly: %v", p.name, p.waitErr)
			}
		case <-time.After(15 * time.Second):
			p.kill()
			t.Errorf("%s ignored SIGTERM for 15s; killed", p.name)
		}
	}
	// TENANTGUARD_E2E_LOGS=1 prints the output even on success.
	if t.Failed() || os.Getenv("TENANTGUARD_E2E_LOGS") != "" {
		t.Logf("--- %s output ---\n%s", p.name, tail(p.logs.String(), 16<<10))
	}
}
