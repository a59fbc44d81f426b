package main

// Decoding OTLP for scan: JSON lines and documents, protobuf requests and
// the file exporter's records, streamed one request (or one resourceSpans
// entry) at a time.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// ---------------------------------------------------------------- OTLP JSON

// scanJSON reads JSON lines (the file exporter's format: one request per
// line) or, when the first line is not a whole JSON value, a stream of
// request documents spanning many lines.
func (s *scanner) scanJSON(name string, linesOnly bool, br *bufio.Reader) {
	if b, _ := br.Peek(3); bytes.Equal(b, utf8BOM) {
		_, _ = br.Discard(3)
	}
	if linesOnly || firstLineIsJSON(br) {
		s.scanJSONLines(name, br)
		return
	}
	s.scanJSONDocuments(name, br)
}

// firstLineIsJSON looks at the first line that is not blank, within the
// read-ahead: a line longer than that is taken as a JSON line too.
func firstLineIsJSON(br *bufio.Reader) bool {
	buf, _ := br.Peek(readBufferSize)
	i := 0
	for i < len(buf) && isJSONSpace(buf[i]) {
		i++
	}
	if i == len(buf) {
		return true
	}
	end := bytes.IndexByte(buf[i:], '\n')
	if end < 0 {
		return true // one line to the end, or to beyond the read-ahead
	}
	return json.Valid(buf[i : i+end])
}

func (s *scanner) scanJSONLines(name string, br *bufio.Reader) {
	for lineNo := 1; ; lineNo++ {
		line, tooLong, err := s.readLine(br)
		if err != nil && err != io.EOF {
			// The line was cut short by the source (a truncated gzip
			// stream): it is not judged, everything before it was.
			s.fail(&inputError{input: name, line: lineNo, err: err})
			return
		}
		switch text := bytes.TrimSpace(line); {
		case tooLong:
			s.fail(&inputError{input: name, line: lineNo,
				err: fmt.Errorf("line longer than %d MiB: not one OTLP request per line?", maxRequestBytes>>20)})
		case len(text) > 0:
			td, uerr := s.jsonU.UnmarshalTraces(text)
			if uerr == nil && !json.Valid(text) {
				// The OTLP reader stops at the end of the first object and
				// would not notice what follows it.
				uerr = errors.New("not one JSON object (trailing data, or invalid JSON)")
			}
			if uerr != nil {
				s.fail(&inputError{input: name, line: lineNo, err: fmt.Errorf("invalid OTLP JSON: %w", uerr)})
			} else {
				s.feed(location{input: name, line: lineNo, offset: -1}, td)
			}
		}
		if err == io.EOF {
			return
		}
		// A single huge line must not pin its buffer for the rest of the input.
		if cap(s.line) > 4*readBufferSize {
			s.line = nil
		}
	}
}

// readLine reads one line into the scanner's buffer, keeping at most
// maxRequestBytes of it. err is io.EOF after the last line.
func (s *scanner) readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	buf := s.line[:0]
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) <= maxRequestBytes {
			buf = append(buf, frag...)
		} else {
			tooLong = true
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		s.line = buf
		return buf, tooLong, err
	}
}

// lineCounter counts the newlines read through it, so that a position the
// JSON decoder reports can be turned into a line number.
type lineCounter struct {
	r        io.Reader
	newlines int
}

func (c *lineCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.newlines += bytes.Count(p[:n], []byte{'\n'})
	return n, err
}

// lineAt is the 1-based line of input offset off, which must lie at or after
// the decoder's position: the newlines read so far, less those the decoder
// holds buffered beyond off.
func lineAt(dec *json.Decoder, lc *lineCounter, off int64) int {
	r := dec.Buffered() // a bytes.Reader over the decoder's buffer: no copy below
	if rel := off - dec.InputOffset(); rel > 0 {
		if sk, ok := r.(io.Seeker); ok {
			_, _ = sk.Seek(rel, io.SeekCurrent)
		} else {
			_, _ = io.CopyN(io.Discard, r, rel)
		}
	}
	var after newlineCount
	_, _ = io.Copy(&after, r)
	return 1 + lc.newlines - int(after)
}

// newlineCount counts the newlines written to it.
type newlineCount int

func (c *newlineCount) Write(p []byte) (int, error) {
	*c += newlineCount(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}

// scanJSONDocuments streams request documents with a json.Decoder: each
// resourceSpans entry is decoded and judged on its own, within one batch per
// document, so memory is bounded by the largest entry, not the document.
func (s *scanner) scanJSONDocuments(name string, r io.Reader) {
	lc := &lineCounter{r: r}
	dec := json.NewDecoder(lc)
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			s.fail(s.jsonError(name, dec, lc, err))
			return
		}
		if tok != json.Delim('{') {
			s.fail(&inputError{input: name, line: lineAt(dec, lc, dec.InputOffset()),
				err: fmt.Errorf("expected an OTLP request (a JSON object), found %v", tok)})
			return
		}
		at := location{input: name, line: lineAt(dec, lc, dec.InputOffset()), offset: -1}
		req := s.beginRequest(at)
		err = s.readDocument(name, dec, lc, req)
		req.end() // judge what was read, even when the rest is not readable
		if err != nil {
			s.fail(err.(*inputError))
			return
		}
	}
}

// readDocument reads the members of one request object, its '{' consumed.
func (s *scanner) readDocument(name string, dec *json.Decoder, lc *lineCounter, req *request) error {
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return s.jsonError(name, dec, lc, err)
		}
		key, _ := tok.(string)
		if key != "resourceSpans" && key != "resource_spans" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return s.jsonError(name, dec, lc, err)
			}
			continue
		}
		if tok, err = dec.Token(); err != nil {
			return s.jsonError(name, dec, lc, err)
		}
		if tok == nil {
			continue // "resourceSpans": null
		}
		if tok != json.Delim('[') {
			return &inputError{input: name, line: lineAt(dec, lc, dec.InputOffset()),
				err: fmt.Errorf("%s: expected an array, found %v", key, tok)}
		}
		for i := 0; dec.More(); i++ {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return s.jsonError(name, dec, lc, err)
			}
			doc := make([]byte, 0, len(raw)+20)
			doc = append(append(append(doc, `{"resourceSpans":[`...), raw...), "]}"...)
			td, err := s.jsonU.UnmarshalTraces(doc)
			if err != nil {
				// The JSON is well formed, so the entries after it still
				// read: report this one and go on.
				line := lineAt(dec, lc, dec.InputOffset()) - bytes.Count(raw, []byte{'\n'})
				s.fail(&inputError{input: name, line: line, err: fmt.Errorf("%s[%d]: invalid OTLP JSON: %w", key, i, err)})
				continue
			}
			req.add(td)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return s.jsonError(name, dec, lc, err)
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return s.jsonError(name, dec, lc, err)
	}
	return nil
}

func (s *scanner) jsonError(name string, dec *json.Decoder, lc *lineCounter, err error) *inputError {
	var (
		syn *json.SyntaxError
		rd  *readError
	)
	switch {
	case errors.As(err, &rd):
		return &inputError{input: name, line: lc.newlines + 1, err: rd}
	case errors.As(err, &syn):
		return &inputError{input: name, line: lineAt(dec, lc, syn.Offset), err: fmt.Errorf("invalid JSON: %w", err)}
	case errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF:
		return &inputError{input: name, line: lc.newlines + 1,
			err: errors.New("the JSON ends inside a request (truncated file?)")}
	}
	return &inputError{input: name, line: lineAt(dec, lc, dec.InputOffset()), err: err}
}

// ---------------------------------------------------------------- OTLP protobuf

// pbReader counts the bytes read, for error positions.
type pbReader struct {
	br  *bufio.Reader
	off int64
}

func (r *pbReader) Read(p []byte) (int, error) {
	n, err := r.br.Read(p)
	r.off += int64(n)
	return n, err
}

func (r *pbReader) ReadByte() (byte, error) {
	c, err := r.br.ReadByte()
	if err == nil {
		r.off++
	}
	return c, err
}

// uvarint reads a protobuf varint: io.EOF when the input ends before it,
// io.ErrUnexpectedEOF when it ends inside it.
func (r *pbReader) uvarint() (uint64, error) {
	start := r.off
	v, err := binary.ReadUvarint(r)
	if err == io.EOF && r.off != start {
		err = io.ErrUnexpectedEOF
	}
	return v, err
}

// scanProto reads an ExportTraceServiceRequest, or a sequence of the file
// exporter's length-prefixed records (4-byte big-endian length, then the
// request), telling them apart by the first byte: a request starts with the
// tag of its resource_spans field, 0x0a; a record's length with 0x00 unless
// it is 16 MiB or larger.
func (s *scanner) scanProto(name string, compressed bool, br *bufio.Reader) {
	head, err := br.Peek(1)
	if len(head) == 0 {
		var rd *readError
		if errors.As(err, &rd) {
			s.fail(&inputError{input: name, err: rd})
		}
		return // empty: no request
	}
	r := &pbReader{br: br}
	switch {
	case head[0] == 0x0a:
		s.scanProtoRequest(name, compressed, r)
	case head[0] < 0x10:
		s.scanProtoRecords(name, compressed, r)
	default:
		s.fail(&inputError{input: name, err: fmt.Errorf("neither OTLP JSON nor OTLP protobuf: starts with byte 0x%02x "+
			"(a request starts with '{' or 0x0a, a file exporter record with 0x00)", head[0])})
	}
}

func (s *scanner) pbError(name string, compressed bool, off int64, err error) *inputError {
	return &inputError{input: name, off: off, hasOff: true, compressed: compressed, err: err}
}

// truncated explains a read that ended early, or passes a source error on.
func truncated(err error, what string, want uint64, got int) error {
	var rd *readError
	if errors.As(err, &rd) {
		return rd
	}
	return fmt.Errorf("truncated: %s declares %d bytes, the input ends after %d", what, want, got)
}

// scanProtoRequest streams one ExportTraceServiceRequest: each top-level
// resource_spans entry is read and judged on its own, within one batch, so
// memory is bounded by the largest entry rather than the request.
func (s *scanner) scanProtoRequest(name string, compressed bool, r *pbReader) {
	req := s.beginRequest(location{input: name, offset: -1})
	defer req.end() // judge what was read, even when the rest is not readable
	for {
		start := r.off
		tag, err := r.uvarint()
		if err == io.EOF {
			return
		}
		if err != nil {
			s.fail(s.pbError(name, compressed, start, truncated(err, "a field tag", 1, 0)))
			return
		}
		field, wire := tag>>3, tag&7
		switch {
		case field == 1 && wire == 2:
			n, err := r.uvarint()
			if err != nil {
				s.fail(s.pbError(name, compressed, start, truncated(err, "the resource_spans length", 1, 0)))
				return
			}
			if n > maxRequestBytes {
				s.fail(s.pbError(name, compressed, start, fmt.Errorf(
					"resource_spans entry of %d bytes, over the %d MiB limit: corrupt, or not OTLP protobuf", n, maxRequestBytes>>20)))
				return
			}
			// Re-frame the entry as a request holding only it.
			msg := binary.AppendUvarint([]byte{0x0a}, n)
			hdr := len(msg)
			msg = append(msg, make([]byte, n)...)
			if got, err := io.ReadFull(r, msg[hdr:]); err != nil {
				s.fail(s.pbError(name, compressed, start, truncated(err, "resource_spans entry", n, got)))
				return
			}
			td, err := s.protoU.UnmarshalTraces(msg)
			if err != nil {
				s.fail(s.pbError(name, compressed, start, fmt.Errorf("invalid OTLP protobuf in resource_spans entry: %w", err)))
				continue // the framing holds: the next entry still reads
			}
			req.add(td)
		case field == 0 || wire == 3 || wire == 4 || wire > 5:
			s.fail(s.pbError(name, compressed, start, fmt.Errorf(
				"not an OTLP ExportTraceServiceRequest (field %d, wire type %d)", field, wire)))
			return
		default: // a field this reader does not know: skip it
			var skip uint64
			switch wire {
			case 0:
				_, err = r.uvarint()
			case 1:
				skip = 8
			case 2:
				skip, err = r.uvarint()
			case 5:
				skip = 4
			}
			if err == nil && skip > 0 {
				var got int64
				got, err = io.CopyN(io.Discard, r, int64(skip))
				if err != nil {
					err = truncated(err, fmt.Sprintf("field %d", field), skip, int(got))
				}
			}
			if err != nil {
				s.fail(s.pbError(name, compressed, start, truncated(err, fmt.Sprintf("field %d", field), 1, 0)))
				return
			}
		}
	}
}

// scanProtoRecords reads the file exporter's length-prefixed records, one
// request each (protobuf, or JSON when the record starts with '{').
func (s *scanner) scanProtoRecords(name string, compressed bool, r *pbReader) {
	for {
		start := r.off
		var hdr [4]byte
		if got, err := io.ReadFull(r, hdr[:]); err != nil {
			if err != io.EOF {
				s.fail(s.pbError(name, compressed, start, truncated(err, "a record length prefix", 4, got)))
			}
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxRequestBytes {
			s.fail(s.pbError(name, compressed, start, fmt.Errorf(
				"record of %d bytes, over the %d MiB limit: corrupt, or not a file exporter proto file", n, maxRequestBytes>>20)))
			return
		}
		msg := make([]byte, n)
		if got, err := io.ReadFull(r, msg); err != nil {
			s.fail(s.pbError(name, compressed, start, truncated(err, "record", uint64(n), got)))
			return
		}
		var (
			td  ptrace.Traces
			err error
		)
		if t := bytes.TrimLeft(msg, " \t\r\n"); len(t) > 0 && t[0] == '{' {
			if td, err = s.jsonU.UnmarshalTraces(msg); err == nil && !json.Valid(msg) {
				err = errors.New("not one JSON object (trailing data, or invalid JSON)")
			}
		} else {
			td, err = s.protoU.UnmarshalTraces(msg)
		}
		if err != nil {
			s.fail(s.pbError(name, compressed, start, fmt.Errorf("invalid OTLP record: %w", err)))
			continue
		}
		s.feed(location{input: name, offset: start}, td)
	}
}
