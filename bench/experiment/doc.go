// Package experiment holds the floor, the read experiment and the
// prototypes: experiments for issue 15 ("show the experiment that proves
// it: a minimal prototype of the same work, with no rules and no
// evidence"), not product code. They stand where tenantguard stands in
// bench's BenchmarkCompare and BenchmarkCompareFresh (proc=floor,
// proc=prototype, ...): same traffic, same counting sink, same meters, so
// their cpu-ns/span is the lowest a processor doing (a part of)
// tenantguard's work can reach on this machine. NewFactory puts one in a
// collector (../load/collector), so the whole-collector load can measure
// the same floor there.
//
//   - floor: walk every span of the pdata request and read one attribute
//     (tenant.id). Any processor that looks at tenants pays at least this.
//   - prototype: the minimum of tenantguard's per-span work. Per
//     ResourceSpans it reads service.name once; per span the trace and span
//     ids, the parent id, the start time, the span name (interned with the
//     service into an endpoint id, looked up once per ResourceSpans and
//     name) and tenant.id (interned; compared with the trace's first
//     tenant before the map is asked). It finds the trace's state in an
//     open-addressing table allocated once for max_traces (100,000),
//     appends a 32-byte span record into that trace's fixed storage, and
//     notes when a second tenant joins the trace. When max_traces are held
//     the oldest trace is evicted (first in, first out). No rules beyond the
//     tenant comparison, no evidence, no journal, no metrics, no idle
//     closing; spans beyond 15 per trace are only counted.
//   - read: the prototype without its trace state, to split its cost: the
//     same reads and interning, each span record written into one scratch
//     record instead of its trace's (no table, no eviction).
//   - durable: the prototype plus the least a durable acknowledgement
//     needs. A request in which traces cross tenants appends one line per
//     crossing (trace id and the two tenants, about 100 bytes) to a file on
//     the disk with one write and one fsync before it returns, as
//     tenantguard's journal does for the findings a request raised. No
//     encoding library, no path checks, no worker goroutine. At 1% of
//     traces crossing, about every request of both loads pays that fsync.
//   - bounded: the durable prototype with its wait bounded, as
//     tenantguard's is (a hung disk may not hold a request longer than 2 s):
//     the request hands its lines to a writer goroutine, which writes and
//     fsyncs them, and waits for it or for a timer. A request cannot give up
//     on a write it makes itself, so this hand-off, and the wake-ups that
//     come with it, are part of the least a bounded durable acknowledgement
//     costs.
//   - bounded-lazy (the fresh-state load only): the bounded prototype
//     with its state allocated at start but not touched, as tenantguard's
//     is, so that each page is faulted in when the first trace reaches it
//     (~18 faults per 1,000 spans on that load, ~1.4 µs each here). The
//     other prototypes touch every page when they are built, which the
//     benchmarks do outside the measurement.
//   - direct: the bounded prototype with the cheapest durable write found
//     on this disk instead of an append and fsync: each request's lines
//     padded to a 4 KiB block and written with O_DIRECT|O_DSYNC into a
//     file zeroed and fsynced beforehand (so the write changes no
//     metadata), wrapping around. Not a journal anyone could read (no
//     recovery, padding, a fixed size): the bound on what a cheaper
//     durable write could save.
package experiment
