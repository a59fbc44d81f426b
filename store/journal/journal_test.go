package journal

import (
	"context"
	"errors"
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

// A journal deleted, renamed or replaced behind the collector's back is
// noticed at the next append: the append fails naming what happened (so the
// caller keeps the batch), the file at the path is reopened, and the retry
// lands there.
func TestFileChangedBehindTheJournalIsReopened(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, path string)
		reason string
		keep   int // records of the first batch still at the path
	}{
		{"deleted", func(t *testing.T, path string) { mustDo(t, os.Remove(path)) }, "deleted or renamed", 0},
		{"renamed", func(t *testing.T, path string) { mustDo(t, os.Rename(path, path+".1")) }, "deleted or renamed", 0},
		{"replaced", func(t *testing.T, path string) {
			// Another journal moved into place, its last line torn.
			other := path + ".new"
			mustDo(t, os.WriteFile(other, []byte(`{"leak_id":"x","version":1}`+"\n"+`{"leak_id":"torn`), 0o600))
			mustDo(t, os.Rename(other, path))
		}, "replaced by another file", 1},
		{"cut", func(t *testing.T, path string) { mustDo(t, os.Truncate(path, 5)) }, "cut or appended to", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "leaks.jsonl")
			j, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			ctx := context.Background()
			mustDo(t, j.Append(ctx, []store.Evidence{ev("a", 1)}))
			tc.change(t, path)
			batch := []store.Evidence{ev("b", 1)}
			err = j.Append(ctx, batch)
			if !errors.Is(err, ErrFileChanged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("append after the file was %s: want ErrFileChanged naming %s and %q, got %v", tc.name, path, tc.reason, err)
			}
			mustDo(t, j.Append(ctx, batch))
			recs, rep, err := ReadFile(path)
			if err != nil || len(rep.Corrupt) != 0 || rep.TornTail {
				t.Fatalf("journal at the path: report %+v, err %v", rep, err)
			}
			if len(recs) != tc.keep+1 || recs[len(recs)-1].LeakID != "b" {
				t.Fatalf("journal at the path holds %+v, want %d earlier records then b", recs, tc.keep)
			}
			if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("recreated journal: %v, %v", st, err)
			}
		})
	}
}

// A journal whose path cannot be created again fails every append, naming
// the path, until it can; then the batch lands.
func TestJournalThatCannotBeRecreatedRecovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "leaks.jsonl")
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	mustDo(t, os.RemoveAll(dir))
	mustDo(t, os.WriteFile(dir, []byte("a file where the directory was"), 0o600))
	for range 2 {
		if err := j.Append(ctx, []store.Evidence{ev("a", 1)}); !errors.Is(err, ErrFileChanged) || !strings.Contains(err.Error(), path) {
			t.Fatalf("want ErrFileChanged naming %s, got %v", path, err)
		}
	}
	mustDo(t, os.Remove(dir))
	mustDo(t, j.Append(ctx, []store.Evidence{ev("a", 1)}))
	if recs, _, err := ReadFile(path); err != nil || len(recs) != 1 {
		t.Fatalf("after recovery: %d records, %v", len(recs), err)
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
