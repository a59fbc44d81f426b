package journal

import (
	"bytes"
	"strings"
	"testing"
)

func TestReadLinesFromAnOffset(t *testing.T) {
	rec := `{"leak_id":"a","version":1,"rule":"cross_tenant_trace"}` + "\n"
	text := rec + "\n" + "not json\n" + `{"version":2}` + "\n" + strings.Replace(rec, `"a"`, `"b"`, 1) + `{"leak_id":"torn"`
	r := strings.NewReader(text)
	lines, err := ReadLines(r, 0, int64(len(text)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5 (the torn last one is not complete)", len(lines))
	}
	for i, l := range lines {
		if string(l.Raw) != text[l.Start:l.End] || l.Raw[len(l.Raw)-1] != '\n' || (i > 0 && l.Start != lines[i-1].End) {
			t.Errorf("line %d: [%d, %d) %q", i, l.Start, l.End, l.Raw)
		}
	}
	if lines[0].Record.LeakID != "a" || lines[0].Err != nil || !lines[1].Blank || lines[4].Record.LeakID != "b" {
		t.Errorf("records: %+v", lines)
	}
	if lines[2].Err == nil || !strings.Contains(lines[2].Err.Error(), "not valid evidence JSON") ||
		lines[3].Err == nil || !strings.Contains(lines[3].Err.Error(), "no leak_id") {
		t.Errorf("bad lines must say why: %v / %v", lines[2].Err, lines[3].Err)
	}
	// Resuming from an offset, at most max lines.
	more, err := ReadLines(r, lines[2].Start, int64(len(text)), 2)
	if err != nil || len(more) != 2 || more[0].Start != lines[2].Start || more[1].End != lines[3].End {
		t.Fatalf("from offset %d, max 2: %+v, %v", lines[2].Start, more, err)
	}
	// Read (the whole-file reader) takes the same lines as records.
	recs, rep, err := Read(bytes.NewReader([]byte(text)))
	if err != nil || len(recs) != 2 || recs[0].LeakID != "a" || recs[1].LeakID != "b" || len(rep.Corrupt) != 2 || !rep.TornTail {
		t.Fatalf("Read: %+v %+v %v", recs, rep, err)
	}
}
