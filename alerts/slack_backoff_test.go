package alerts

import (
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/config/configopaque"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tenantguard/tenantguard/alerts/slacktest"
)

// An alert's retries wait initial_backoff, then twice as long each time, up
// to max_backoff, each wait jittered into [d/2, d]; a 429 waits exactly its
// Retry-After. The schedule is read from the waits the notifier logs (it
// chose them), and the local Slack checks that no request came sooner than
// the wait before it: a slow machine can only make the gaps longer.
func TestSlackBackoffGrowsPerAlertAndHonoursRetryAfter(t *testing.T) {
	const outage = 7 // 503s before Slack is back; more than maxUnconfirmedPosts
	for _, mode := range []string{"bot", "webhook"} {
		t.Run(mode, func(t *testing.T) {
			srv := slacktest.NewServer(t)
			cfg := botConfig(t, srv, filepath.Join(t.TempDir(), "outbox.jsonl"))
			if mode == "webhook" {
				cfg.Token, cfg.Channel, cfg.APIURL = "", "", ""
				cfg.WebhookURL = configopaque.String(srv.URL + "/webhook")
			}
			cfg.InitialBackoff, cfg.MaxBackoff = 20*time.Millisecond, 160*time.Millisecond
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			srv.Set(func(s *slacktest.Server) { s.Fail503 = outage })
			core, logs := observer.New(zap.WarnLevel)
			res := &results{}
			n, err := NewSlack(cfg, zap.New(core), WithDeliveryObserver(res.add))
			if err != nil {
				t.Fatal(err)
			}
			n.Start()
			defer closeSlack(t, n)

			notify(t, n, leak("leak1", "00000000000000000000000000000001", "acme", "globex"))
			waitFor(t, "delivery after the outage", func() bool { return res.count(ResultDelivered) == 1 })
			// Rate limited: the wait is the Retry-After (1s), whatever the
			// schedule says, and it holds every finding, not only the one
			// that got the 429 (Slack's limit is per app).
			srv.Set(func(s *slacktest.Server) { s.Fail429 = 1 })
			notify(t, n, leak("leak2", "00000000000000000000000000000002", "acme", "umbrella"))
			waitFor(t, "the 429", func() bool { return res.count(ResultRetried) == outage+1 })
			notify(t, n, leak("leak3", "00000000000000000000000000000003", "acme", "initech"))
			waitFor(t, "delivery after the 429", func() bool { return res.count(ResultDelivered) == 3 })

			if got := res.count(ResultRetried); got != outage+1 {
				t.Fatalf("%d retries, want one per refused request (%d)", got, outage+1)
			}
			arrived := srv.Arrived()
			if len(arrived) != outage+1+3 {
				t.Fatalf("%d requests reached Slack, want %d: one per attempt", len(arrived), outage+1+3)
			}
			waits := map[string][]time.Duration{}
			for _, e := range logs.FilterMessage("Slack delivery failed; will retry").All() {
				f := e.ContextMap()
				waits[f["leak_id"].(string)] = append(waits[f["leak_id"].(string)], f["retry_in"].(time.Duration))
			}
			maxWait := cfg.MaxBackoff
			var prev time.Duration
			for k, w := range waits["leak1"] {
				d := min(cfg.InitialBackoff<<k, maxWait)
				if w < d/2 || w > d {
					t.Errorf("wait %d is %s, want within [%s, %s]", k+1, w, d/2, d)
				}
				if d < maxWait && w < prev {
					t.Errorf("wait %d (%s) is shorter than wait %d (%s) below the cap", k+1, w, k, prev)
				}
				prev = w
				if gap := arrived[k+1].Sub(arrived[k]); gap < w {
					t.Errorf("request %d came %s after the one before, sooner than the %s wait", k+2, gap, w)
				}
			}
			if len(waits["leak1"]) != outage {
				t.Fatalf("leak1 logged %d waits, want %d", len(waits["leak1"]), outage)
			}
			if w := waits["leak2"]; len(w) != 1 || w[0] != time.Second {
				t.Fatalf("waits after a 429 with Retry-After: 1 were %v, want [1s]", w)
			}
			for _, k := range []int{outage + 2, outage + 3} { // leak2's retry and leak3's first post
				if gap := arrived[k].Sub(arrived[outage+1]); gap < time.Second {
					t.Errorf("request %d came %s after a 429 asking for 1s", k+1, gap)
				}
			}
		})
	}
}
