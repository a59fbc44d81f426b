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

// What a restart needs survives the compacting rewrite: where each finding's
// message is and what it told (severity, owner, count), the incident groups
// still inside their window, and how many posts of a pending alert went
// unanswered (a refused post does not count). A group's message shows its
// worst finding (here leak2, escalated) but stays its owner's (leak1).
func TestOutboxKeepsThreadsGroupsAndUnansweredPosts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.jsonl")
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	at := now.Add(-time.Minute).Format(time.RFC3339Nano)
	old := now.Add(-time.Hour).Format(time.RFC3339Nano)
	lines := `{"type":"thread","leak_id":"leak1","channel":"C1","ts":"1.1","at":"` + at + `","tenants":2,"edges":1,"severity":"critical","count":2}
{"type":"thread","leak_id":"leak2","channel":"C1","ts":"1.1","at":"` + at + `","tenants":2,"edges":1,"severity":"high","owner":"leak1"}
{"type":"group","seq":4,"alert":{"seq":4,"leak_id":"leak2","kind":"escalated"},"leak_id":"leak2","channel":"C1","ts":"1.1","sig":"s1","count":2,"at":"` + at + `","owner":"leak1"}
{"type":"group","seq":2,"alert":{"seq":2,"leak_id":"leak0","kind":"new"},"leak_id":"leak0","channel":"C1","ts":"0.1","sig":"s0","count":1,"at":"` + old + `"}
{"type":"alert","seq":3,"alert":{"seq":3,"leak_id":"leak3","kind":"new"}}
{"type":"posting","seq":3}
{"type":"posting","seq":3}
{"type":"refused","seq":3}
{"type":"posting","seq":3}
`
	if err := os.WriteFile(path, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 2; run++ {
		ob, st, err := openOutbox(path, 10*time.Minute, now)
		if err != nil {
			t.Fatal(err)
		}
		if th := st.threads["leak1"]; th.TS != "1.1" || th.Severity != "critical" || th.Count != 2 || th.Owner != "" {
			t.Errorf("open %d: leak1's thread %+v", run, th)
		}
		if th := st.threads["leak2"]; th.Owner != "leak1" || th.Severity != "high" {
			t.Errorf("open %d: leak2's thread %+v", run, th)
		}
		if g := st.groups["s1"]; g == nil || g.TS != "1.1" || g.Count != 2 || g.owner() != "leak1" {
			t.Errorf("open %d: group s1 %+v", run, g)
		}
		if g := st.groups["s0"]; g != nil {
			t.Errorf("open %d: a group past its window was kept: %+v", run, g)
		}
		if len(st.pending) != 1 || st.posting[3] != 2 {
			t.Errorf("open %d: pending %d, unanswered posts %d, want 1 and 2", run, len(st.pending), st.posting[3])
		}
		if err := ob.close(); err != nil {
			t.Fatal(err)
		}
	}
}
