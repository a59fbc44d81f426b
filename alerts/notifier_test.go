package alerts

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tenantguard/tenantguard/store"
)

func TestLogNotifierLevels(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	n := NewLogNotifier(zap.New(core))
	ev := store.Evidence{LeakID: "l1", Rule: "cross_tenant_trace", Status: "open", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Tenants: []string{"acme", "globex"}}
	for _, status := range []string{"open", "open", "closed", "allowed"} {
		ev.Status = status
		if err := n.Notify(context.Background(), &ev); err != nil {
			t.Fatal(err)
		}
	}
	got := logs.All()
	if len(got) != 4 {
		t.Fatalf("want 4 log lines, got %d", len(got))
	}
	wantLevels := []zapcore.Level{zapcore.WarnLevel, zapcore.InfoLevel, zapcore.InfoLevel, zapcore.InfoLevel}
	for i, e := range got {
		if e.Level != wantLevels[i] {
			t.Errorf("line %d (%s) at %s, want %s", i, e.Message, e.Level, wantLevels[i])
		}
		if e.ContextMap()["leak_id"] != "l1" {
			t.Errorf("line %d lacks leak_id", i)
		}
		// Each line tells the version it logs in the finding's one sentence.
		v := ev
		v.Status = []string{"open", "open", "closed", "allowed"}[i]
		if msg := v.Message(store.Plain); !strings.HasSuffix(e.Message, ": "+msg) {
			t.Errorf("line %d: %q does not end in the finding's message %q", i, e.Message, msg)
		}
	}
}

// A log at warn keeps only each finding's first open version; the versions
// it drops still count, so a later version is not mistaken for a first.
func TestLogNotifierAtWarnLogsFirstVersionsOnly(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	n := NewLogNotifier(zap.New(core))
	ev := store.Evidence{LeakID: "l1", Rule: "cross_tenant_trace", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Tenants: []string{"acme", "globex"}}
	// open (first), open (update), closed, open again (a new first), allowed.
	for _, status := range []string{"open", "open", "closed", "open", "open", "allowed"} {
		ev.Status = status
		if err := n.Notify(context.Background(), &ev); err != nil {
			t.Fatal(err)
		}
	}
	got := logs.All()
	if len(got) != 2 {
		t.Fatalf("want the 2 first open versions logged at warn, got %d lines: %v", len(got), got)
	}
	for i, e := range got {
		if e.Level != zapcore.WarnLevel || !strings.HasPrefix(e.Message, "tenant isolation finding: ") {
			t.Errorf("line %d: %s %q, want a warn line for a first version", i, e.Level, e.Message)
		}
	}
}
