package detector_test

import (
	"testing"

	"github.com/tenantguard/tenantguard/detector"
)

// A batch learns from Close whether another batch judged its spans between
// its Add and its Close: that batch's request answers for what they raised,
// and the processor makes the first request wait for it too.
func TestCloseReportsSpansJudgedElsewhere(t *testing.T) {
	// two traces on different shards: a batch adding the second releases
	// the first's shard, as a request with spans of many traces does.
	pair := func(h *harness) (x, other detector.TraceID) {
		b := h.d.NewBatch()
		defer b.Close()
		x = tid(1)
		for n := 2; ; n++ {
			if b.ShardOf(tid(n)) != b.ShardOf(x) {
				return x, tid(n)
			}
		}
	}
	// open adds spans to x and then one to other, and returns the batch
	// still open, as a request still being read.
	open := func(h *harness, x, other detector.TraceID, xs ...detector.Span) *detector.Batch {
		b := h.d.NewBatch()
		for i := range xs {
			b.Add(&xs[i])
		}
		s := span(other, 1, 0, "gateway", "GET /", ten("acme"))
		b.Add(&s)
		return b
	}
	closeWith := func(h *harness, spans ...detector.Span) (answered int, judgedElsewhere bool) {
		b := h.d.NewBatch()
		b.Annotate = func(*detector.Finding) { answered++ }
		for i := range spans {
			b.Add(&spans[i])
		}
		return answered, b.Close()
	}

	t.Run("alone", func(t *testing.T) {
		h := newHarness(t, nil)
		x, other := pair(h)
		b := open(h, x, other, span(x, 1, 0, "gateway", "GET /", ten("acme")), span(x, 2, 1, "orders", "list", ten("globex")))
		if b.Close() {
			t.Error("a batch that judged its own crossing reports its spans judged elsewhere")
		}
	})
	t.Run("a concurrent batch judged the crossing", func(t *testing.T) {
		h := newHarness(t, nil)
		x, other := pair(h)
		b := open(h, x, other, span(x, 1, 0, "gateway", "GET /", ten("acme")))
		answered, elsewhere := closeWith(h, span(x, 2, 1, "orders", "list", ten("globex")))
		if answered != 1 || elsewhere {
			t.Fatalf("the batch completing the crossing answered for %d versions (judged elsewhere: %v), want 1 (false)", answered, elsewhere)
		}
		if !b.Close() {
			t.Error("the batch whose span the crossing holds does not report it judged elsewhere")
		}
	})
	t.Run("a concurrent batch judged a clean trace", func(t *testing.T) {
		h := newHarness(t, nil)
		x, other := pair(h)
		b := open(h, x, other, span(x, 1, 0, "gateway", "GET /", ten("acme")))
		closeWith(h, span(x, 2, 1, "orders", "list", ten("acme")))
		if b.Close() {
			t.Error("a trace judged elsewhere with no finding is reported: nothing was raised to wait for")
		}
	})
	t.Run("a concurrent batch pushed the crossing out of memory", func(t *testing.T) {
		h := newHarness(t, func(c *detector.Config) { c.Shards, c.MaxTraces = 2, 2 })
		x, other := pair(h)
		b := open(h, x, other, span(x, 1, 0, "gateway", "GET /", ten("acme")), span(x, 2, 1, "orders", "list", ten("globex")))
		// New traces on x's shard push x (not judged yet) out.
		var pushers []detector.Span
		for n := 100; len(pushers) < 2; n++ {
			if b.ShardOf(tid(n)) == b.ShardOf(x) {
				pushers = append(pushers, span(tid(n), 1, 0, "gateway", "GET /", ten("acme")))
			}
		}
		answered, _ := closeWith(h, pushers...)
		if answered != 2 { // x's open version, then its closing one
			t.Fatalf("the evicting batch answered for %d versions, want x's 2", answered)
		}
		if !b.Close() {
			t.Error("the batch whose spans the evicted crossing holds does not report them judged elsewhere")
		}
	})
	t.Run("judged by the batch's own link resolution", func(t *testing.T) {
		h := newHarness(t, nil)
		x, other := pair(h)
		producer := tid(900)
		publish := span(producer, 2, 1, "checkout", "publish order", ten("globex"))
		publish.Data = detector.DataMessaging
		h.batch(span(producer, 1, 0, "gateway", "POST /orders", ten("globex")), publish)
		// x's consumer span links to globex's producer: Close resolves the
		// link first and judges x there, before it walks what it touched.
		b := open(h, x, other, consumer(x, "acme", producer, 2))
		if b.Close() {
			t.Error("a batch whose link resolution judged its own trace reports it judged elsewhere")
		}
		if len(h.rec.of(x, cross)) == 0 {
			t.Fatal("the link raised no crossing: the case is not exercised")
		}
	})
	t.Run("judged again by the batch itself", func(t *testing.T) {
		h := newHarness(t, nil)
		x, other := pair(h)
		b := h.d.NewBatch()
		b.Hold(b.ShardOf(x))
		s1, s2 := span(x, 1, 0, "gateway", "GET /", ten("acme")), span(x, 2, 1, "orders", "list", ten("globex"))
		b.Add(&s1)
		b.Add(&s2)
		b.Settle() // the batch judges x itself
		s3 := span(x, 3, 1, "billing", "charge", ten("globex"))
		b.Add(&s3) // x listed again, dirty
		s4 := span(other, 1, 0, "gateway", "GET /", ten("acme"))
		b.Add(&s4)
		if b.Close() {
			t.Error("a batch that judged its own spans (Settle, then Close) reports them judged elsewhere")
		}
	})
}
