package journal

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/store"
)

func ev(leak string, version uint64, tenants ...string) store.Evidence {
	return store.Evidence{
		LeakID: leak, Version: version, Rule: "cross_tenant_trace", Status: "open",
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Tenants: tenants,
		LastSeen: time.Unix(1_700_000_000+int64(version), 0).UTC(),
	}
}

func TestAppendThenListKeepsLatestVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "leaks.jsonl")
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := j.Append(ctx, []store.Evidence{ev("a", 1, "acme", "globex"), ev("b", 1, "acme", "initech")}); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(ctx, []store.Evidence{ev("a", 3, "acme", "globex", "umbrella")}); err != nil {
		t.Fatal(err)
	}
	got, err := j.List(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("want 2 findings, got %d: %+v", len(got), got)
	}
	// a has the later last_seen, so it comes first, at its latest version.
	if got[0].LeakID != "a" || got[0].Version != 3 || len(got[0].Tenants) != 3 {
		t.Fatalf("latest version of a not first: %+v", got[0])
	}
	got, _ = j.List(ctx, store.Filter{Tenant: "initech"})
	if len(got) != 1 || got[0].LeakID != "b" {
		t.Fatalf("tenant filter: %+v", got)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Fatalf("journal holds evidence and must be 0600, is %o", perm)
	}
	if err := j.Append(ctx, []store.Evidence{ev("c", 1)}); err != store.ErrClosed {
		t.Fatalf("append after close: want ErrClosed, got %v", err)
	}
}

func TestTornLastLineIsCutOnOpenAndSkippedOnRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leaks.jsonl")
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(context.Background(), []store.Evidence{ev("a", 1, "acme", "globex")}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	// A crash mid-write leaves half a line.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"leak_id":"b","version":1,"rule":"cross_ten`)
	f.Close()

	recs, rep, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || !rep.TornTail || len(rep.Corrupt) != 0 {
		t.Fatalf("reader: recs=%d report=%+v", len(recs), rep)
	}

	j, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(context.Background(), []store.Evidence{ev("c", 1, "acme", "initech")}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	recs, rep, err = ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || rep.TornTail || len(rep.Corrupt) != 0 {
		t.Fatalf("after reopen the torn tail must be gone and c readable: recs=%d report=%+v", len(recs), rep)
	}
	if recs[1].LeakID != "c" {
		t.Fatalf("second record: %+v", recs[1])
	}
}

func TestCorruptMiddleLineDoesNotHideTheRest(t *testing.T) {
	in := `{"leak_id":"a","version":1}` + "\n" + "not json\n" + "\n" + `{"leak_id":"b","version":1}` + "\n"
	recs, rep, err := Read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || len(rep.Corrupt) != 1 || rep.Corrupt[0] != 2 {
		t.Fatalf("recs=%d report=%+v", len(recs), rep)
	}
}

func TestMissingJournalIsEmpty(t *testing.T) {
	recs, _, err := ReadFile(filepath.Join(t.TempDir(), "none.jsonl"))
	if err != nil || len(recs) != 0 {
		t.Fatalf("recs=%v err=%v", recs, err)
	}
}

func TestFailedAppendLeavesNoPartialLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leaks.jsonl")
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.Append(context.Background(), []store.Evidence{ev("a", 1)}); err != nil {
		t.Fatal(err)
	}
	// Swap the file for a read-only handle: the next write fails the way a
	// read-only remount does.
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	rw := j.f
	j.f = ro
	err = j.Append(context.Background(), []store.Evidence{ev("b", 1)})
	if err == nil || !strings.Contains(err.Error(), "appending 1 findings to journal") {
		t.Fatalf("want a clear append error, got %v", err)
	}
	j.f = rw
	ro.Close()
	if err := j.Append(context.Background(), []store.Evidence{ev("c", 1)}); err != nil {
		t.Fatal(err)
	}
	recs, rep, err := ReadFile(path)
	if err != nil || len(recs) != 2 || len(rep.Corrupt) != 0 || rep.TornTail {
		t.Fatalf("recs=%d report=%+v err=%v", len(recs), rep, err)
	}
}

func TestOpenRejectsEmptyPath(t *testing.T) {
	if _, err := Open(""); err == nil || !strings.Contains(err.Error(), "store.journal.path") {
		t.Fatalf("want error naming store.journal.path, got %v", err)
	}
}
