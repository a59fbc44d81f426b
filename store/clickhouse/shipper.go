package clickhouse

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/store"
	"github.com/tenantguard/tenantguard/store/journal"
)

// Writer is how the shipper writes to ClickHouse (Client and Connector
// implement it; tests inject faults through it).
//
// Write stores every record of batch (each a version of a finding, evidence
// spans included) and returns nil only once ClickHouse has acknowledged all
// of them: the shipper then moves its durable cursor past the batch and
// never sends it again. token identifies the batch's content: a re-sent
// batch carries the same token, and the implementation must make a re-send
// of an acknowledged token harmless (ClickHouse drops it through
// insert_deduplication_token; versions collapse in ReplacingMergeTree
// anyway). Write must return promptly once ctx is done.
//
// The error tells the shipper what to do: one wrapping ErrUnavailable (or a
// context error) is retried with backoff for as long as it lasts; one
// wrapping ErrRejected means a record in the batch can never be written, so
// the shipper bisects the batch and dead-letters that record; any other
// error (an unlisted server code) is retried with backoff too, counted in
// ShipperStatus.Unknown, and after max_attempts the batch is split so that
// the records around the failing one get through. Only a rejection
// dead-letters a record.
// Implementations must be safe for concurrent use.
type Writer interface {
	Write(ctx context.Context, batch []store.Evidence, token string) error
}

// ShipperStatus is what the shipper reports for metrics and health checks.
// It never holds a secret.
type ShipperStatus struct {
	// Backlog is the number of complete journal records after the cursor:
	// written to the journal, not yet acknowledged by ClickHouse.
	Backlog int64
	// LastError is the latest failure (shipping, the journal, the cursor or
	// the dead-letter file) and LastErrorAt when it happened; compare with
	// LastSuccessAt to tell whether it is still failing.
	LastError   string
	LastErrorAt time.Time
	// LastSuccessAt is when ClickHouse last acknowledged a batch.
	LastSuccessAt time.Time
	// Shipped counts records acknowledged since start; DeadLetters counts
	// records moved to the dead-letter file since start.
	Shipped     uint64
	DeadLetters uint64
	// Writes counts the batches ClickHouse acknowledged and WriteFailures
	// the attempts that failed (each retry counts), since start.
	Writes, WriteFailures uint64
	// Unknown counts failures whose cause the shipper cannot tell (a server
	// error code it does not know): retried with backoff, never
	// dead-lettered. A rising count with a stuck backlog needs a look at
	// LastError.
	Unknown uint64
}

// ErrNotDrained is returned by Stop when records remain unshipped. They are
// not lost: they stay in the journal and ship after the next start.
var ErrNotDrained = errors.New("clickhouse shipper stopped with records not yet shipped")

// Suffixes of the shipper's files, next to the journal.
const (
	CursorSuffix     = ".clickhouse-cursor"
	DeadLetterSuffix = ".clickhouse-deadletter.jsonl"
)

// Shipper copies journal records to ClickHouse. It reads the journal from a
// durable cursor (the byte offset of the first unshipped line, kept in
// <journal>.clickhouse-cursor) on its own goroutine, sends batches of up to
// batch_size records, or fewer once the oldest waiting record is batch_age
// old, and moves the cursor only after ClickHouse acknowledges. Failed
// batches are retried with capped exponential backoff and jitter; a record
// that can never be written goes to <journal>.clickhouse-deadletter.jsonl
// with the reason. Only one Shipper per journal may run in a process (and
// one process per journal: the cursor file is not locked).
type Shipper = fileShipper[store.Evidence]

// fileShipper ships one JSON-lines file of T records: the journal
// (Shipper) or the coverage file next to it (CoverageShipper). Everything
// that differs between the two is in its fileKind.
type fileShipper[T any] struct {
	cfg        config.ClickHouse
	kind       fileKind[T]
	journal    string // the shipped file
	cursorPath string
	deadPath   string
	logger     *zap.Logger
	attempt    time.Duration

	wake     chan struct{}
	stopping chan struct{}
	ctx      context.Context // cancelled when Stop's deadline passes
	cancel   context.CancelFunc
	done     chan struct{}

	lifeMu sync.Mutex
	state  int // 0 new, 1 running, 2 stopped
	stop   sync.Once

	// cur is owned by the shipping goroutine (and NewShipper before it).
	cur     cursor
	counter *lineCounter

	mu        sync.Mutex
	st        ShipperStatus
	lastWarn  string
	lastWarnT time.Time

	// Test hooks.
	now       func() time.Time
	jitter    func() float64
	onBackoff func(time.Duration)
}

// shipping guards the invariant of one shipper per journal path in this
// process: two would each move the cursor and ship every record twice.
// Sharing a shipper is its owner's business (the processor's factory holds
// one per journal, by reference count); this only refuses a second.
var shipping = struct {
	sync.Mutex
	paths map[string]bool
}{paths: map[string]bool{}}

// fileKind is what a shipped file holds and how it reaches ClickHouse.
type fileKind[T any] struct {
	// what names the records in messages ("journal records").
	what string
	// parse decodes a line; write stores a batch (see Writer).
	parse func([]byte) (T, error)
	write func(ctx context.Context, batch []T, token string) error
	// token is the batch's insert deduplication token.
	token func([]journal.LineOf[T]) string
	// ids names a record in the dead-letter file and log.
	ids func(T) (leakID string, version uint64)
}

// NewShipper prepares a shipper for the journal at journalPath. It reads the
// cursor but starts nothing: call Start. cfg must have passed Validate.
func NewShipper(cfg config.ClickHouse, journalPath string, w Writer, logger *zap.Logger) (*Shipper, error) {
	if w == nil {
		return nil, errors.New("clickhouse shipper: no writer")
	}
	return newFileShipper(cfg, journalPath, fileKind[store.Evidence]{
		what:  "journal records",
		parse: journal.ParseRecord,
		write: w.Write,
		token: batchToken[store.Evidence],
		ids:   func(ev store.Evidence) (string, uint64) { return ev.LeakID, ev.Version },
	}, logger)
}

func newFileShipper[T any](cfg config.ClickHouse, journalPath string, kind fileKind[T], logger *zap.Logger) (*fileShipper[T], error) {
	if cfg.BatchSize <= 0 || cfg.BatchAge <= 0 || cfg.RetryInitial <= 0 || cfg.RetryMax < cfg.RetryInitial || cfg.MaxAttempts <= 0 {
		return nil, errors.New("clickhouse shipper: batch_size, batch_age, retry intervals and max_attempts must be positive (validate the config first)")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	abs, err := filepath.Abs(journalPath)
	if err != nil {
		return nil, fmt.Errorf("clickhouse shipper: journal path %s: %w", journalPath, err)
	}
	shipping.Lock()
	if shipping.paths[abs] {
		shipping.Unlock()
		return nil, fmt.Errorf("clickhouse shipper: journal %s already has a shipper in this collector", abs)
	}
	shipping.paths[abs] = true
	shipping.Unlock()

	s := &fileShipper[T]{
		cfg:        cfg,
		kind:       kind,
		journal:    abs,
		cursorPath: abs + CursorSuffix,
		deadPath:   abs + DeadLetterSuffix,
		logger:     logger.With(zap.String("journal", abs)),
		attempt:    cfg.DialTimeout + cfg.ReadTimeout,
		wake:       make(chan struct{}, 1),
		stopping:   make(chan struct{}),
		done:       make(chan struct{}),
		now:        time.Now,
		jitter:     rand.Float64,
	}
	if s.attempt <= 0 {
		d := config.DefaultClickHouse()
		s.attempt = d.DialTimeout + d.ReadTimeout
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.cur, err = loadCursor(s.cursorPath)
	if err != nil {
		s.logger.Warn("clickhouse shipper: "+err.Error(), zap.String("cursor", s.cursorPath))
	}
	s.cur.Journal = abs
	s.counter = &lineCounter{path: abs, from: s.cur.Offset, to: s.cur.Offset}
	_, _ = s.prepare() // verify the cursor now, so Status is right before Start
	return s, nil
}

// Start runs the shipper on its own goroutine. It returns at once.
func (s *fileShipper[T]) Start() {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.state != 0 {
		return
	}
	s.state = 1
	s.logger.Info("clickhouse shipper started", zap.Int64("backlog", s.Status().Backlog),
		zap.Int64("cursor", s.cur.Offset))
	go s.run()
}

// Wake tells the shipper that the journal grew. It never blocks; call it
// after each journal append (without it, new records are noticed within
// batch_age).
func (s *fileShipper[T]) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Stop ships what it can before ctx is done (ignoring batch_age, giving up
// at the first failure that is not a rejected record), then stops the
// goroutine; when ctx ends first, the write in flight is cancelled. It
// returns an error wrapping ErrNotDrained when records remain: they stay in
// the journal and ship after the next start, so callers should log it, not
// treat it as data loss.
func (s *fileShipper[T]) Stop(ctx context.Context) error {
	s.stop.Do(func() { close(s.stopping) })
	s.lifeMu.Lock()
	running := s.state == 1
	s.state = 2
	s.lifeMu.Unlock()
	if running {
		select {
		case <-s.done:
		case <-ctx.Done():
			s.cancel()
			<-s.done
		}
	} else {
		s.release()
	}
	s.cancel()
	if n := s.Status().Backlog; n > 0 {
		return fmt.Errorf("%w: %d %s are not yet in ClickHouse; they stay in %s and ship after the next start",
			ErrNotDrained, n, s.kind.what, s.journal)
	}
	return nil
}

// Status reports the backlog, counted from the journal now, and the
// shipper's record of successes and failures.
func (s *fileShipper[T]) Status() ShipperStatus {
	n, _ := s.counter.count()
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	st.Backlog = n
	return st
}

func (s *fileShipper[T]) release() {
	shipping.Lock()
	delete(shipping.paths, s.journal)
	shipping.Unlock()
}

func (s *fileShipper[T]) isStopping() bool {
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

func (s *fileShipper[T]) run() {
	defer close(s.done)
	defer s.release()
	var (
		pendingSince time.Time // when the oldest waiting record was first seen
		failures     int       // consecutive failures to read the journal
	)
	for s.ctx.Err() == nil {
		stopping := s.isStopping()
		n, err := s.prepare()
		if err == nil && n > 0 {
			if pendingSince.IsZero() {
				pendingSince = s.now()
			}
			if !stopping && n < int64(s.cfg.BatchSize) && s.cur.PendingEnd == 0 {
				if wait := s.cfg.BatchAge - s.now().Sub(pendingSince); wait > 0 {
					s.waitWake(wait)
					continue
				}
			}
			var lines []journal.LineOf[T]
			if lines, err = s.nextBatch(); err == nil && len(lines) > 0 {
				failures = 0
				if !s.ship(lines) {
					return
				}
				pendingSince = time.Time{}
				continue
			}
		}
		if err != nil {
			failures++
			s.fail(err)
			if stopping || !s.sleep(s.backoff(failures)) {
				return
			}
			continue
		}
		failures = 0
		if stopping {
			return
		}
		if n > 0 { // counted but not read: the journal changed under us
			s.waitWake(s.cfg.BatchAge)
			continue
		}
		pendingSince = time.Time{}
		// Wake makes shipping prompt; without one, new records are still
		// noticed within batch_age.
		s.waitWake(s.cfg.BatchAge)
	}
}

// waitWake waits for a Wake, Stop, or d (if positive).
func (s *fileShipper[T]) waitWake(d time.Duration) {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-s.wake:
	case <-timeout:
	case <-s.stopping:
	case <-s.ctx.Done():
	}
}

// sleep waits d before a retry. Stop cuts it short: callers check
// isStopping before sleeping, so at most one last attempt follows a Stop. A
// cancelled shipper returns false.
func (s *fileShipper[T]) sleep(d time.Duration) bool {
	if s.onBackoff != nil {
		s.onBackoff(d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.stopping:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// backoff is the wait before retry n (1-based): retry_initial_interval
// doubled each time up to retry_max_interval, with equal jitter (half
// fixed, half random) so that collectors that lost the same server do not
// retry in step.
func (s *fileShipper[T]) backoff(n int) time.Duration {
	return backoffDelay(n, s.cfg.RetryInitial, s.cfg.RetryMax, s.jitter())
}

func backoffDelay(n int, initial, maxDelay time.Duration, jitter float64) time.Duration {
	d := initial
	for i := 1; i < n && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	return d/2 + time.Duration(jitter*float64(d/2))
}

// prepare checks the cursor against the journal (a journal replaced or cut
// behind the shipper is shipped again from its start) and counts the
// records after it.
func (s *fileShipper[T]) prepare() (int64, error) {
	f, err := os.Open(s.journal)
	if errors.Is(err, fs.ErrNotExist) {
		if s.cur.Offset > 0 {
			s.resetCursor("the journal is gone")
		}
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("opening journal: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("reading journal: %w", err)
	}
	if !s.cur.verify(f, st.Size()) {
		s.resetCursor("the journal no longer holds the line the cursor points after (replaced or cut)")
	}
	if s.cur.PendingEnd != 0 && !s.cur.pendingValid(f, st.Size()) {
		s.cur.PendingEnd = 0
	}
	return s.counter.count()
}

func (s *fileShipper[T]) resetCursor(why string) {
	s.logger.Warn("clickhouse shipper: "+why+"; shipping the journal from its start (ClickHouse drops what it already has)",
		zap.Int64("old_cursor", s.cur.Offset))
	s.cur = cursor{Journal: s.journal}
	if err := saveCursor(s.cursorPath, s.cur); err != nil {
		s.fail(err)
	}
	s.counter.reset(0)
}

// nextBatch reads the next batch after the cursor: the range of an
// interrupted send if there is one, else up to batch_size records.
func (s *fileShipper[T]) nextBatch() ([]journal.LineOf[T], error) {
	f, err := os.Open(s.journal)
	if err != nil {
		return nil, fmt.Errorf("opening journal: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading journal: %w", err)
	}
	maxLines, end := s.cfg.BatchSize, st.Size()
	if s.cur.PendingEnd > s.cur.Offset {
		maxLines, end = 0, s.cur.PendingEnd
	}
	lines, err := journal.ReadLinesOf(f, s.cur.Offset, end, maxLines, s.kind.parse)
	if err != nil {
		return nil, fmt.Errorf("reading journal: %w", err)
	}
	return lines, nil
}

// batchToken is the insert deduplication token of a batch: a hash of its
// journal bytes. A re-send of the same lines (a retry, or the first batch
// after a crash, which re-reads the recorded pending range) has the same
// token; different content never shares one, even in a new journal at the
// same path.
func batchToken[T any](part []journal.LineOf[T]) string {
	h := sha256.New()
	for _, l := range part {
		h.Write(l.Raw)
	}
	return "tenantguard-" + hex.EncodeToString(h.Sum(nil))[:40]
}

// ship sends lines in order, splitting around poison records. It returns
// false when the shipper must exit (cancelled, or stopping after a
// failure).
func (s *fileShipper[T]) ship(lines []journal.LineOf[T]) bool {
	// Lines that are not records never reach the writer: each is its own
	// part, acknowledged (blank) or dead-lettered (bad) directly.
	var queue [][]journal.LineOf[T]
	for i := 0; i < len(lines); {
		if lines[i].Blank || lines[i].Err != nil {
			queue = append(queue, lines[i:i+1])
			i++
			continue
		}
		j := i
		for j < len(lines) && !lines[j].Blank && lines[j].Err == nil {
			j++
		}
		queue = append(queue, lines[i:j])
		i = j
	}
	for len(queue) > 0 {
		part := queue[0]
		switch {
		case part[0].Blank:
			s.ack(part, false)
			queue = queue[1:]
			continue
		case part[0].Err != nil:
			if !s.deadLetter(part[0], part[0].Err) {
				return false
			}
			queue = queue[1:]
			continue
		}
		outcome, err := s.send(part)
		switch outcome {
		case sent:
			s.ack(part, true)
			queue = queue[1:]
		case split:
			mid := len(part) / 2
			s.logger.Warn("clickhouse shipper: batch keeps failing for an unknown reason; splitting it so the records around the failing one ship",
				zap.Int("records", len(part)), zap.Error(err))
			queue = append([][]journal.LineOf[T]{part[:mid], part[mid:]}, queue[1:]...)
		case poison:
			if len(part) == 1 {
				if !s.deadLetter(part[0], err) {
					return false
				}
				queue = queue[1:]
				continue
			}
			mid := len(part) / 2
			s.logger.Info("clickhouse shipper: batch refused; splitting it to find the record",
				zap.Int("records", len(part)), zap.Error(err))
			queue = append([][]journal.LineOf[T]{part[:mid], part[mid:]}, queue[1:]...)
		default:
			return false
		}
	}
	return true
}

type outcome int

const (
	sent   outcome = iota
	poison         // ClickHouse refused a record of the part
	split          // the part keeps failing for an unknown reason
	exit
)

// send writes one part until it is acknowledged, refused, or the shipper
// stops, retrying with backoff in between. A part of several records that
// fails max_attempts times for an unknown reason is handed back to be
// split; a single record is retried for as long as that lasts.
func (s *fileShipper[T]) send(part []journal.LineOf[T]) (outcome, error) {
	token := s.kind.token(part)
	evs := make([]T, len(part))
	for i := range part {
		evs[i] = part[i].Record
	}
	first, last := part[0].Start, part[len(part)-1].End
	if s.cur.PendingEnd != last {
		s.cur.PendingEnd = last
		if err := saveCursor(s.cursorPath, s.cur); err != nil {
			s.fail(err) // the send is still safe; only a crash would resend with another token
		}
	}
	unknown := 0 // failures that are neither unavailability nor rejection
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(s.ctx, s.attempt)
		err := s.kind.write(ctx, evs, token)
		cancel()
		if err == nil {
			return sent, nil
		}
		if s.ctx.Err() != nil {
			s.fail(fmt.Errorf("shipping %d %s cut short by stop: %w", len(part), s.kind.what, err))
			return exit, err
		}
		s.mu.Lock()
		s.st.WriteFailures++
		s.mu.Unlock()
		s.fail(fmt.Errorf("shipping %d %s (bytes %d to %d of %s): %w", len(part), s.kind.what, first, last, filepath.Base(s.journal), err))
		switch {
		case errors.Is(err, ErrRejected):
			return poison, err
		case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		default:
			unknown++
			s.mu.Lock()
			s.st.Unknown++
			s.mu.Unlock()
			if unknown >= s.cfg.MaxAttempts && len(part) > 1 {
				return split, fmt.Errorf("failed %d times: %w", unknown, err)
			}
		}
		if s.isStopping() || !s.sleep(s.backoff(try)) {
			return exit, err
		}
	}
}

// ack moves the cursor past part, durably, and counts it.
func (s *fileShipper[T]) ack(part []journal.LineOf[T], shipped bool) {
	last := part[len(part)-1]
	s.cur.Offset = last.End
	s.cur.LastLineStart = last.Start
	s.cur.LastLineHash = hashLine(last.Raw)
	s.cur.PendingEnd = 0
	s.cur.UpdatedAt = s.now().UTC()
	if err := saveCursor(s.cursorPath, s.cur); err != nil {
		// ClickHouse has the batch; after a restart it is sent again and
		// deduplicated.
		s.fail(err)
	}
	s.counter.advance(last.End, int64(len(part)))
	if !shipped {
		return
	}
	records := 0
	for _, l := range part {
		if !l.Blank && l.Err == nil {
			records++
		}
	}
	s.mu.Lock()
	s.st.Shipped += uint64(records)
	s.st.Writes++
	s.st.LastSuccessAt = s.now()
	s.mu.Unlock()
}

// deadLetter appends the line and the reason to the dead-letter file
// (fsynced), then moves the cursor past it. Until the file takes it, the
// shipper retries: the record must not be skipped without a trace.
func (s *fileShipper[T]) deadLetter(l journal.LineOf[T], reason error) bool {
	leakID, version := s.kind.ids(l.Record)
	entry := struct {
		At      time.Time       `json:"at"`
		Reason  string          `json:"reason"`
		Journal string          `json:"journal"`
		Offset  int64           `json:"offset"`
		LeakID  string          `json:"leak_id,omitempty"`
		Version uint64          `json:"version,omitempty"`
		Record  json.RawMessage `json:"record,omitempty"`
		Line    string          `json:"line,omitempty"`
	}{At: s.now().UTC(), Reason: reason.Error(), Journal: s.journal, Offset: l.Start, LeakID: leakID, Version: version}
	if trimmed := bytes.TrimSpace(l.Raw); json.Valid(trimmed) {
		entry.Record = trimmed
	} else {
		entry.Line = string(trimmed)
	}
	b, err := json.Marshal(entry)
	if err != nil {
		b, _ = json.Marshal(struct {
			At     time.Time `json:"at"`
			Reason string    `json:"reason"`
			Offset int64     `json:"offset"`
			Line   string    `json:"line"`
		}{entry.At, entry.Reason, entry.Offset, string(l.Raw)})
	}
	b = append(b, '\n')
	for try := 1; ; try++ {
		err := appendSync(s.deadPath, b)
		if err == nil {
			break
		}
		s.fail(fmt.Errorf("writing dead-letter file: %w", err))
		if s.isStopping() || !s.sleep(s.backoff(try)) {
			return false
		}
	}
	s.logger.Error("clickhouse shipper: record moved to the dead-letter file; it will not be retried",
		zap.String("leak_id", leakID), zap.Uint64("version", version), zap.Int64("offset", l.Start),
		zap.String("dead_letter_file", s.deadPath), zap.String("reason", reason.Error()))
	s.ack([]journal.LineOf[T]{l}, false)
	s.mu.Lock()
	s.st.DeadLetters++
	s.mu.Unlock()
	return true
}

func appendSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// fail records a failure for Status and logs it: at warn level when it
// differs from the last one or a minute has passed, else at debug level, so
// an outage does not flood the log.
func (s *fileShipper[T]) fail(err error) {
	now := s.now()
	msg := err.Error()
	s.mu.Lock()
	s.st.LastError, s.st.LastErrorAt = msg, now
	loud := msg != s.lastWarn || now.Sub(s.lastWarnT) >= time.Minute
	if loud {
		s.lastWarn, s.lastWarnT = msg, now
	}
	s.mu.Unlock()
	if loud {
		s.logger.Warn("clickhouse shipper: " + msg + "; the " + s.kind.what + " stay in " + filepath.Base(s.journal) + " and are retried")
	} else {
		s.logger.Debug("clickhouse shipper: " + msg)
	}
}

// lineCounter counts the complete journal lines after the cursor,
// incrementally: each call reads only what was appended since the last.
type lineCounter struct {
	mu    sync.Mutex
	path  string
	from  int64 // the cursor
	to    int64 // end of the last complete line counted
	lines int64 // complete lines in [from, to)
}

func (c *lineCounter) count() (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := os.Open(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return c.lines, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return c.lines, err
	}
	size := st.Size()
	if size < c.to { // cut back (a failed journal append): count again
		c.to, c.lines = c.from, 0
		if size < c.from {
			return 0, nil
		}
	}
	buf := make([]byte, 64<<10)
	for off := c.to; off < size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		chunk := buf[:n]
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			c.lines += int64(bytes.Count(chunk, []byte{'\n'}))
			c.to = off + int64(i) + 1
		}
		off += int64(n)
		if err != nil && !errors.Is(err, io.EOF) {
			return c.lines, err
		}
		if n == 0 {
			break
		}
	}
	return c.lines, nil
}

// advance moves the start of the count to the cursor at to, n lines on.
func (c *lineCounter) advance(to, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.from = to
	if c.to < to {
		c.to, c.lines = to, 0
		return
	}
	c.lines = max(c.lines-n, 0)
}

func (c *lineCounter) reset(from int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.from, c.to, c.lines = from, from, 0
}
