package bench

import (
	"slices"
	"testing"

	"github.com/tenantguard/tenantguard/bench/benchkit"
	"github.com/tenantguard/tenantguard/bench/experiment"
)

// newExperiment builds one of package experiment's processors (the floor,
// the read experiment, the prototypes; sized for maxTraces) behind a
// counting sink, where tenantguard stands in the benchmarks. The durable
// prototypes' file is in a directory on the disk (benchkit.DiskDir),
// closed and removed with tb.
func newExperiment(tb testing.TB, kind string, maxTraces int) *benchkit.Harness {
	h := &benchkit.Harness{Kind: kind, Sink: &benchkit.CountSink{}}
	dir := ""
	if slices.Contains(experiment.Durables, kind) {
		dir = benchkit.DiskDir(tb)
	}
	p, err := experiment.New(kind, maxTraces, dir, h.Sink)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = p.Shutdown(tb.Context()) })
	h.Proc = p
	return h
}
