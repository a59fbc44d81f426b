package alerts

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A done record written before its alert record (the sender finished
// before Notify had appended the alert) still marks the alert delivered:
// a restart must not deliver it again.
func TestOutboxDoneBeforeAlertIsNotPending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.jsonl")
	lines := `{"type":"done","seq":7,"leak_id":"leak1","result":"delivered","channel":"C1","ts":"1.1"}
{"type":"posting","seq":7}
{"type":"alert","seq":7,"alert":{"seq":7,"leak_id":"leak1","kind":"update"}}
{"type":"alert","seq":8,"alert":{"seq":8,"leak_id":"leak2","kind":"new"}}
`
	if err := os.WriteFile(path, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	// Twice: the first open rewrites the outbox compactly.
	for run := 1; run <= 2; run++ {
		ob, st, err := openOutbox(path, time.Minute, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.pending) != 1 || st.pending[0].LeakID != "leak2" {
			t.Errorf("open %d: pending %+v, want only leak2", run, st.pending)
		}
		if st.posting[7] > 0 {
			t.Errorf("open %d: a delivered alert must not be left as posting", run)
		}
		if st.threads["leak1"].TS != "1.1" {
			t.Errorf("open %d: leak1's message forgotten: %+v", run, st.threads)
		}
		if err := ob.close(); err != nil {
			t.Fatal(err)
		}
	}
}
