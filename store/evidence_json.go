package store

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends ev as one JSON line, byte for byte what encoding/json
// writes for it with HTML escaping off, followed by a newline: the journal's
// format. The journal writes every finding version a request raises before
// acknowledging the request, and encoding/json's reflection was about half of
// that write's CPU besides the fsync. TestAppendJSONMatchesEncodingJSON keeps
// the two encoders equal, field by field. A record it cannot write the same
// way (a time outside UTC or years 0–9999) goes through encoding/json.
func (ev *Evidence) AppendJSON(dst []byte) ([]byte, error) {
	if !plainTimes(ev) {
		return appendEncodingJSON(dst, ev)
	}
	w := jsonWriter{b: dst}
	w.str("{\"leak_id\":", ev.LeakID)
	w.b = append(w.b, `,"version":`...)
	w.b = strconv.AppendUint(w.b, ev.Version, 10)
	w.str(`,"rule":`, ev.Rule)
	w.str(`,"severity":`, ev.Severity)
	w.str(`,"status":`, ev.Status)
	w.strOmit(`,"allowed_by":`, ev.AllowedBy)
	w.strOmit(`,"reason":`, ev.Reason)
	w.str(`,"trace_id":`, ev.TraceID)
	w.strs(`,"tenants":`, ev.Tenants)
	w.strs(`,"services":`, ev.Services)
	list(&w, `,"crossing_edges":`, ev.CrossingEdges, false, func(e *CrossingEdge) {
		w.b = append(w.b, `{"from":`...)
		w.edgeEnd(&e.From)
		w.b = append(w.b, `,"to":`...)
		w.edgeEnd(&e.To)
		w.b = append(w.b, `,"hops":`...)
		w.b = strconv.AppendInt(w.b, int64(e.Hops), 10)
		w.boolOmit(`,"link":`, e.Link)
		w.strOmit(`,"outcome":`, e.Outcome)
		w.b = append(w.b, '}')
	})
	list(&w, `,"mismatches":`, ev.Mismatches, true, func(m *Mismatch) {
		w.spanRef(m.SpanID, m.Service, m.Span)
		list(&w, `,"values":`, m.Values, false, func(v *TenantSource) {
			w.str(`{"key":`, v.Key)
			w.str(`,"tenant":`, v.Tenant)
			w.boolOmit(`,"resource":`, v.Resource)
			w.b = append(w.b, '}')
		})
		w.b = append(w.b, '}')
	})
	list(&w, `,"keys":`, ev.Keys, true, func(k *KeyUse) {
		w.spanRef(k.SpanID, k.Service, k.Span)
		w.str(`,"attribute":`, k.Attribute)
		w.str(`,"identifier":`, k.Identifier)
		w.strOmit(`,"key_tenant":`, k.KeyTenant)
		w.strOmit(`,"span_tenant":`, k.SpanTenant)
		w.boolOmit(`,"global":`, k.Global)
		w.b = append(w.b, '}')
	})
	list(&w, `,"queries":`, ev.Queries, true, func(q *Query) {
		w.spanRef(q.SpanID, q.Service, q.Span)
		w.strs(`,"tables":`, q.Tables)
		w.b = append(w.b, '}')
	})
	list(&w, `,"spans":`, ev.Spans, false, w.span)
	w.b = append(w.b, `,"span_count":`...)
	w.b = strconv.AppendInt(w.b, int64(ev.SpanCount), 10)
	w.time(`,"first_seen":`, ev.FirstSeen)
	w.time(`,"last_seen":`, ev.LastSeen)
	w.time(`,"detected_at":`, ev.DetectedAt)
	w.strOmit(`,"collector":`, ev.Collector)
	return append(w.b, '}', '\n'), nil
}

// plainTimes reports whether every time in ev is one AppendJSON writes as
// time.Time.MarshalJSON does: UTC, years 0–9999 (MarshalJSON refuses the
// others, and encoding/json must say why).
func plainTimes(ev *Evidence) bool {
	plain := func(t time.Time) bool { return t.Location() == time.UTC && t.Year() >= 0 && t.Year() <= 9999 }
	if !plain(ev.FirstSeen) || !plain(ev.LastSeen) || !plain(ev.DetectedAt) {
		return false
	}
	for i := range ev.Spans {
		if t := ev.Spans[i].StartTime; !t.IsZero() && !plain(t) {
			return false
		}
	}
	return true
}

func appendEncodingJSON(dst []byte, ev *Evidence) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil { // Encode ends the line
		return dst, err
	}
	return buf.Bytes(), nil
}

type jsonWriter struct{ b []byte }

func (w *jsonWriter) comma(i int) {
	if i > 0 {
		w.b = append(w.b, ',')
	}
}

// str appends the key (with its leading punctuation) and s as a string.
func (w *jsonWriter) str(key, s string) {
	w.b = appendJSONString(append(w.b, key...), s)
}

func (w *jsonWriter) strOmit(key, s string) {
	if s != "" {
		w.str(key, s)
	}
}

func (w *jsonWriter) boolOmit(key string, v bool) {
	if v {
		w.b = append(append(w.b, key...), "true"...)
	}
}

func (w *jsonWriter) strs(key string, ss []string) {
	list(w, key, ss, false, func(s *string) { w.b = appendJSONString(w.b, *s) })
}

// list writes key and items as an array, each item by each: null for a nil
// slice, as encoding/json writes it, or nothing for an empty one when the
// field is omitempty.
func list[T any](w *jsonWriter, key string, items []T, omitEmpty bool, each func(*T)) {
	if omitEmpty && len(items) == 0 {
		return
	}
	w.b = append(w.b, key...)
	if items == nil {
		w.b = append(w.b, "null"...)
		return
	}
	w.b = append(w.b, '[')
	for i := range items {
		w.comma(i)
		each(&items[i])
	}
	w.b = append(w.b, ']')
}

func (w *jsonWriter) time(key string, t time.Time) {
	w.b = append(append(w.b, key...), '"')
	w.b = append(t.AppendFormat(w.b, time.RFC3339Nano), '"')
}

// spanRef opens an object naming a span as mismatches, keys and queries do.
func (w *jsonWriter) spanRef(id, service, span string) {
	w.str(`{"span_id":`, id)
	w.str(`,"service":`, service)
	w.str(`,"span":`, span)
}

func (w *jsonWriter) edgeEnd(e *EdgeEnd) {
	w.b = append(w.b, '{')
	if e.TraceID != "" {
		w.str(`"trace_id":`, e.TraceID)
		w.b = append(w.b, ',')
	}
	w.str(`"span_id":`, e.SpanID)
	w.str(`,"service":`, e.Service)
	w.str(`,"span":`, e.Span)
	w.str(`,"tenant":`, e.Tenant)
	w.b = append(w.b, '}')
}

func (w *jsonWriter) span(s *Span) {
	w.str(`{"span_id":`, s.SpanID)
	w.strOmit(`,"parent_span_id":`, s.ParentID)
	w.str(`,"service":`, s.Service)
	w.str(`,"name":`, s.Name)
	w.strOmit(`,"tenant":`, s.Tenant)
	w.strOmit(`,"tenant_key":`, s.TenantKey)
	w.strOmit(`,"outcome":`, s.Outcome)
	w.boolOmit(`,"data":`, s.Data)
	w.strOmit(`,"kind":`, s.Kind)
	if !s.StartTime.IsZero() {
		w.time(`,"start_time":`, s.StartTime)
	}
	if s.DurationNs != 0 {
		w.b = append(w.b, `,"duration_ns":`...)
		w.b = strconv.AppendUint(w.b, s.DurationNs, 10)
	}
	w.strOmit(`,"status":`, s.Status)
	if len(s.Attributes) > 0 {
		w.b = append(w.b, `,"attributes":{`...)
		keys := make([]string, 0, len(s.Attributes))
		for k := range s.Attributes {
			keys = append(keys, k)
		}
		slices.Sort(keys) // encoding/json sorts map keys
		for i, k := range keys {
			w.comma(i)
			w.b = append(appendJSONString(w.b, k), ':')
			w.b = appendJSONString(w.b, s.Attributes[k])
		}
		w.b = append(w.b, '}')
	}
	w.b = append(w.b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes s quoted as encoding/json does with HTML escaping
// off: invalid UTF-8 becomes \ufffd, control characters and U+2028/U+2029
// are escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(append(dst, s[start:i]...), `\ufffd`...)
			i++
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(append(dst, s[start:i]...), '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(append(dst, s[start:]...), '"')
}
