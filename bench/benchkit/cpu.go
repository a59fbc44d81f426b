package benchkit

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// ProcessCPU is the CPU time this process has used so far, all threads,
// user and system (CLOCK_PROCESS_CPUTIME_ID: exact, not tick-sampled). It
// includes work a processor hands to its own goroutines, and the garbage
// collector's, which a wall clock around ConsumeTraces would miss.
func ProcessCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// pageFaults is how many page faults this process has taken so far. A
// fault on memory fresh from the kernel costs ~1.4 µs of system CPU on the
// development machine, so a processor whose state grows into new pages pays
// for them per span while it grows (the fresh-state load).
func pageFaults() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Minflt + ru.Majflt
}

// Meter accumulates process CPU time, allocations, page faults and wall time
// over the measured stretches of a benchmark. Pause and Resume leave out setup work
// in between (renewing trace ids) from CPU and wall time; they read only
// the clocks. Start and Stop also count allocations, with
// runtime.ReadMemStats, which stops the world: inside a measurement each
// stop woke the idle core's thread, whose spinning afterwards the measured
// code paid for (the prototype at GOMAXPROCS 2: 81 ns of CPU per span,
// 64–66 without). So what runs paused must not allocate (Ring.Renew does
// not): its allocations would count.
type Meter struct {
	cpu, wall    time.Duration
	mallocs      uint64
	bytes        uint64
	faults       int64
	running      bool
	cpu0         time.Duration
	wall0        time.Time
	m0           runtime.MemStats
	faults0      int64
	skipMemStats bool
}

// Start begins (or resumes) measuring.
func (m *Meter) Start() {
	if m.running {
		return
	}
	if !m.skipMemStats {
		runtime.ReadMemStats(&m.m0)
	}
	m.faults0 = pageFaults()
	m.Resume()
}

// Stop pauses measuring.
func (m *Meter) Stop() {
	if !m.running {
		return
	}
	m.Pause()
	m.faults += pageFaults() - m.faults0
	if !m.skipMemStats {
		var m1 runtime.MemStats
		runtime.ReadMemStats(&m1)
		m.mallocs += m1.Mallocs - m.m0.Mallocs
		m.bytes += m1.TotalAlloc - m.m0.TotalAlloc
	}
}

// Pause stops the clocks of a running meter, leaving allocations counting.
func (m *Meter) Pause() {
	if !m.running {
		return
	}
	m.cpu += ProcessCPU() - m.cpu0
	m.wall += time.Since(m.wall0)
	m.running = false
}

// Resume restarts the clocks of a paused meter.
func (m *Meter) Resume() {
	if m.running {
		return
	}
	m.running = true
	m.wall0 = time.Now()
	m.cpu0 = ProcessCPU()
}

// CPU, Wall, Mallocs and Bytes are the totals of the measured stretches.
func (m *Meter) CPU() time.Duration  { return m.cpu }
func (m *Meter) Wall() time.Duration { return m.wall }
func (m *Meter) Mallocs() uint64     { return m.mallocs }
func (m *Meter) Bytes() uint64       { return m.bytes }

// PageFaults is how many page faults the process took between Start and
// Stop, paused stretches included (what runs paused touches no new memory).
func (m *Meter) PageFaults() int64 { return m.faults }

// LiveHeap forces two collections and returns the bytes of live heap objects.
func LiveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
