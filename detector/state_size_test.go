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
		{"traceState", unsafe.Sizeof(traceState{}), 160},
		{"indexSlot", unsafe.Sizeof(indexSlot{}), 8},
		{"buriedSpan", unsafe.Sizeof(buriedSpan{}), 32},
		{"coverageRow", unsafe.Sizeof(coverageRow{}), 232},
	} {
		if c.got != c.want {
			t.Errorf("%s is %d bytes, its comment says %d", c.name, c.got, c.want)
		}
	}
	// Trace entries, span records and buried spans hold no pointer, so
	// the garbage collector does not read the slab, the arenas of span
	// records or the ring of buried spans (see traceState and endpoint).
	for _, v := range []any{traceState{}, spanRec{}, buriedSpan{}} {
		if typ := reflect.TypeOf(v); hasPointers(typ) {
			t.Errorf("%s holds a pointer", typ.Name())
		}
	}
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
