package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/tenantguard/tenantguard/store/journal"
)

// faultTrace is the id of the n-th leaking trace a fault test sends.
func faultTrace(test byte, n int) pcommon.TraceID {
	var id pcommon.TraceID
	id[0], id[1] = 0xfa, test
	binary.BigEndian.PutUint64(id[8:], uint64(n))
	return id
}

// errorLines returns the collector's error-level log lines holding every
// one of parts.
func errorLines(logs string, parts ...string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if !strings.Contains(l, "\terror\t") {
			continue
		}
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			out = append(out, l)
		}
	}
	return out
}

// TestJournalDeletedWhileRunning removes the journal under a running
// collector and sends more leaks: the next write notices, logs it at error
// with the path and the reason, counts it as a failed write, recreates the
// file at the path and writes the findings there; `leaks list` shows them,
// and they are still there after a restart.
func TestJournalDeletedWhileRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the collector binary")
	}
	c := startCollector(t)
	first := faultTrace(1, 0)
	c.postOTLP(t, crossingTrace(first))
	// Acknowledged means journaled: no waiting.
	if !hasTraces(c.findingTraces(t), first.String()) {
		t.Fatalf("the leak of an acknowledged request is not in the journal")
	}
	if err := os.Remove(c.journal); err != nil {
		t.Fatal(err)
	}
	var want []string
	for n := 1; n <= 10; n++ {
		id := faultTrace(1, n)
		c.postOTLP(t, crossingTrace(id))
		want = append(want, id.String())
	}
	eventually(t, 10*time.Second, "the leaks sent after the deletion in a journal at the path", func() (bool, string) {
		got := c.findingTraces(t)
		return hasTraces(got, want...), fmt.Sprintf("journal holds %d findings", len(got))
	})
	if lines := errorLines(c.logs.String(), c.journal, "deleted or renamed"); len(lines) == 0 {
		t.Errorf("no error-level log line names the journal %s and says it was deleted", c.journal)
	}
	m := c.scrapeMetrics(t)
	if got := m[`tenantguard_store_writes_total{processor=tenantguard,result=error,store=journal}`]; got < 1 {
		t.Errorf("store_writes_total{result=error} = %v after the journal was deleted, want at least 1", got)
	}
	listed := leakTraces(t, c.leaks(t))
	if !hasTraces(listed, want...) {
		t.Errorf("leaks list shows %d findings, not every one sent after the deletion", len(listed))
	}

	c.stop(t)
	if err := c.start(filepath.Dir(c.cfgPath)); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if got := c.findingTraces(t); !hasTraces(got, want...) {
		t.Errorf("after a restart the journal holds %d findings, not every one sent after the deletion", len(got))
	}
	if listed := leakTraces(t, c.leaks(t)); !hasTraces(listed, want...) {
		t.Errorf("after a restart leaks list shows %d findings, not every one sent after the deletion", len(listed))
	}
}

// TestAlertsWhileJournalUnwritable starts the collector with a journal that
// cannot be created (its directory is a regular file). A leak is still
// announced at once, in the log and on Slack; the failure is logged at
// error with the path, counted in store_writes_total{result="error"} and
// shows as backlog. Once the directory can be created the finding lands in
// the journal, and the retried write announces nothing a second time.
func TestAlertsWhileJournalUnwritable(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the collector binary")
	}
	dir := t.TempDir()
	hooks := newSlackHooks(t)
	c := &crashCollector{
		bin: tenantguardBinary(t), dir: dir, cfg: filepath.Join(dir, "collector.yaml"),
		http: "127.0.0.1:" + strconv.Itoa(restartPort(t)), metrics: "127.0.0.1:" + strconv.Itoa(restartPort(t)),
	}
	blocker := filepath.Join(dir, "blocked")
	if err := os.WriteFile(blocker, []byte("a file where the journal's directory should be"), 0o600); err != nil {
		t.Fatal(err)
	}
	journalPath := filepath.Join(blocker, "leaks.jsonl")
	cfg := fmt.Sprintf(crashConfig, c.http, strconv.Quote(journalPath), "127.0.0.1:"+strconv.Itoa(restartPort(t)), c.metrics,
		hooks.srv.URL+"/services/T0/B0/x", strconv.Quote(filepath.Join(dir, "outbox", "slack-outbox.jsonl")))
	if err := os.WriteFile(c.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.start(t)
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			c.kill()
		}
	})
	if got := scrapeAt(t, c.metrics)[`tenantguard_store_writes_total{processor=tenantguard,result=error,store=journal}`]; got < 1 {
		t.Errorf("a journal that cannot be opened at start counts %v failed writes, want at least 1", got)
	}

	id := faultTrace(2, 1)
	short := id.String()[:8] // alerts name a trace by its first 8 hex digits
	(&collector{httpAddr: c.http}).postOTLP(t, crossingTrace(id))
	warned := func() int {
		return strings.Count(c.logs.String(), "tenant isolation finding: trace "+short)
	}
	slacked := func() int {
		n := 0
		for _, m := range hooks.messages() {
			if strings.Contains(m, short) {
				n++
			}
		}
		return n
	}
	eventually(t, 15*time.Second, "the leak announced in the log and on Slack while the journal cannot be written", func() (bool, string) {
		return warned() == 1 && slacked() == 1, fmt.Sprintf("%d log lines, %d Slack messages", warned(), slacked())
	})
	m := scrapeAt(t, c.metrics)
	if got := m[`tenantguard_store_backlog_records{processor=tenantguard,store=journal}`]; got < 1 {
		t.Errorf("journal backlog %v while the finding waits, want at least 1", got)
	}
	if lines := errorLines(c.logs.String(), journalPath); len(lines) == 0 {
		t.Errorf("no error-level log line names the journal %s", journalPath)
	}
	if recs, _, _ := journal.ReadFile(journalPath); len(recs) != 0 {
		t.Fatalf("the journal cannot exist yet, but holds %d records", len(recs))
	}

	// The disk is fixed: the finding kept in memory lands.
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	eventually(t, 40*time.Second, "the kept finding written once the journal can be created", func() (bool, string) {
		recs, _, _ := journal.ReadFile(journalPath)
		for _, r := range recs {
			if r.TraceID == id.String() {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d records", len(recs))
	})
	// Stopping drains the notifiers: every announcement is out by then.
	c.stop(t)
	if warned() != 1 || slacked() != 1 {
		t.Errorf("after the journal write was retried: %d log announcements and %d Slack messages, want 1 each", warned(), slacked())
	}
}

// findingTraces is the trace ids of the journal's findings.
func (c *collector) findingTraces(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, f := range c.findings(t) {
		out[f.TraceID] = true
	}
	return out
}

// leakTraces is the trace ids of `leaks list --json` lines.
func leakTraces(t *testing.T, lines []string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, l := range lines {
		out[parseLeakLine(t, l).TraceID] = true
	}
	return out
}

func hasTraces(got map[string]bool, want ...string) bool {
	for _, w := range want {
		if !got[w] {
			return false
		}
	}
	return true
}
