// Package bench measures tenantguard: CPU and allocations per span, live
// heap per in-flight trace, detection latency, the durable acknowledgement
// of requests that raise findings, scaling across cores and the memory
// budget under a stream of unique trace ids, on the reference (steady-state)
// load and on a fresh-state load that starts every processor empty.
//
// The experiments of ./experiment run beside tenantguard (floor_test.go):
// the floor (read one attribute per span) and a minimal prototype of its
// per-span work, with and without the one write and fsync per request that
// durable acknowledgement needs (made by the request itself or, with its
// wait bounded, by a writer goroutine), show how low a processor doing that
// work can go on the machine. durable_test.go takes apart what the disk
// adds to tenantguard (BenchmarkDurabilityCost); scaling_test.go gives each
// core a private processor to show how far the machine scales that work
// with nothing shared.
//
// The collector's own trace-grouping processors (groupbytrace,
// tail_sampling) run through the same benchmarks on the same traffic in
// ./peers, a module of its own; the traffic, meters and harness both use are
// in ./benchkit. ./load drives a whole collector with that traffic, with and
// without tenantguard, and with -experiment an experiment where tenantguard
// stands (./load/collector holds all three). This module keeps the peers'
// contrib dependencies out of the main one. BENCHMARKS.md at the repository
// root has the method, the commands and the results.
//
// The package holds no code: the benchmarks are in *_test.go.
package bench
