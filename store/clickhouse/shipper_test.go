package clickhouse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/store"
	"github.com/tenantguard/tenantguard/store/journal"
)

func newShipper(t *testing.T, cfg config.ClickHouse, path string, w Writer) *Shipper {
	t.Helper()
	s, err := NewShipper(cfg, path, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s
}

func stop(t *testing.T, s *Shipper) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.Stop(ctx)
}

func callSizes(calls []writeCall) []int {
	var n []int
	for _, c := range calls {
		n = append(n, len(c.ids))
	}
	return n
}

func readCursor(t *testing.T, journalPath string) cursor {
	t.Helper()
	c, err := loadCursor(journalPath + CursorSuffix)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestShipperBatchesBySize(t *testing.T) {
	path := tempJournal(t)
	appendJournal(t, path, findings(0, 7)...)
	cfg := testConfig()
	cfg.BatchSize, cfg.BatchAge = 3, time.Hour
	ch := newFakeCH()
	s := newShipper(t, cfg, path, ch)
	s.Start()
	s.Wake()

	eventually(t, "two full batches", func() (bool, string) {
		calls, _, _ := ch.snapshot()
		return len(calls) >= 2 && s.Status().Shipped == 6, fmt.Sprintf("calls %v, status %+v", callSizes(calls), s.Status())
	})
	calls, _, _ := ch.snapshot()
	if got := callSizes(calls); !slices.Equal(got, []int{3, 3}) {
		t.Fatalf("batches of batch_size, the partial one waiting for batch_age (1h): got sizes %v", got)
	}
	if st := s.Status(); st.Backlog != 1 || st.Shipped != 6 {
		t.Fatalf("want backlog 1, shipped 6: %+v", st)
	}
	if c := readCursor(t, path); c.Offset != lineEnds(t, path)[5] {
		t.Fatalf("cursor at %d, want the end of the 6th line %d", c.Offset, lineEnds(t, path)[5])
	}
	// Stop ships the partial batch without waiting for its age.
	if err := stop(t, s); err != nil {
		t.Fatalf("Stop with a reachable server must drain: %v", err)
	}
	calls, leaks, _ := ch.snapshot()
	if got := callSizes(calls); !slices.Equal(got, []int{3, 3, 1}) {
		t.Fatalf("Stop must ship the partial batch: sizes %v", got)
	}
	if len(leaks) != 7 {
		t.Fatalf("%d rows stored, want 7", len(leaks))
	}
	if c := readCursor(t, path); c.Offset != fileSize(t, path) || c.PendingEnd != 0 {
		t.Fatalf("cursor %+v, want the end of the journal (%d)", c, fileSize(t, path))
	}
}

func TestShipperShipsAPartialBatchWhenItIsBatchAgeOld(t *testing.T) {
	path := tempJournal(t)
	cfg := testConfig()
	cfg.BatchAge = 80 * time.Millisecond
	ch := newFakeCH()
	s := newShipper(t, cfg, path, ch)
	s.Start()
	appended := time.Now()
	appendJournal(t, path, findings(0, 2)...)
	s.Wake()
	eventually(t, "the partial batch", func() (bool, string) {
		calls, _, _ := ch.snapshot()
		return len(calls) == 1, fmt.Sprintf("%d calls", len(calls))
	})
	calls, _, _ := ch.snapshot()
	if waited := calls[0].at.Sub(appended); waited < cfg.BatchAge {
		t.Fatalf("a partial batch was shipped %s after its records arrived; batch_age is %s", waited, cfg.BatchAge)
	}
	if len(calls[0].ids) != 2 {
		t.Fatalf("batch %v, want both records", calls[0].ids)
	}
}

func TestShipperShipsAsSoonAsABatchFills(t *testing.T) {
	path := tempJournal(t)
	cfg := testConfig()
	cfg.BatchSize, cfg.BatchAge = 3, time.Hour
	ch := newFakeCH()
	s := newShipper(t, cfg, path, ch)
	s.Start()
	appendJournal(t, path, findings(0, 2)...)
	s.Wake()
	eventually(t, "the shipper to count the two records", func() (bool, string) {
		return s.Status().Backlog == 2, fmt.Sprintf("%+v", s.Status())
	})
	appendJournal(t, path, findings(2, 3)...)
	s.Wake()
	eventually(t, "the full batch", func() (bool, string) {
		calls, _, _ := ch.snapshot()
		return len(calls) == 1 && len(calls[0].ids) == 3, fmt.Sprintf("calls %v", callSizes(calls))
	})
}

func TestShipperMovesTheCursorOnlyAfterAcknowledgement(t *testing.T) {
	path := tempJournal(t)
	appendJournal(t, path, findings(0, 5)...)
	ch := newFakeCH()
	ch.setMode(down)
	s := newShipper(t, testConfig(), path, ch)
	s.Start()
	s.Wake()
	eventually(t, "several failed attempts", func() (bool, string) {
		calls, _, _ := ch.snapshot()
		return len(calls) >= 3, fmt.Sprintf("%d calls", len(calls))
	})
	c := readCursor(t, path)
	if c.Offset != 0 {
		t.Fatalf("cursor moved to %d while ClickHouse refused every batch", c.Offset)
	}
	if c.PendingEnd != fileSize(t, path) {
		t.Fatalf("the batch in flight is not recorded: pending_end %d, want %d", c.PendingEnd, fileSize(t, path))
	}
	st := s.Status()
	if st.Backlog != 5 || st.Shipped != 0 || !st.LastSuccessAt.IsZero() {
		t.Fatalf("status while down: %+v", st)
	}
	if !strings.Contains(st.LastError, "connection refused") || st.LastErrorAt.IsZero() {
		t.Fatalf("last error not reported: %+v", st)
	}
	// The backlog is counted from the journal when asked, even while the
	// shipper waits to retry.
	appendJournal(t, path, findings(5, 8)...)
	if st := s.Status(); st.Backlog != 8 {
		t.Fatalf("backlog %d after 3 more appends, want 8", st.Backlog)
	}

	ch.setMode(ok)
	eventually(t, "the backlog to drain once ClickHouse is back", func() (bool, string) {
		st := s.Status()
		return st.Backlog == 0 && st.Shipped == 8, fmt.Sprintf("%+v", st)
	})
	if c := readCursor(t, path); c.Offset != fileSize(t, path) {
		t.Fatalf("cursor %d, want %d", c.Offset, fileSize(t, path))
	}
	st = s.Status()
	if !st.LastSuccessAt.After(st.LastErrorAt) {
		t.Fatalf("last success must follow the last error: %+v", st)
	}
	for id, n := range ch.rowsPerLeak() {
		if n != 1 {
			t.Errorf("%s stored %d times", id, n)
		}
	}
}

func TestShipperBacksOffExponentiallyUpToTheCap(t *testing.T) {
	path := tempJournal(t)
	appendJournal(t, path, findings(0, 1)...)
	cfg := testConfig()
	cfg.RetryInitial, cfg.RetryMax = time.Millisecond, 16*time.Millisecond
	ch := newFakeCH()
	ch.setMode(down)
	s := newShipper(t, cfg, path, ch)
	s.jitter = func() float64 { return 1 } // the full delay
	var (
		mu     sync.Mutex
		delays []time.Duration
	)
	s.onBackoff = func(d time.Duration) {
		mu.Lock()
		delays = append(delays, d)
		mu.Unlock()
	}
	s.Start()
	eventually(t, "seven retries", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(delays) >= 7, fmt.Sprint(delays)
	})
	mu.Lock()
	got := append([]time.Duration(nil), delays[:7]...)
	mu.Unlock()
	ms := time.Millisecond
	if want := []time.Duration{ms, 2 * ms, 4 * ms, 8 * ms, 16 * ms, 16 * ms, 16 * ms}; !slices.Equal(got, want) {
		t.Fatalf("backoff %v, want %v", got, want)
	}
}

func TestBackoffDelayJitter(t *testing.T) {
	for _, tc := range []struct {
		n      int
		jitter float64
		want   time.Duration
	}{
		{1, 0, 500 * time.Millisecond},
		{1, 1, time.Second},
		{2, 0.5, 1500 * time.Millisecond},
		{7, 0, 30 * time.Second},
		{7, 1, time.Minute},
		{1000, 1, time.Minute}, // no overflow
	} {
		if got := backoffDelay(tc.n, time.Second, time.Minute, tc.jitter); got != tc.want {
			t.Errorf("retry %d, jitter %.1f: %s, want %s", tc.n, tc.jitter, got, tc.want)
		}
	}
}

func TestShipperResumesFromTheCursorAfterRestart(t *testing.T) {
	path := tempJournal(t)
	appendJournal(t, path, findings(0, 5)...)
	cfg := testConfig()
	cfg.BatchSize = 2
	first := newFakeCH(ok, ok)
	first.setMode(down) // the server goes away after two batches
	s := newShipper(t, cfg, path, first)
	s.Start()
	eventually(t, "two batches and a failure", func() (bool, string) {
		calls, _, _ := first.snapshot()
		return len(calls) >= 3, fmt.Sprintf("calls %v", callSizes(calls))
	})
	err := stop(t, s)
	if !errors.Is(err, ErrNotDrained) || !strings.Contains(err.Error(), "1 journal records") {
		t.Fatalf("Stop with a record left: %v", err)
	}
	if c := readCursor(t, path); c.Offset != lineEnds(t, path)[3] {
		t.Fatalf("cursor %d, want the end of the 4th line %d", c.Offset, lineEnds(t, path)[3])
	}
	calls, _, _ := first.snapshot()
	lostToken := calls[2].token

	second := newFakeCH()
	s2 := newShipper(t, cfg, path, second)
	if st := s2.Status(); st.Backlog != 1 {
		t.Fatalf("a restarted shipper must see the backlog before it starts: %+v", st)
	}
	s2.Start()
	eventually(t, "the rest after restart", func() (bool, string) {
		return s2.Status().Backlog == 0, fmt.Sprintf("%+v", s2.Status())
	})
	calls2, leaks2, _ := second.snapshot()
	if len(leaks2) != 1 || leaks2[0].LeakID != "leak-04" {
		t.Fatalf("after restart only the unshipped record must be sent, got %v", leaks2)
	}
	if calls2[0].token != lostToken {
		t.Fatalf("the batch in flight at stop is re-sent with its token: %s, want %s", calls2[0].token, lostToken)
	}
	if err := stop(t, s2); err != nil {
		t.Fatal(err)
	}
}

func TestShipperResendsWithTheSameTokenAndClickHouseDropsTheCopy(t *testing.T) {
	path := tempJournal(t)
	appendJournal(t, path, findings(0, 3)...)
	ch := newFakeCH(lostAck) // stored, but the acknowledgement is lost
	s := newShipper(t, testConfig(), path, ch)
	s.Start()
	eventually(t, "shipping", func() (bool, string) {
		return s.Status().Backlog == 0, fmt.Sprintf("%+v", s.Status())
	})
	calls, leaks, spans := ch.snapshot()
	if len(calls) != 2 || calls[0].token != calls[1].token {
		t.Fatalf("a retry must carry the batch's token: %+v", calls)
	}
	if len(leaks) != 3 || spans != 6 {
		t.Fatalf("re-sent batch stored twice: %d leak rows, %d span rows", len(leaks), spans)
	}
	if st := s.Status(); st.Shipped != 3 {
		t.Fatalf("shipped %d, want 3", st.Shipped)
	}
}

func TestShipperRestartAfterALostAcknowledgementStoresNothingTwice(t *testing.T) {
	path := tempJournal(t)
	appendJournal(t, path, findings(0, 3)...)
	cfg := testConfig()
	ch := newFakeCH(lostAck)
	ch.setMode(down)
	s := newShipper(t, cfg, path, ch)
	s.Start()
	eventually(t, "the lost acknowledgement and a failed retry", func() (bool, string) {
		calls, _, _ := ch.snapshot()
		return len(calls) >= 2, fmt.Sprintf("%d calls", len(calls))
	})
	_ = stop(t, s)
	// More findings arrive while the collector is down; the first batch
	// after restart must still be exactly the one in flight.
	appendJournal(t, path, findings(3, 5)...)
	ch.setMode(ok)
	s2 := newShipper(t, cfg, path, ch)
	s2.Start()
	eventually(t, "shipping after restart", func() (bool, string) {
		return s2.Status().Backlog == 0, fmt.Sprintf("%+v", s2.Status())
	})
	for id, n := range ch.rowsPerLeak() {
		if n != 1 {
			t.Errorf("%s stored %d times", id, n)
		}
	}
	if got := len(ch.rowsPerLeak()); got != 5 {
		t.Fatalf("%d findings stored, want 5", got)
	}
}

func TestShipperPartialSuccessIsCompletedByTheRetry(t *testing.T) {
	path := tempJournal(t)
	appendJournal(t, path, findings(0, 4)...)
	ch := newFakeCH(partial)
	s := newShipper(t, testConfig(), path, ch)
	s.Start()
	eventually(t, "shipping", func() (bool, string) {
		return s.Status().Backlog == 0, fmt.Sprintf("%+v", s.Status())
	})
	_, leaks, spans := ch.snapshot()
	if len(leaks) != 4 || spans != 8 {
		t.Fatalf("after a partial insert and its retry: %d leak rows (want 4), %d span rows (want 8)", len(leaks), spans)
	}
}

func TestShipperGivesUpOnAStalledWriteAndRetries(t *testing.T) {
	path := tempJournal(t)
	appendJournal(t, path, findings(0, 2)...)
	ch := newFakeCH(stall)
	s := newShipper(t, testConfig(), path, ch)
	s.Start()
	eventually(t, "shipping after the stall", func() (bool, string) {
		return s.Status().Shipped == 2, fmt.Sprintf("%+v", s.Status())
	})
	st := s.Status()
	if !strings.Contains(st.LastError, "deadline exceeded") {
		t.Fatalf("the stall must be reported: %q", st.LastError)
	}
	calls, _, _ := ch.snapshot()
	if len(calls) != 2 || !errors.Is(calls[0].err, context.DeadlineExceeded) {
		t.Fatalf("want a timed-out call then a good one: %+v", calls)
	}
}

type deadLetter struct {
	Reason  string          `json:"reason"`
	Journal string          `json:"journal"`
	Offset  int64           `json:"offset"`
	LeakID  string          `json:"leak_id"`
	Record  json.RawMessage `json:"record"`
	Line    string          `json:"line"`
}

func readDeadLetters(t *testing.T, path string) []deadLetter {
	t.Helper()
	b, err := os.ReadFile(path + DeadLetterSuffix)
	if err != nil {
		t.Fatal(err)
	}
	var out []deadLetter
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var d deadLetter
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("dead-letter line %q: %v", l, err)
		}
		out = append(out, d)
	}
	return out
}

func TestShipperDeadLettersPoisonRecordsAndShipsTheRest(t *testing.T) {
	path := tempJournal(t)
	appendJournal(t, path, findings(0, 5)...)
	appendRaw(t, path, "this is not json\n")
	appendJournal(t, path, findings(5, 8)...)
	ch := newFakeCH()
	ch.rejectIf = func(ev store.Evidence) bool { return ev.LeakID == "leak-03" }
	s := newShipper(t, testConfig(), path, ch)
	s.Start()
	eventually(t, "the journal to be worked through", func() (bool, string) {
		return s.Status().Backlog == 0, fmt.Sprintf("%+v", s.Status())
	})
	st := s.Status()
	if st.Shipped != 7 || st.DeadLetters != 2 {
		t.Fatalf("want 7 shipped and 2 dead letters: %+v", st)
	}
	rows := ch.rowsPerLeak()
	for i := 0; i < 8; i++ {
		id := fmt.Sprintf("leak-%02d", i)
		want := 1
		if id == "leak-03" {
			want = 0
		}
		if rows[id] != want {
			t.Errorf("%s stored %d times, want %d", id, rows[id], want)
		}
	}
	dl := readDeadLetters(t, path)
	if len(dl) != 2 {
		t.Fatalf("dead letters: %+v", dl)
	}
	if dl[0].LeakID != "leak-03" || !strings.Contains(dl[0].Reason, "Type mismatch") || len(dl[0].Record) == 0 {
		t.Errorf("rejected record: %+v", dl[0])
	}
	var rec store.Evidence
	if err := json.Unmarshal(dl[0].Record, &rec); err != nil || rec.LeakID != "leak-03" {
		t.Errorf("the dead letter must hold the record as written: %v %+v", err, rec)
	}
	if dl[1].Line != "this is not json" || !strings.Contains(dl[1].Reason, "not valid evidence JSON") || dl[1].Offset != lineEnds(t, path)[4] {
		t.Errorf("unparseable line: %+v", dl[1])
	}
	fi, err := os.Stat(path + DeadLetterSuffix)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("dead-letter file must be 0600: %v %v", fi.Mode(), err)
	}
}

// A record that fails for a reason nobody knows (an unlisted server error
// code) is never dead-lettered: after max_attempts its batch is split so the
// records before it ship, it is retried with backoff, counted in Status, and
// ships once the cause goes away.
func TestShipperRetriesARecordThatFailsForAnUnknownReasonAndShipsAroundIt(t *testing.T) {
	path := tempJournal(t)
	appendJournal(t, path, findings(0, 4)...)
	cfg := testConfig()
	cfg.MaxAttempts = 3
	ch := newFakeCH()
	ch.failIf = func(ev store.Evidence) bool { return ev.LeakID == "leak-02" }
	s := newShipper(t, cfg, path, ch)
	s.Start()
	eventually(t, "the records before the failing one to ship, and the failing one to be retried alone", func() (bool, string) {
		calls, _, _ := ch.snapshot()
		alone := 0
		for _, c := range calls {
			if slices.Equal(c.ids, []string{"leak-02"}) {
				alone++
			}
		}
		st := s.Status()
		return st.Shipped == 2 && alone > cfg.MaxAttempts && st.Unknown > uint64(cfg.MaxAttempts) && st.Backlog == 2,
			fmt.Sprintf("alone %d, %+v", alone, st)
	})
	if st := s.Status(); st.DeadLetters != 0 || !strings.Contains(st.LastError, "leak-02") {
		t.Fatalf("a record failing for an unknown reason must not be dead-lettered: %+v", st)
	}
	ch.mu.Lock()
	ch.failIf = nil // the cause goes away
	ch.mu.Unlock()
	eventually(t, "the journal to be shipped", func() (bool, string) {
		st := s.Status()
		return st.Backlog == 0 && st.Shipped == 4, fmt.Sprintf("%+v", st)
	})
	if _, err := os.Stat(path + DeadLetterSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dead-letter file written: %v", err)
	}
	if rows := ch.rowsPerLeak(); len(rows) != 4 {
		t.Fatalf("stored: %v", rows)
	}
}

func TestShipperNeverReadsATornLastLine(t *testing.T) {
	path := tempJournal(t)
	appendJournal(t, path, findings(0, 2)...)
	whole, err := json.Marshal(finding(2, 1))
	if err != nil {
		t.Fatal(err)
	}
	half := len(whole) / 2
	appendRaw(t, path, string(whole[:half]))
	ch := newFakeCH()
	s := newShipper(t, testConfig(), path, ch)
	s.Start()
	eventually(t, "the complete records", func() (bool, string) {
		st := s.Status()
		return st.Shipped == 2 && st.Backlog == 0, fmt.Sprintf("%+v", st)
	})
	if c := readCursor(t, path); c.Offset != lineEnds(t, path)[1] {
		t.Fatalf("cursor %d must stop at the last newline %d", c.Offset, lineEnds(t, path)[1])
	}
	if st := s.Status(); st.DeadLetters != 0 {
		t.Fatalf("a torn line is not a poison record: %+v", st)
	}
	appendRaw(t, path, string(whole[half:])+"\n")
	s.Wake()
	eventually(t, "the completed line", func() (bool, string) {
		return s.Status().Shipped == 3, fmt.Sprintf("%+v", s.Status())
	})
	if rows := ch.rowsPerLeak(); rows["leak-02"] != 1 {
		t.Fatalf("completed line not shipped once: %v", rows)
	}
}

func TestShipperStopWhileClickHouseIsDownReturnsPromptly(t *testing.T) {
	path := tempJournal(t)
	appendJournal(t, path, findings(0, 3)...)
	cfg := testConfig()
	cfg.RetryInitial, cfg.RetryMax = time.Hour, time.Hour // it would sleep an hour
	ch := newFakeCH()
	ch.setMode(down)
	s := newShipper(t, cfg, path, ch)
	sleeping := make(chan struct{}, 1)
	s.onBackoff = func(time.Duration) {
		select {
		case sleeping <- struct{}{}:
		default:
		}
	}
	s.Start()
	select {
	case <-sleeping: // failed once, now waiting an hour to retry
	case <-time.After(5 * time.Second):
		t.Fatal("the shipper never backed off")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	began := time.Now()
	err := s.Stop(ctx)
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("Stop took %s with ClickHouse down", took)
	}
	if !errors.Is(err, ErrNotDrained) || !strings.Contains(err.Error(), "3 journal records") {
		t.Fatalf("Stop: %v", err)
	}
	if calls, _, _ := ch.snapshot(); len(calls) != 2 {
		t.Fatalf("Stop cuts the backoff short for one last attempt: %d calls, want 2", len(calls))
	}
}

func TestShipperStopCancelsAStalledWriteAtTheDeadline(t *testing.T) {
	path := tempJournal(t)
	appendJournal(t, path, findings(0, 1)...)
	cfg := testConfig()
	cfg.DialTimeout, cfg.ReadTimeout = time.Hour, time.Hour
	ch := newFakeCH()
	ch.setMode(stall)
	s := newShipper(t, cfg, path, ch)
	s.Start()
	eventually(t, "the stalled write", func() (bool, string) {
		calls, _, _ := ch.snapshot()
		return len(calls) == 1, ""
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	began := time.Now()
	err := s.Stop(ctx)
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("Stop took %s", took)
	}
	if !errors.Is(err, ErrNotDrained) {
		t.Fatalf("Stop: %v", err)
	}
	if c := readCursor(t, path); c.Offset != 0 {
		t.Fatalf("an unacknowledged batch moved the cursor to %d", c.Offset)
	}
}

func TestShipperReshipsAJournalReplacedBehindItsBack(t *testing.T) {
	path := tempJournal(t)
	appendJournal(t, path, findings(0, 3)...)
	ch := newFakeCH()
	s := newShipper(t, testConfig(), path, ch)
	s.Start()
	eventually(t, "shipping", func() (bool, string) { return s.Status().Shipped == 3, "" })
	if err := stop(t, s); err != nil {
		t.Fatal(err)
	}
	// An operator moves the journal away; a new one, longer, takes its place.
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	appendJournal(t, path, findings(10, 15)...)
	s2 := newShipper(t, testConfig(), path, ch)
	if st := s2.Status(); st.Backlog != 5 {
		t.Fatalf("the new journal's records are all unshipped: %+v", st)
	}
	s2.Start()
	eventually(t, "the new journal", func() (bool, string) { return s2.Status().Shipped == 5, fmt.Sprintf("%+v", s2.Status()) })
	if rows := ch.rowsPerLeak(); len(rows) != 8 {
		t.Fatalf("stored %v", rows)
	}
}

func TestShipperStartsOverFromAnUnreadableCursor(t *testing.T) {
	path := tempJournal(t)
	appendJournal(t, path, findings(0, 2)...)
	if err := os.WriteFile(path+CursorSuffix, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	ch := newFakeCH()
	s := newShipper(t, testConfig(), path, ch)
	s.Start()
	eventually(t, "shipping", func() (bool, string) { return s.Status().Shipped == 2, "" })
}

func TestShipperOnePerJournal(t *testing.T) {
	path := tempJournal(t)
	s := newShipper(t, testConfig(), path, newFakeCH())
	if _, err := NewShipper(testConfig(), path, newFakeCH(), nil); err == nil || !strings.Contains(err.Error(), "already has a shipper") {
		t.Fatalf("a second shipper for one journal: %v", err)
	}
	s.Start()
	if err := stop(t, s); err != nil {
		t.Fatal(err)
	}
	s2, err := NewShipper(testConfig(), path, newFakeCH(), nil)
	if err != nil {
		t.Fatalf("after Stop the journal is free: %v", err)
	}
	if err := stop(t, s2); err != nil { // never started
		t.Fatal(err)
	}
}

func TestShipperRefusesBadSettings(t *testing.T) {
	cfg := testConfig()
	cfg.BatchSize = 0
	if _, err := NewShipper(cfg, tempJournal(t), newFakeCH(), nil); err == nil {
		t.Fatal("batch_size 0 accepted")
	}
	if _, err := NewShipper(testConfig(), tempJournal(t), nil, nil); err == nil {
		t.Fatal("nil writer accepted")
	}
}

func TestShipperWithoutJournalYet(t *testing.T) {
	path := tempJournal(t)
	ch := newFakeCH()
	s := newShipper(t, testConfig(), path, ch)
	s.Start()
	if st := s.Status(); st.Backlog != 0 || st.LastError != "" {
		t.Fatalf("%+v", st)
	}
	appendJournal(t, path, findings(0, 1)...)
	s.Wake()
	eventually(t, "the first record", func() (bool, string) { return s.Status().Shipped == 1, "" })
	if err := stop(t, s); err != nil {
		t.Fatal(err)
	}
}

func TestBatchTokenDependsOnContentOnly(t *testing.T) {
	a := []journal.Line{{Raw: []byte("one\n")}, {Raw: []byte("two\n")}}
	b := []journal.Line{{Start: 100, Raw: []byte("one\n")}, {Start: 104, Raw: []byte("two\n")}}
	c := []journal.Line{{Raw: []byte("one\n")}, {Raw: []byte("tw0\n")}}
	if batchToken(a) != batchToken(b) {
		t.Fatal("same bytes, same token")
	}
	if batchToken(a) == batchToken(c) {
		t.Fatal("different bytes, same token")
	}
}
