package experiment

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"golang.org/x/sys/unix"
)

// The experiments, by their /proc= name.
const (
	Floor     = "floor"
	Read      = "read"
	Prototype = "prototype"
	Durable   = "durable"
	Bounded   = "bounded"
	Direct    = "direct"
	// BoundedLazy is the bounded prototype with its records left
	// untouched at start: BenchmarkCompareFresh runs it (see doc.go).
	BoundedLazy = "bounded-lazy"
)

// Kinds lists the experiments every comparison runs, and FreshKinds those
// the fresh-state load runs: bounded-lazy differs from bounded only while
// state grows from empty.
var (
	Kinds      = []string{Floor, Read, Prototype, Durable, Bounded, Direct}
	FreshKinds = append(Kinds[:len(Kinds):len(Kinds)], BoundedLazy)
)

// Durables are the experiments that keep a journal on the disk.
var Durables = []string{Durable, Bounded, Direct, BoundedLazy}

// Processor runs an experiment's work over each request, then forwards it
// to next as tenantguard does. It is a processor.Traces so that benchkit's
// runners and a collector drive it exactly as they drive the real
// processors. A collector may call it from several goroutines at once; the
// experiments' state is one goroutine's, so a mutex (uncontended when
// requests do not overlap, as on the load's) serialises the work.
type Processor struct {
	mu    sync.Mutex
	work  func(ptrace.Traces)
	next  consumer.Traces
	proto *prototype // the prototype's state, for TestExperiments
	files []*os.File
	unmap func() error // bounded-lazy: gives its state back at Shutdown
}

func (e *Processor) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	e.mu.Lock()
	e.work(td)
	e.mu.Unlock()
	return e.next.ConsumeTraces(ctx, td)
}
func (*Processor) Capabilities() consumer.Capabilities         { return consumer.Capabilities{} }
func (*Processor) Start(context.Context, component.Host) error { return nil }

// Shutdown stops the writer goroutine, closes the experiment's files and
// gives back bounded-lazy's mapped state.
func (e *Processor) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proto != nil && e.proto.toWriter != nil {
		close(e.proto.toWriter)
		e.proto.toWriter = nil
	}
	var errs []error
	for _, f := range e.files {
		errs = append(errs, f.Close())
	}
	e.files = nil
	if e.unmap != nil {
		errs = append(errs, e.unmap())
		e.unmap, e.proto, e.work = nil, nil, nil
	}
	return errors.Join(errs...)
}

// New builds an experiment (the prototypes sized for maxTraces) in front of
// next. Building, including the prototype's tables, is outside every
// measurement. The durable prototypes write their file in dir, which must
// be on a disk (an fsync on tmpfs costs nothing); Shutdown closes it.
func New(kind string, maxTraces int, dir string, next consumer.Traces) (*Processor, error) {
	e := &Processor{next: next}
	switch kind {
	case Floor:
		e.work = (&floor{}).consume
	case Prototype:
		e.work = newPrototype(maxTraces).consume
	case Durable, Bounded, Direct, BoundedLazy:
		var p *prototype
		if kind == BoundedLazy {
			var err error
			if p, e.unmap, err = newPrototypeLazy(maxTraces); err != nil {
				return nil, err
			}
		} else {
			p = newPrototype(maxTraces)
		}
		f, err := os.OpenFile(filepath.Join(dir, "evidence.jsonl"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			_ = e.Shutdown(context.Background())
			return nil, err
		}
		e.files = append(e.files, f)
		p.journal = f
		if kind == Direct {
			if p.direct, err = openDirect(f); err != nil {
				_ = e.Shutdown(context.Background())
				return nil, err
			}
			e.files = append(e.files, p.direct)
		}
		if kind != Durable {
			p.startWriter()
		}
		e.work, e.proto = p.consume, p
	case Read:
		p := newPrototype(1)
		p.stateless = true
		e.work = p.consume
	default:
		return nil, fmt.Errorf("unknown experiment %q (want one of %s)", kind, strings.Join(FreshKinds, ", "))
	}
	return e, nil
}

// floor reads tenant.id from every span; tenants counts the spans that
// carry one (so that the reads cannot be optimised away, and a test can
// check them).
type floor struct{ tenants int }

func (f *floor) consume(td ptrace.Traces) {
	rss := td.ResourceSpans()
	for i := range rss.Len() {
		sss := rss.At(i).ScopeSpans()
		for j := range sss.Len() {
			spans := sss.At(j).Spans()
			for k := range spans.Len() {
				if _, ok := spans.At(k).Attributes().Get("tenant.id"); ok {
					f.tenants++
				}
			}
		}
	}
}

// protoSpans is the fixed span storage of one trace in the prototype.
const protoSpans = 15

// spanRec is what the prototype keeps of a span: 32 bytes.
type spanRec struct {
	spanID, parentID uint64
	start            uint64 // unix nanoseconds
	endpoint         uint32 // (service, span name), interned
	tenant           uint32 // interned tenant.id + 1; 0: none
}

// traceRec is one trace's state: a 32-byte header and fixed span storage,
// 512 bytes in all.
type traceRec struct {
	hi, lo  uint64 // trace id
	n       uint16 // span records held
	dropped uint16 // spans beyond protoSpans
	tenant  uint32 // the first tenant seen + 1
	crossed uint32 // 1 once a second tenant was seen
	spans   [protoSpans]spanRec
}

// prototype is the minimal tenantguard (see the file comment).
type prototype struct {
	// table: open addressing, linear probing, a power of two at least 2.5x
	// max_traces. A slot is the high 32 bits of the trace id's hash and the
	// index+1 of its traceRec (0: empty), so probing past other traces
	// rarely touches their records.
	table []uint64
	mask  uint64
	// traces is allocated once; records are taken in order and, once all
	// are held, the oldest is evicted to make room (first in, first out).
	traces []traceRec
	next   int
	held   int

	services  map[string]uint32
	endpoints map[endpointKey]uint32
	tenants   map[string]uint32
	tenantOf  []string // interned tenant id -> tenant.id
	lastTen   string
	lastTenID uint32

	// stateless: the read experiment; every span goes to scratch.
	stateless bool
	scratch   traceRec
	records   int // span records written

	// What it found, for the test: evictions, traces that crossed tenants,
	// spans beyond the fixed storage.
	evicted, crossed, dropped int

	// journal (durable only): a request's crossings, one line each, are
	// written and fsynced before consume returns; written is its size.
	journal *os.File
	idBuf   [16]byte
	lines   []byte
	written int64
	syncs   int

	// bounded only: the writer goroutine takes a request's lines on
	// toWriter and answers on written once they are fsynced; waited bounds
	// the request's wait.
	toWriter chan []byte
	synced   chan error
	waited   *time.Timer

	// direct only: the O_DIRECT|O_DSYNC file, an aligned block buffer, and
	// the next block to write (wrapping at directBlocks).
	direct    *os.File
	block     []byte
	nextBlock int64
}

const (
	directBlock  = 4096
	directBlocks = 1024 // 4 MiB, zeroed and fsynced before use
)

// openDirect zeroes plain (4 MiB) and fsyncs it, then opens it again with
// O_DIRECT|O_DSYNC, for writeDirect.
func openDirect(plain *os.File) (*os.File, error) {
	if _, err := plain.WriteAt(make([]byte, directBlock*directBlocks), 0); err != nil {
		return nil, err
	}
	if err := plain.Sync(); err != nil {
		return nil, err
	}
	return os.OpenFile(plain.Name(), os.O_WRONLY|unix.O_DIRECT|unix.O_DSYNC, 0)
}

// writeDirect writes lines into the next blocks, zero-padded, with one
// O_DIRECT|O_DSYNC write.
func (p *prototype) writeDirect(lines []byte) error {
	n := (len(lines) + directBlock - 1) / directBlock * directBlock
	if cap(p.block) < n {
		// O_DIRECT wants a block-aligned buffer.
		raw := make([]byte, n+directBlock)
		off := directBlock - int(uintptr(unsafe.Pointer(&raw[0]))%directBlock)
		p.block = raw[off : off+n]
	}
	b := p.block[:n]
	copy(b, lines)
	clear(b[len(lines):])
	if p.nextBlock+int64(n/directBlock) > directBlocks {
		p.nextBlock = 0
	}
	_, err := p.direct.WriteAt(b, p.nextBlock*directBlock)
	p.nextBlock += int64(n / directBlock)
	return err
}

type endpointKey struct {
	service uint32
	name    string
}

func newPrototype(maxTraces int) *prototype {
	p := &prototype{
		table:  make([]uint64, tableSize(maxTraces)),
		traces: make([]traceRec, maxTraces),
	}
	p.init()
	// Touch every page now, as a collector would at Start, so that the
	// first traces do not pay the page faults of memory allocated once.
	for i := 0; i < len(p.traces); i += 4096 / int(unsafe.Sizeof(traceRec{})) {
		p.traces[i].n = 0
	}
	for i := 0; i < len(p.table); i += 4096 / 8 {
		p.table[i] = 0
	}
	return p
}

// newPrototypeLazy is newPrototype with its table and records mapped fresh
// from the kernel and left untouched, as tenantguard's state is: each page
// is faulted in when the first trace reaches it (~1.4 µs a fault on the
// development machine). Mapped rather than allocated, because the Go heap
// zeroes memory it reuses when it hands it out, and which it reuses depends
// on what ran before. unmap gives the memory back; nothing may read the
// prototype afterwards.
func newPrototypeLazy(maxTraces int) (p *prototype, unmap func() error, err error) {
	size := tableSize(maxTraces)
	tableBytes := size * 8
	recBytes := maxTraces * int(unsafe.Sizeof(traceRec{}))
	mem, err := unix.Mmap(-1, 0, tableBytes+recBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil, fmt.Errorf("mapping the lazy prototype's state: %w", err)
	}
	// Both hold no pointer, so the garbage collector need not see them.
	p = &prototype{
		table:  unsafe.Slice((*uint64)(unsafe.Pointer(&mem[0])), size),
		traces: unsafe.Slice((*traceRec)(unsafe.Pointer(&mem[tableBytes])), maxTraces),
	}
	p.init()
	return p, func() error { return unix.Munmap(mem) }, nil
}

// tableSize is the index's slots for maxTraces: a power of two, at least
// 2.5 times as many.
func tableSize(maxTraces int) int {
	size := 1
	for size < maxTraces*5/2 {
		size <<= 1
	}
	return size
}

func (p *prototype) init() {
	p.mask = uint64(len(p.table) - 1)
	p.services = map[string]uint32{}
	p.endpoints = map[endpointKey]uint32{}
	p.tenants = map[string]uint32{}
}

func hashTrace(hi, lo uint64) uint64 { return (hi ^ lo*0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9 }

// find returns the record of trace (hi, lo), creating it (and evicting the
// oldest trace when all records are held) if it is new.
func (p *prototype) find(hi, lo uint64) *traceRec {
	h := hashTrace(hi, lo)
	tag := h >> 32
	for i := tag & p.mask; ; i = (i + 1) & p.mask {
		s := p.table[i]
		if s == 0 {
			return p.insert(hi, lo, tag)
		}
		if s>>32 == tag {
			if t := &p.traces[uint32(s)-1]; t.hi == hi && t.lo == lo {
				return t
			}
		}
	}
}

func (p *prototype) insert(hi, lo, tag uint64) *traceRec {
	idx := p.next
	p.next++
	if p.next == len(p.traces) {
		p.next = 0
	}
	t := &p.traces[idx]
	if p.held == len(p.traces) {
		p.evict(t, idx)
	} else {
		p.held++
	}
	// Probe again: evicting may have shifted the slot found before.
	i := tag & p.mask
	for p.table[i] != 0 {
		i = (i + 1) & p.mask
	}
	p.table[i] = tag<<32 | uint64(idx+1)
	t.hi, t.lo, t.n, t.dropped, t.tenant, t.crossed = hi, lo, 0, 0, 0, 0
	return t
}

// evict empties the slot of t (record idx) with backward-shift deletion (no
// tombstones): the slots after it that would be found from its position
// move back. Only the table is touched, never another trace's record.
func (p *prototype) evict(t *traceRec, idx int) {
	p.evicted++
	i := (hashTrace(t.hi, t.lo) >> 32) & p.mask
	for uint32(p.table[i]) != uint32(idx+1) {
		i = (i + 1) & p.mask
	}
	for j := (i + 1) & p.mask; p.table[j] != 0; j = (j + 1) & p.mask {
		home := (p.table[j] >> 32) & p.mask
		// Move j back to i when i lies cyclically in [home, j).
		if (j-home)&p.mask >= (j-i)&p.mask {
			p.table[i] = p.table[j]
			i = j
		}
	}
	p.table[i] = 0
}

func (p *prototype) intern(m map[string]uint32, s string) uint32 {
	id, ok := m[s]
	if !ok {
		id = uint32(len(m))
		m[strings.Clone(s)] = id
	}
	return id
}

// tenant interns a span's tenant.id (+1). Most spans carry their trace's
// tenant: comparing with it (or with the previous span's) spares the map.
func (p *prototype) tenant(t *traceRec, s string) uint32 {
	if t.tenant != 0 && p.tenantOf[t.tenant-1] == s {
		return t.tenant
	}
	if s != p.lastTen {
		id, ok := p.tenants[s]
		if !ok {
			id = uint32(len(p.tenantOf))
			s = strings.Clone(s)
			p.tenants[s] = id
			p.tenantOf = append(p.tenantOf, s)
		}
		p.lastTen, p.lastTenID = s, id+1
	}
	return p.lastTenID
}

func (p *prototype) consume(td ptrace.Traces) {
	// Endpoints of the current ResourceSpans: span names repeat within
	// one, so each distinct name is looked up in the shared map once.
	type cached struct {
		name string
		id   uint32
	}
	var names [8]cached
	rss := td.ResourceSpans()
	for i := range rss.Len() {
		rs := rss.At(i)
		var svc uint32
		if v, ok := rs.Resource().Attributes().Get("service.name"); ok {
			svc = p.intern(p.services, v.Str())
		}
		nnames := 0
		var last *traceRec
		var lastHi, lastLo uint64
		sss := rs.ScopeSpans()
		for j := range sss.Len() {
			spans := sss.At(j).Spans()
			for k := range spans.Len() {
				sp := spans.At(k)
				tid := sp.TraceID()
				hi, lo := binary.BigEndian.Uint64(tid[:8]), binary.BigEndian.Uint64(tid[8:])
				switch {
				case p.stateless:
					last = &p.scratch
					if last.n == protoSpans {
						last.n = 0
					}
				case last == nil || hi != lastHi || lo != lastLo:
					last, lastHi, lastLo = p.find(hi, lo), hi, lo
				}
				name := sp.Name()
				ep := ^uint32(0)
				for c := range nnames {
					if names[c].name == name {
						ep = names[c].id
						break
					}
				}
				if ep == ^uint32(0) {
					key := endpointKey{svc, name}
					id, ok := p.endpoints[key]
					if !ok {
						id = uint32(len(p.endpoints))
						p.endpoints[endpointKey{svc, strings.Clone(name)}] = id
					}
					ep = id
					if nnames < len(names) {
						names[nnames] = cached{name, id}
						nnames++
					}
				}
				var ten uint32
				if v, ok := sp.Attributes().Get("tenant.id"); ok {
					ten = p.tenant(last, v.Str())
					switch {
					case last.tenant == 0:
						last.tenant = ten
					case last.tenant != ten && last.crossed == 0:
						last.crossed = 1
						p.crossed++
						if p.journal != nil {
							p.lines = p.appendCrossing(p.lines, last, ten)
						}
					}
				}
				if last.n == protoSpans {
					last.dropped++
					p.dropped++
					continue
				}
				sid, pid := sp.SpanID(), sp.ParentSpanID()
				last.spans[last.n] = spanRec{
					spanID:   binary.BigEndian.Uint64(sid[:]),
					parentID: binary.BigEndian.Uint64(pid[:]),
					start:    uint64(sp.StartTimestamp()),
					endpoint: ep,
					tenant:   ten,
				}
				last.n++
				p.records++
			}
		}
	}
	if len(p.lines) > 0 {
		p.sync()
	}
}

// appendCrossing appends the durable prototype's evidence line: the trace
// id and the two tenants (tenant.id values come from the generator and are
// plain ASCII).
func (p *prototype) appendCrossing(dst []byte, t *traceRec, second uint32) []byte {
	dst = append(dst, `{"trace_id":"`...)
	dst = hex.AppendEncode(dst, binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(p.idBuf[:0], t.hi), t.lo))
	dst = append(dst, `","tenants":["`...)
	dst = append(dst, p.tenantOf[t.tenant-1]...)
	dst = append(dst, `","`...)
	dst = append(dst, p.tenantOf[second-1]...)
	return append(dst, "\"]}\n"...)
}

// sync writes the request's lines at the end of the file and fsyncs them:
// itself (durable), or through the writer goroutine, waiting at most
// boundedWait (bounded).
func (p *prototype) sync() {
	if p.toWriter == nil {
		p.write(p.lines)
	} else {
		p.waited.Reset(boundedWait)
		p.toWriter <- p.lines
		select {
		case err := <-p.synced:
			p.waited.Stop()
			if err != nil {
				panic("bounded prototype: " + err.Error())
			}
		case <-p.waited.C:
			// tenantguard would acknowledge the request and keep its
			// evidence queued; a benchmark's disk does not hang.
			panic("bounded prototype: the disk did not answer within " + boundedWait.String())
		}
	}
	p.syncs++
	p.lines = p.lines[:0]
}

// boundedWait is tenantguard's bound on a request's wait for its evidence.
const boundedWait = 2 * time.Second

func (p *prototype) write(lines []byte) error {
	if p.direct != nil {
		return p.writeDirect(lines)
	}
	n, err := p.journal.WriteAt(lines, p.written)
	if err == nil {
		err = p.journal.Sync()
	}
	if err != nil && p.toWriter == nil {
		panic("durable prototype: " + err.Error())
	}
	p.written += int64(n)
	return err
}

// startWriter starts the bounded prototype's writer goroutine. The request
// waits until its lines are written, so the writer may use them in place.
func (p *prototype) startWriter() {
	p.toWriter, p.synced = make(chan []byte), make(chan error, 1)
	p.waited = time.NewTimer(boundedWait)
	p.waited.Stop()
	go func() {
		for lines := range p.toWriter {
			p.synced <- p.write(lines)
		}
	}()
}
