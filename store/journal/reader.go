package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/tenantguard/tenantguard/store"
)

// LineOf is one complete line of a JSON-lines file of T records (the
// journal, or the coverage file next to it) and where it lies in the file,
// for a reader that resumes from a byte offset (the ClickHouse shipper's
// cursor).
type LineOf[T any] struct {
	// Start and End are the byte offsets of the line, End past its '\n'.
	Start, End int64
	// Raw is the line as written, '\n' included.
	Raw []byte
	// Record is the record the line holds, when Blank is false and Err
	// nil.
	Record T
	// Blank is a line of white space only.
	Blank bool
	// Err says why the line is not a record.
	Err error
}

// Line is one complete journal line.
type Line = LineOf[store.Evidence]

// ReadLines reads the complete journal lines of r from byte offset off to
// end, at most max of them (all when max <= 0), as ReadLinesOf does.
func ReadLines(r io.ReaderAt, off, end int64, max int) ([]Line, error) {
	return ReadLinesOf(r, off, end, max, ParseRecord)
}

// ReadLinesOf reads the complete lines of r from byte offset off to end, at
// most max of them (all when max <= 0), decoding each with parse. A last
// line without its '\n' (a write cut short, or one being written) is not
// returned: the next read from the same offset sees it once it is
// complete. A line parse refuses is returned with Err set, never skipped.
func ReadLinesOf[T any](r io.ReaderAt, off, end int64, max int, parse func([]byte) (T, error)) ([]LineOf[T], error) {
	if end <= off {
		return nil, nil
	}
	br := bufio.NewReaderSize(io.NewSectionReader(r, off, end-off), 64<<10)
	var out []LineOf[T]
	pos := off
	for max <= 0 || len(out) < max {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 && b[len(b)-1] == '\n' {
			ln := LineOf[T]{Start: pos, End: pos + int64(len(b)), Raw: b}
			pos = ln.End
			if trimmed := bytes.TrimSpace(b); len(trimmed) == 0 {
				ln.Blank = true
			} else {
				ln.Record, ln.Err = parse(trimmed)
			}
			out = append(out, ln)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// ParseRecord decodes one journal line (without surrounding white space):
// the one place that says what a journal record is.
func ParseRecord(b []byte) (store.Evidence, error) {
	var ev store.Evidence
	if err := json.Unmarshal(b, &ev); err != nil {
		return store.Evidence{}, fmt.Errorf("journal line is not valid evidence JSON: %w", err)
	}
	if ev.LeakID == "" {
		return store.Evidence{}, errors.New("journal line has no leak_id")
	}
	return ev, nil
}
