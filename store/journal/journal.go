package journal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/tenantguard/tenantguard/store"
)

// Journal is an append-only JSON-lines evidence file. It is safe for
// concurrent use.
//
// It watches its path: before and after each write it checks that the file
// it holds open is still the one at the path. A journal deleted, renamed or
// replaced behind its back is reopened (recreated if gone) and the append
// fails with an error wrapping ErrFileChanged, so the caller keeps the batch
// and retries it into the file at the path instead of a file nobody reads.
type Journal struct {
	path string

	mu     sync.Mutex
	f      *os.File // nil after the file was lost and could not be reopened
	size   int64
	buf    []byte // the batch being appended, reused
	closed bool
}

// ErrFileChanged is wrapped by Append's error when the file at the journal's
// path is no longer the one it wrote to. Nothing of the batch is known to be
// at the path: append it again.
var ErrFileChanged = errors.New("journal file changed behind the collector")

var _ store.Store = (*Journal)(nil)

// Open opens (creating if needed) the journal at path for appending. A torn
// last line left by a crash is cut off, so the next batch starts on a clean
// line.
func Open(path string) (*Journal, error) {
	if path == "" {
		return nil, errors.New("journal path is empty: set store.journal.path")
	}
	j := &Journal{path: path}
	if err := j.open(); err != nil {
		return nil, err
	}
	return j, nil
}

// open opens (creating if needed) the file at the path and repairs its
// tail. Called at Open and, with j.mu held, when the file was lost.
func (j *Journal) open() error {
	if err := os.MkdirAll(filepath.Dir(j.path), 0o750); err != nil {
		return fmt.Errorf("creating journal directory for %s: %w", j.path, err)
	}
	// 0600: evidence proves one customer saw another's data.
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening journal %s: %w", j.path, err)
	}
	j.f = f
	if err := j.repair(); err != nil {
		_ = f.Close()
		j.f = nil
		return err
	}
	return nil
}

// repair cuts a torn last line so appends start on a fresh line.
func (j *Journal) repair() error {
	st, err := j.f.Stat()
	if err != nil {
		return fmt.Errorf("reading journal %s: %w", j.path, err)
	}
	size := st.Size()
	end, err := lastNewlineEnd(j.f, size)
	if err != nil {
		return fmt.Errorf("reading journal %s: %w", j.path, err)
	}
	if end != size {
		if err := j.f.Truncate(end); err != nil {
			return fmt.Errorf("cutting torn last line of journal %s: %w", j.path, err)
		}
		if err := j.f.Sync(); err != nil {
			return fmt.Errorf("syncing journal %s: %w", j.path, err)
		}
	}
	j.size = end
	return nil
}

// check makes sure the open file is the one at the path, and that nobody
// else changed its length (a cut file would get a hole of zeros, an
// appended one a line spliced into another). A lost file is reopened (or
// recreated) and reported as ErrFileChanged with what happened; a reopen
// that fails leaves no file open, and the next append tries again. Called
// with j.mu held.
func (j *Journal) check() error {
	if j.f == nil {
		if err := j.open(); err != nil {
			return fmt.Errorf("%w: %w", ErrFileChanged, err)
		}
		return nil
	}
	atPath, err := os.Stat(j.path)
	var reason string
	switch {
	case errors.Is(err, fs.ErrNotExist):
		reason = "deleted or renamed"
	case err != nil:
		reason = "no longer readable: " + err.Error()
	default:
		held, herr := j.f.Stat()
		switch {
		case herr != nil:
			reason = "open file unreadable: " + herr.Error()
		case !os.SameFile(atPath, held):
			reason = "replaced by another file"
		case held.Size() != j.size:
			// Same file, other length: re-read where the last line ends.
			if err := j.repair(); err != nil {
				return fmt.Errorf("%w: %s was cut or appended to by something else: %w", ErrFileChanged, j.path, err)
			}
			return fmt.Errorf("%w: %s was cut or appended to by something else (now %d bytes)",
				ErrFileChanged, j.path, j.size)
		default:
			return nil
		}
	}
	_ = j.f.Close()
	j.f = nil
	if err := j.open(); err != nil {
		return fmt.Errorf("%w: %s was %s, and reopening it failed: %w", ErrFileChanged, j.path, reason, err)
	}
	return fmt.Errorf("%w: %s was %s; reopened it", ErrFileChanged, j.path, reason)
}

// lastNewlineEnd returns the offset just past the last '\n' (0 if none).
func lastNewlineEnd(r io.ReaderAt, size int64) (int64, error) {
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	for off := size; off > 0; {
		n := int64(chunk)
		if off < n {
			n = off
		}
		off -= n
		if _, err := r.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return off + int64(i) + 1, nil
		}
	}
	return 0, nil
}

// Path is where the journal lives.
func (j *Journal) Path() string { return j.path }

// Append writes the batch as one write followed by fsync. If either fails
// (a full disk, a read-only remount) the file is cut back to where it was,
// so a failed batch leaves no partial line, and the error says so. When it
// returns nil the batch is durable in the file at the journal's path: the
// path is checked before the write and after the fsync (see Journal).
func (j *Journal) Append(_ context.Context, batch []store.Evidence) error {
	if len(batch) == 0 {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return store.ErrClosed
	}
	if err := j.check(); err != nil {
		return err
	}
	j.buf = j.buf[:0]
	for i := range batch {
		var err error
		if j.buf, err = batch[i].AppendJSON(j.buf); err != nil {
			return fmt.Errorf("encoding finding %s for journal: %w", batch[i].LeakID, err)
		}
	}
	n, err := j.f.WriteAt(j.buf, j.size)
	if err == nil {
		err = j.f.Sync()
	}
	if err != nil {
		if n > 0 {
			_ = j.f.Truncate(j.size)
		}
		return fmt.Errorf("appending %d findings to journal %s: %w", len(batch), j.path, err)
	}
	j.size += int64(n)
	// The file may have gone while it was written: then the batch is in a
	// file nobody reads (or only under another name).
	return j.check()
}

// List reads the whole journal and returns the latest version of each
// matching finding.
func (j *Journal) List(_ context.Context, f store.Filter) ([]store.Evidence, error) {
	recs, _, err := ReadFile(j.path)
	if err != nil {
		return nil, err
	}
	return filterLatest(recs, f), nil
}

func filterLatest(recs []store.Evidence, f store.Filter) []store.Evidence {
	latest := store.Latest(recs)
	out := latest[:0]
	for i := range latest {
		if f.Match(&latest[i]) {
			out = append(out, latest[i])
		}
	}
	return out
}

// Close syncs and closes the file.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	if j.f == nil {
		return nil
	}
	err := j.f.Sync()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReadReport says what a read skipped.
type ReadReport struct {
	Records int
	// TornTail is set when the last line had no newline and did not parse:
	// a write cut short by a crash.
	TornTail bool
	// Corrupt lists the 1-based line numbers that did not parse.
	Corrupt []int
}

// ReadFile reads every record of the journal at path. A missing file is an
// empty journal. Unparseable lines are skipped and reported, never fatal:
// one bad line must not hide the rest of the evidence.
func ReadFile(path string) ([]store.Evidence, ReadReport, error) {
	var rep ReadReport
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, rep, nil
	}
	if err != nil {
		return nil, rep, fmt.Errorf("opening journal %s: %w", path, err)
	}
	defer f.Close()
	recs, rep, err := Read(f)
	if err != nil {
		return recs, rep, fmt.Errorf("reading journal %s: %w", path, err)
	}
	return recs, rep, nil
}

// Read decodes journal lines from r.
func Read(r io.Reader) ([]store.Evidence, ReadReport, error) {
	var (
		rep  ReadReport
		out  []store.Evidence
		line int
	)
	br := bufio.NewReaderSize(r, 256<<10)
	for {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 {
			line++
			complete := b[len(b)-1] == '\n'
			if trimmed := bytes.TrimSpace(b); len(trimmed) > 0 {
				if e, perr := ParseRecord(trimmed); perr != nil {
					if complete {
						rep.Corrupt = append(rep.Corrupt, line)
					} else {
						rep.TornTail = true
					}
				} else {
					out = append(out, e)
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, rep, err
		}
	}
	rep.Records = len(out)
	return out, rep, nil
}
