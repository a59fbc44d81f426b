package tenantguardprocessor

import (
	"testing"

	"github.com/tenantguard/tenantguard/detector"
)

// A sender alone has its requests read in order; once requests overlap,
// the next groupingMemory requests are grouped by shard, overlapping or not
// (a sender waiting for its fsync leaves the other alone for a moment), and
// then reading goes back to order.
func TestExtractorGroupsOnlyWhileRequestsOverlap(t *testing.T) {
	det, err := detector.New(detector.DefaultConfig(), func(detector.Finding) {})
	if err != nil {
		t.Fatal(err)
	}
	e := NewExtractor(det)
	alone := func() bool { // one request, started and done
		g := e.concurrent()
		e.feeding.Add(-1)
		return g
	}
	for i := range 3 * groupingMemory {
		if alone() {
			t.Fatalf("request %d of a single sender grouped", i+1)
		}
	}
	e.concurrent() // in flight...
	if !e.concurrent() {
		t.Fatal("a request overlapping another was read in order")
	}
	e.feeding.Add(-2)
	for i := range groupingMemory - 1 {
		if !alone() {
			t.Fatalf("request %d after an overlap read in order", i+1)
		}
	}
	if alone() {
		t.Fatalf("still grouping %d requests after the last overlap", groupingMemory)
	}
}
