package clickhouse

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// cursor is the shipper's durable position in the journal. Offset is the
// byte offset of the first line ClickHouse has not acknowledged; the line
// before it is identified by its start and hash, so a journal replaced or
// cut behind the shipper's back is noticed instead of read from the middle
// of a line. PendingEnd, when set, is the end of the batch in flight: after
// a crash the shipper re-sends exactly that range first, with the same
// deduplication token, so ClickHouse drops it if it had arrived.
type cursor struct {
	Version       int       `json:"version"`
	Journal       string    `json:"journal"`
	Offset        int64     `json:"offset"`
	LastLineStart int64     `json:"last_line_start"`
	LastLineHash  string    `json:"last_line_sha256,omitempty"`
	PendingEnd    int64     `json:"pending_end,omitempty"`
	UpdatedAt     time.Time `json:"updated_at"`
}

func loadCursor(path string) (cursor, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cursor{Version: 1}, nil
	}
	if err != nil {
		return cursor{}, fmt.Errorf("reading shipper cursor %s: %w", path, err)
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil || c.Offset < 0 || c.LastLineStart < 0 || c.LastLineStart > c.Offset {
		// A cursor we cannot trust means shipping from the start: ClickHouse
		// collapses what it already has.
		return cursor{Version: 1}, fmt.Errorf("shipper cursor %s is unreadable; shipping the journal from its start: %v", path, err)
	}
	return c, nil
}

// saveCursor replaces the cursor file atomically: write a temporary file
// next to it, fsync, rename over, fsync the directory. A crash leaves the
// old cursor or the new one, never a torn one.
func saveCursor(path string, c cursor) error {
	c.Version = 1
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("saving shipper cursor: %w", err)
	}
	name := tmp.Name()
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("saving shipper cursor %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

func hashLine(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// verify reports whether the journal still holds, just before c.Offset, the
// line the cursor remembers. A journal with fewer bytes, or other bytes
// there, is not the one the cursor was written for.
func (c cursor) verify(f io.ReaderAt, size int64) bool {
	if c.Offset == 0 {
		return true
	}
	if c.Offset > size || c.LastLineStart >= c.Offset {
		return false
	}
	line := make([]byte, c.Offset-c.LastLineStart)
	if _, err := f.ReadAt(line, c.LastLineStart); err != nil {
		return false
	}
	if line[len(line)-1] != '\n' {
		return false
	}
	return c.LastLineHash == "" || hashLine(line) == c.LastLineHash
}

// pendingValid reports whether PendingEnd still ends a complete line after
// Offset.
func (c cursor) pendingValid(f io.ReaderAt, size int64) bool {
	if c.PendingEnd <= c.Offset || c.PendingEnd > size {
		return false
	}
	b := []byte{0}
	if _, err := f.ReadAt(b, c.PendingEnd-1); err != nil {
		return false
	}
	return bytes.Equal(b, []byte{'\n'})
}
