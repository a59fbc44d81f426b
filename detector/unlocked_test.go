package detector_test

import (
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

// Nothing leaves a locked shard: every way a finding version is raised (an
// eviction in Add, a span link resolved in Close, the rules in Close, the
// close at the idle window in Sweep, Flush) reaches Annotate and the sink
// only once every shard is unlocked, so they may take their time and call
// back into the detector.
func TestFindingsLeaveOnlyUnlockedShards(t *testing.T) {
	h := newHarness(t, func(c *detector.Config) { c.MaxTraces = 4; c.Shards = 1 })
	var d *detector.Detector
	calls := map[string]int{}
	var phase string
	check := func(who string) {
		calls[phase+" "+who]++
		if d.ShardLockedForTest() {
			t.Errorf("%s: %s called with a shard locked", phase, who)
		}
	}
	var err error
	d, err = detector.New(h.cfg, func(f detector.Finding) {
		check("sink")
		d.Coverage() // locks every shard: would deadlock under a lock
	})
	if err != nil {
		t.Fatal(err)
	}
	batch := func(name string, spans ...detector.Span) {
		phase = name
		b := d.NewBatch()
		b.Annotate = func(*detector.Finding) { check("annotate") }
		for i := range spans {
			b.Add(&spans[i])
		}
		b.Close()
	}
	crossing := func(tr detector.TraceID) []detector.Span {
		return []detector.Span{span(tr, 1, 0, "gateway", "GET /", ten("acme")), span(tr, 2, 1, "inventory", "SELECT", ten("globex"))}
	}
	batch("rules", crossing(tid(1))...)
	producer, consumer := tid(2), tid(3)
	batch("producer", span(producer, 1, 0, "checkout", "publish order", ten("acme")))
	c := span(consumer, 1, 0, "fulfilment", "process order", ten("globex"))
	c.Links = []detector.Link{{TraceID: producer, SpanID: sid(1)}}
	batch("link", c)
	// Four more traces push the open crossing of trace 1 out (MaxTraces 4).
	batch("eviction", append(crossing(tid(4)), append(crossing(tid(5)), append(crossing(tid(6)), crossing(tid(7))...)...)...)...)
	phase = "sweep"
	h.clock.Advance(h.cfg.IdleWindow + time.Second)
	d.Sweep()
	batch("reopen", crossing(tid(8))...)
	phase = "flush"
	d.Flush()
	for _, want := range []string{"rules sink", "rules annotate", "link sink", "link annotate", "eviction sink", "sweep sink", "flush sink"} {
		if calls[want] == 0 {
			t.Errorf("no %s call: the test did not raise what it means to (calls %v)", want, calls)
		}
	}
}
