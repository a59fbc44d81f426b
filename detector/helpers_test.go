package detector_test

import (
	"encoding/binary"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/detector"
)

// epoch is where every fake clock starts. Any fixed instant works; a round
// one makes failing versions easy to read.
var epoch = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeClock is a goroutine-safe clock that only moves when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: epoch} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// recorder is a Sink that keeps every finding version it is given.
type recorder struct {
	mu       sync.Mutex
	findings []detector.Finding
}

func (r *recorder) sink(f detector.Finding) {
	r.mu.Lock()
	r.findings = append(r.findings, f)
	r.mu.Unlock()
}

func (r *recorder) all() []detector.Finding {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.findings)
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.findings)
}

// since returns the findings recorded after the first n.
func (r *recorder) since(n int) []detector.Finding {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.findings[n:])
}

// of returns the versions emitted for one trace and rule, in emission order.
func (r *recorder) of(trace detector.TraceID, rule detector.Rule) []detector.Finding {
	var out []detector.Finding
	for _, f := range r.all() {
		if f.TraceID == trace && f.Rule == rule {
			out = append(out, f)
		}
	}
	return out
}

// last returns the latest version for trace and rule, failing the test if
// there is none.
func (r *recorder) last(t *testing.T, trace detector.TraceID, rule detector.Rule) detector.Finding {
	t.Helper()
	fs := r.of(trace, rule)
	if len(fs) == 0 {
		t.Fatalf("no %s finding for trace %s; got %s", rule, trace, describe(r.all()))
	}
	return fs[len(fs)-1]
}

// harness bundles a detector with its clock and sink.
type harness struct {
	t     *testing.T
	d     *detector.Detector
	clock *fakeClock
	rec   *recorder
	cfg   detector.Config
}

// newHarness builds a detector from DefaultConfig with a fake clock, a fixed
// shard count (so tests do not depend on GOMAXPROCS) and mutate applied.
func newHarness(t *testing.T, mutate func(*detector.Config)) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock(), rec: &recorder{}}
	cfg := detector.DefaultConfig()
	cfg.Now = h.clock.Now
	cfg.Shards = 4
	if mutate != nil {
		mutate(&cfg)
	}
	d, err := detector.New(cfg, h.rec.sink)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.d, h.cfg = d, cfg
	t.Cleanup(func() {
		if !t.Failed() {
			checkVersionInvariants(t, h.rec.all())
			if err := h.d.CheckEndpointRefsForTest(); err != nil {
				t.Errorf("endpoint ids: %v", err)
			}
		}
	})
	return h
}

// batch ingests spans as one batch (one request) and closes it.
func (h *harness) batch(spans ...detector.Span) {
	b := h.d.NewBatch()
	for i := range spans {
		b.Add(&spans[i])
	}
	b.Close()
}

// checkVersionInvariants asserts what every sink may rely on: a leak id is
// LeakID(trace, rule), versions of one leak id strictly increase in the order
// the sink saw them, and nothing follows a closed or allowed version.
func checkVersionInvariants(t *testing.T, fs []detector.Finding) {
	t.Helper()
	last := map[string]detector.Finding{}
	for i, f := range fs {
		perService := f.Rule == detector.RuleUnscopedQuery || f.Rule == detector.RuleMissingTenant
		if want := detector.LeakID(f.TraceID, f.Rule); f.LeakID != want && !perService {
			t.Errorf("finding %d: LeakID %s, want LeakID(trace, rule) = %s", i, f.LeakID, want)
		}
		if prev, ok := last[f.LeakID]; ok {
			if f.Version <= prev.Version {
				t.Errorf("finding %d (%s %s): version %d not greater than previous %d",
					i, f.Rule, f.TraceID, f.Version, prev.Version)
			}
			if prev.Status == detector.StatusAllowed {
				t.Errorf("finding %d (%s %s): version emitted after the finding was withdrawn (allowed)",
					i, f.Rule, f.TraceID)
			}
		}
		last[f.LeakID] = f
	}
}

// tid builds a distinct, non-zero trace id from n.
func tid(n int) detector.TraceID {
	var id detector.TraceID
	id[0] = 0xAB
	binary.BigEndian.PutUint64(id[8:], uint64(n))
	return id
}

// sid builds a distinct span id from n; sid(0) is the empty (root) parent.
func sid(n int) detector.SpanID {
	var id detector.SpanID
	binary.BigEndian.PutUint64(id[:], uint64(n))
	return id
}

// span builds a span; tenants are given in the order the caller supplies them.
func span(trace detector.TraceID, id, parent int, service, name string, tenants ...detector.RawTenant) detector.Span {
	return detector.Span{
		TraceID:  trace,
		SpanID:   sid(id),
		ParentID: sid(parent),
		Service:  service,
		Name:     name,
		Tenants:  tenants,
	}
}

// tk is a span-attribute tenant under key index key (0: "tenant.id", 1: "tenant_id").
func tk(key uint8, v detector.Value) detector.RawTenant {
	return detector.RawTenant{KeyIndex: key, Value: v}
}

// ten is the common case: a string tenant under the first, most trusted key.
func ten(s string) detector.RawTenant { return tk(0, detector.StringValue(s)) }

// res is a resource-attribute tenant.
func res(key uint8, v detector.Value) detector.RawTenant {
	return detector.RawTenant{KeyIndex: key, Resource: true, Value: v}
}

func describe(fs []detector.Finding) string {
	if len(fs) == 0 {
		return "no findings"
	}
	s := fmt.Sprintf("%d findings:", len(fs))
	for _, f := range fs {
		s += fmt.Sprintf("\n  %s %s v%d %s tenants=%v edges=%d mismatches=%d",
			f.Rule, f.TraceID, f.Version, f.Status, f.Tenants, len(f.Edges), len(f.Mismatches))
	}
	return s
}

// raceEnabled reports whether the test binary was built with -race, under
// which sync.Pool drops items at random and allocation counts mean nothing.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
