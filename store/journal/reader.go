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

// Line is one complete journal line and where it lies in the file, for a
// reader that resumes from a byte offset (the ClickHouse shipper's cursor).
type Line struct {
	// Start and End are the byte offsets of the line, End past its '\n'.
	Start, End int64
	// Raw is the line as written, '\n' included.
	Raw []byte
	// Record is the evidence the line holds, when Blank is false and Err
	// nil.
	Record store.Evidence
	// Blank is a line of white space only.
	Blank bool
	// Err says why the line is not an evidence record.
	Err error
}

// ReadLines reads the complete lines of r from byte offset off to end, at
// most max of them (all when max <= 0). A last line without its '\n' (a
// write cut short, or one being written) is not returned: the next read
// from the same offset sees it once it is complete. A line that is not an
// evidence record is returned with Err set, never skipped.
func ReadLines(r io.ReaderAt, off, end int64, max int) ([]Line, error) {
	if end <= off {
		return nil, nil
	}
	br := bufio.NewReaderSize(io.NewSectionReader(r, off, end-off), 64<<10)
	var out []Line
	pos := off
	for max <= 0 || len(out) < max {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 && b[len(b)-1] == '\n' {
			ln := Line{Start: pos, End: pos + int64(len(b)), Raw: b}
			pos = ln.End
			if trimmed := bytes.TrimSpace(b); len(trimmed) == 0 {
				ln.Blank = true
			} else {
				ln.Record, ln.Err = parseRecord(trimmed)
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

// parseRecord decodes one journal line (without surrounding white space):
// the one place that says what a journal record is.
func parseRecord(b []byte) (store.Evidence, error) {
	var ev store.Evidence
	if err := json.Unmarshal(b, &ev); err != nil {
		return store.Evidence{}, fmt.Errorf("journal line is not valid evidence JSON: %w", err)
	}
	if ev.LeakID == "" {
		return store.Evidence{}, errors.New("journal line has no leak_id")
	}
	return ev, nil
}
