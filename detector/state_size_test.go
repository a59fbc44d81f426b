package detector

import (
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
		{"spanRec", unsafe.Sizeof(spanRec{}), 32},
		{"traceState", unsafe.Sizeof(traceState{}), 320},
		{"indexSlot", unsafe.Sizeof(indexSlot{}), 8},
		{"buriedSpan", unsafe.Sizeof(buriedSpan{}), 32},
		{"coverageRow", unsafe.Sizeof(coverageRow{}), 240},
	} {
		if c.got != c.want {
			t.Errorf("%s is %d bytes, its comment says %d", c.name, c.got, c.want)
		}
	}
}
