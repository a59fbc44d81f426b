//go:build !amd64 && !arm64

package detector

// prefetch is a hint the other architectures go without.
func prefetch(addr uintptr) {}
