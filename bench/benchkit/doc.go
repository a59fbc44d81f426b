// Package benchkit is what the tenantguard benchmarks and the peers'
// benchmarks share: the synthetic traffic, the CPU and heap meters, and a
// harness that builds a processor from its factory and a config map and
// measures it. It is its own module, depending on collector core only, so
// that the tenantguard module (bench/) and the peers module (bench/peers/)
// can each pin the contrib versions they need: tail_sampling is only served
// at v0.161.0, whose OTTL filter needs pkg/ottl v0.161.0, while tenantguard
// needs pkg/ottl v1.4.1; one build cannot hold both.
package benchkit
