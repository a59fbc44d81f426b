// Package bench measures tenantguard side by side with the collector's own
// trace-grouping processors (groupbytrace, tail_sampling) on the same
// synthetic traffic: CPU and allocations per span, live heap per in-flight
// trace, detection latency, scaling across cores and the memory budget under
// a stream of unique trace ids. It is its own Go module, so the peers' contrib
// dependencies never reach the main module; BENCHMARKS.md at the repository
// root has the method, the commands and the results.
//
// The package itself holds only the traffic generator (shared with the
// whole-collector load test in ./load); the benchmarks are in *_test.go.
package bench
