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
