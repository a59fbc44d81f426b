//go:build amd64 || arm64

package detector

// prefetch asks the CPU to start loading the cache line at addr, without
// waiting for it (prefetch_*.s). A hint: it never faults, so any address
// will do.
func prefetch(addr uintptr)
