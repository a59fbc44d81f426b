package detector

import "testing"

// prefetch is a hint: on an address nothing is mapped at (a bug's, or the
// kernel's) it must do nothing, where a load would crash the collector. A
// prefetch_*.s that loaded instead of prefetching fails here with SIGSEGV.
func TestPrefetchNeverFaults(t *testing.T) {
	for _, addr := range []uintptr{0, 1, 4096, 1 << 46, ^uintptr(0) - 63, ^uintptr(0)} {
		prefetch(addr)
	}
}
