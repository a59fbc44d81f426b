package detector

import (
	"reflect"
	"testing"
	"unsafe"
)

// The state's records are the sizes their comments state: memory is
// budgeted per span kept, per closed trace and per span a tomb keeps.
func TestStateRecordSizes(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the sizes are stated for 64-bit platforms")
	}
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"spanRec", unsafe.Sizeof(spanRec{}), 24},
		{"traceState", unsafe.Sizeof(traceState{}), 192},
		{"indexSlot", unsafe.Sizeof(indexSlot{}), 8},
		{"buriedSpan", unsafe.Sizeof(buriedSpan{}), 32},
		{"coverageRow", unsafe.Sizeof(coverageRow{}), 240},
	} {
		if c.got != c.want {
			t.Errorf("%s is %d bytes, its comment says %d", c.name, c.got, c.want)
		}
	}
	// Span records and buried spans hold no pointer, so the garbage
	// collector does not scan the buffers that hold them (see endpoint).
	for _, v := range []any{spanRec{}, buriedSpan{}} {
		if typ := reflect.TypeOf(v); hasPointers(typ) {
			t.Errorf("%s holds a pointer", typ.Name())
		}
	}
}

// The garbage collector reads every pointer word of every trace entry on
// each cycle, and marks what they point to (traceNotes says what that cost).
// So an entry keeps its pointer words few and in its first two cache lines.
func TestTraceEntryPointerWords(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the sizes are stated for 64-bit platforms")
	}
	words := pointerWords(reflect.TypeOf(traceState{}), 0)
	if len(words) > 5 {
		t.Errorf("traceState holds %d pointer words (at %v), want at most 5", len(words), words)
	}
	for _, off := range words {
		if off >= 128 {
			t.Errorf("traceState has a pointer word at byte %d, past its first two cache lines (all: %v)", off, words)
		}
	}
}

// pointerWords are the offsets of the words of t (at base) that hold a
// pointer.
func pointerWords(t reflect.Type, base uintptr) []uintptr {
	switch t.Kind() {
	case reflect.Pointer, reflect.String, reflect.Slice, reflect.Map, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return []uintptr{base}
	case reflect.Interface:
		return []uintptr{base, base + 8}
	case reflect.Array:
		var out []uintptr
		for i := range t.Len() {
			out = append(out, pointerWords(t.Elem(), base+uintptr(i)*t.Elem().Size())...)
		}
		return out
	case reflect.Struct:
		var out []uintptr
		for i := range t.NumField() {
			f := t.Field(i)
			out = append(out, pointerWords(f.Type, base+f.Offset)...)
		}
		return out
	}
	return nil
}

func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.String, reflect.Slice, reflect.Map, reflect.Chan, reflect.Func, reflect.Interface, reflect.UnsafePointer:
		return true
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
	}
	return false
}
