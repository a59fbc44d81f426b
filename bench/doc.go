// Package bench measures tenantguard: CPU and allocations per span, live
// heap per in-flight trace, detection latency, the durable acknowledgement
// of requests that raise findings, scaling across cores and the memory
// budget under a stream of unique trace ids, on the reference (steady-state)
// load and on a fresh-state load that starts every processor empty. An
// experiment, floor_test.go, runs the floor (read one attribute per span) and
// a minimal prototype of tenantguard's per-span work beside them, to show how
// low a processor doing that work can go on the machine, with and without the
// one write and fsync per request that durable acknowledgement needs, made by
// the request itself or, with its wait bounded, by a writer goroutine;
// durable_test.go also takes apart what the disk adds to tenantguard
// (BenchmarkDurabilityCost); another,
// scaling_test.go, gives each core a private processor to show how far the
// machine scales that work with nothing shared. The collector's own
// trace-grouping processors (groupbytrace, tail_sampling) run through the
// same benchmarks on the same traffic in ./peers, a module of its own; the
// traffic, meters and harness both use are in ./benchkit, and ./load drives
// a whole collector with that traffic. This module keeps the peers' contrib
// dependencies out of the main one. BENCHMARKS.md at the repository root has
// the method, the commands and the results.
//
// The package holds no code: the benchmarks are in *_test.go.
package bench
