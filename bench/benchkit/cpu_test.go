package benchkit

import (
	"runtime"
	"runtime/metrics"
	"testing"

	"golang.org/x/sys/unix"
)

var sink []any

// The meter counts what runtime.MemStats counts: every heap object, the
// tiny ones included, and their bytes.
func TestMeterCountsAllocations(t *testing.T) {
	var m Meter
	m.Start()
	for i := range 1000 {
		sink = append(sink, new([8]uint64)) // 64 bytes
		b := new(uint32)                    // tiny: no pointers, under 16 bytes
		*b = uint32(i)
		sink = append(sink, b)
	}
	m.Stop()
	sink = nil
	if got := m.Mallocs(); got < 2000 {
		t.Errorf("meter counted %d allocations, want at least 2000 (1000 of 64 bytes, 1000 tiny)", got)
	}
	if got := m.Bytes(); got < 64_000 {
		t.Errorf("meter counted %d bytes, want at least 64000", got)
	}
}

// The meter counts the page faults of memory fresh from the kernel, touched
// while it runs: one per 4 KiB page.
func TestMeterCountsPageFaults(t *testing.T) {
	const pages = 1024
	mem, err := unix.Mmap(-1, 0, pages*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	// Huge pages would take one fault for 512 pages.
	if err := unix.Madvise(mem, unix.MADV_NOHUGEPAGE); err != nil {
		t.Fatal(err)
	}
	var m Meter
	m.Start()
	for i := 0; i < len(mem); i += 4096 {
		mem[i] = 1
	}
	m.Stop()
	if got := m.PageFaults(); got < pages {
		t.Errorf("meter counted %d page faults touching %d fresh pages", got, pages)
	}
}

// Pausing and resuming the meter stops no goroutine: runtime.ReadMemStats
// stops the world, and on two cores the measured code paid for it.
func TestMeterPauseDoesNotStopTheWorld(t *testing.T) {
	pauses := func() uint64 {
		s := []metrics.Sample{{Name: "/sched/pauses/total/other:seconds"}}
		metrics.Read(s)
		var n uint64
		for _, c := range s[0].Value.Float64Histogram().Counts {
			n += c
		}
		return n
	}
	pauses() // the first read sets up runtime/metrics
	before := pauses()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if pauses() == before {
		t.Fatal("runtime.ReadMemStats left no pause in /sched/pauses/total/other:seconds: the check below would prove nothing")
	}
	var m Meter
	m.Start()
	before = pauses()
	for range 100 {
		m.Pause()
		m.Resume()
	}
	after := pauses()
	m.Stop()
	if after != before {
		t.Errorf("100 pauses and resumes of the meter stopped the world %d times, want 0", after-before)
	}
}
