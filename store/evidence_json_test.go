package store

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// encodingJSON is the journal's former encoder: AppendJSON must write what
// it writes, byte for byte.
func encodingJSON(t *testing.T, ev *Evidence) ([]byte, error) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(ev)
	return buf.Bytes(), err
}

// hostile strings: quotes, backslashes, every kind of escape, HTML, invalid
// UTF-8, the separators JSON leaves alone but JavaScript does not.
var hostile = []string{"", "acme", `a"b\c`, "<script>&amp;", "\x00\x01\x1f\x7f", "\b\f\n\r\t", "\u2028\u2029",
	"\xff\xfe", "caf\xc3", "é漢字🙂", "\xed\xa0\x80", "x\\u0026y", "\\"}

// fill sets every field reachable from v at random: strings from hostile,
// slices nil, empty or up to three long, times in and out of UTC.
func fill(r *rand.Rand, v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		s := hostile[r.IntN(len(hostile))]
		if r.IntN(3) == 0 {
			s += hostile[r.IntN(len(hostile))]
		}
		v.SetString(s)
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Int:
		v.SetInt(int64(r.IntN(5)) - 1)
	case reflect.Uint64:
		v.SetUint([]uint64{0, 1, 1 << 63, r.Uint64()}[r.IntN(4)])
	case reflect.Slice:
		switch n := r.IntN(5); n {
		case 0: // nil
		default:
			s := reflect.MakeSlice(v.Type(), n-1, n-1)
			for i := range n - 1 {
				fill(r, s.Index(i))
			}
			v.Set(s)
		}
	case reflect.Map:
		if n := r.IntN(4); n > 0 {
			m := reflect.MakeMap(v.Type())
			for range n {
				k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
				fill(r, k)
				fill(r, e)
				m.SetMapIndex(k, e)
			}
			v.Set(m)
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			times := []time.Time{{}, time.Unix(1_780_000_000, 123_456_789).UTC(), time.Unix(1_780_000_000, 0).UTC(),
				time.Unix(1_780_000_000, 500).In(time.FixedZone("x", 3600)), time.Date(10_000, 1, 1, 0, 0, 0, 0, time.UTC)}
			v.Set(reflect.ValueOf(times[r.IntN(len(times))]))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(r, v.Field(i))
			}
		}
	default:
		panic("fill: unhandled kind " + v.Kind().String() + " in " + v.Type().String())
	}
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	fast, fallback, refused := 0, 0, 0
	for i := range 20_000 {
		var ev Evidence
		fill(r, reflect.ValueOf(&ev).Elem())
		if i%2 == 0 { // times as NewEvidence writes them: the fast path
			ev.FirstSeen, ev.LastSeen, ev.DetectedAt = time.Unix(1_780_000_000, int64(i)).UTC(), time.Unix(1_780_000_001, 0).UTC(), time.Unix(1_780_000_002, 10).UTC()
			for j := range ev.Spans {
				if !ev.Spans[j].StartTime.IsZero() {
					ev.Spans[j].StartTime = time.Unix(1_780_000_000, int64(j)).UTC()
				}
			}
		}
		want, werr := encodingJSON(t, &ev)
		got, gerr := ev.AppendJSON([]byte("prefix"))
		switch {
		case werr != nil:
			refused++
			if gerr == nil {
				t.Fatalf("encoding/json refused (%v) what AppendJSON wrote: %s", werr, got)
			}
			continue
		case gerr != nil:
			t.Fatalf("AppendJSON: %v, encoding/json wrote %s", gerr, want)
		}
		if plainTimes(&ev) {
			fast++
		} else {
			fallback++
		}
		if !bytes.HasPrefix(got, []byte("prefix")) || !bytes.Equal(got[len("prefix"):], want) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, got[len("prefix"):], want)
		}
	}
	if fast < 5_000 || fallback < 1_000 || refused < 100 {
		t.Errorf("too few of a kind: %d written by AppendJSON, %d through encoding/json, %d refused", fast, fallback, refused)
	}
}

// Every field of every type in a record is written: one record with all of
// them set (and so none omitted) matches encoding/json.
func TestAppendJSONWritesEveryField(t *testing.T) {
	var setAll func(v reflect.Value)
	setAll = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.String:
			v.SetString("v<&>\"\\")
		case reflect.Bool:
			v.SetBool(true)
		case reflect.Int, reflect.Uint64:
			if v.CanInt() {
				v.SetInt(7)
			} else {
				v.SetUint(7)
			}
		case reflect.Slice:
			s := reflect.MakeSlice(v.Type(), 1, 1)
			setAll(s.Index(0))
			v.Set(s)
		case reflect.Map:
			m := reflect.MakeMap(v.Type())
			m.SetMapIndex(reflect.ValueOf("k"), reflect.ValueOf("v"))
			v.Set(m)
		case reflect.Struct:
			if v.Type() == reflect.TypeFor[time.Time]() {
				v.Set(reflect.ValueOf(time.Unix(1_780_000_000, 1).UTC()))
				return
			}
			for i := range v.NumField() {
				setAll(v.Field(i))
			}
		}
	}
	var ev Evidence
	setAll(reflect.ValueOf(&ev).Elem())
	want, err := encodingJSON(t, &ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ev.AppendJSON(nil)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("err %v\n got %s\nwant %s", err, got, want)
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	var ev Evidence
	fill(r, reflect.ValueOf(&ev).Elem())
	ev.FirstSeen, ev.LastSeen, ev.DetectedAt = time.Unix(1, 0).UTC(), time.Unix(2, 0).UTC(), time.Unix(3, 0).UTC()
	for i := range ev.Spans {
		ev.Spans[i].StartTime = time.Time{}
	}
	var buf []byte
	b.Run("AppendJSON", func(b *testing.B) {
		for b.Loop() {
			buf, _ = ev.AppendJSON(buf[:0])
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		var out bytes.Buffer
		enc := json.NewEncoder(&out)
		enc.SetEscapeHTML(false)
		for b.Loop() {
			out.Reset()
			_ = enc.Encode(&ev)
		}
	})
}
