// Package peers runs the collector's own trace-grouping processors,
// groupbytrace and tail_sampling, through the same benchmarks and on the
// same traffic as tenantguard (../): same benchmark names with /proc=...,
// so benchstat puts them side by side. It is its own module because
// tail_sampling (served only at v0.161.0) needs pkg/ottl v0.161.0, which
// cannot share a build with tenantguard's pkg/ottl v1.4.1.
package peers
