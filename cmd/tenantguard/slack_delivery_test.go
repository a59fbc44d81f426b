package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// slowWebhook is a local incoming webhook that misbehaves per finding,
// told apart by the foreign tenant in the message: it holds every post
// about the slow tenant until the test ends (carried out, never answered
// in time), answers the first `outage` posts about the failing tenant with
// 503, and takes the rest at once.
type slowWebhook struct {
	srv           *httptest.Server
	slow, failing string
	release       chan struct{}

	mu       sync.Mutex
	outage   int
	posts    map[string][]time.Time // tenant → when each post about it arrived
	answered map[string]int         // tenant → posts answered 200
}

func newSlowWebhook(t *testing.T, tenants []string, slow, failing string, outage int) *slowWebhook {
	w := &slowWebhook{slow: slow, failing: failing, outage: outage, release: make(chan struct{}),
		posts: map[string][]time.Time{}, answered: map[string]int{}}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		tenant := ""
		for _, tn := range tenants {
			if strings.Contains(string(body), tn) {
				tenant = tn
			}
		}
		w.mu.Lock()
		w.posts[tenant] = append(w.posts[tenant], time.Now())
		fail := tenant == failing && w.outage > 0
		if fail {
			w.outage--
		}
		w.mu.Unlock()
		switch {
		case tenant == slow:
			<-w.release
		case fail:
			rw.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.mu.Lock()
			w.answered[tenant]++
			w.mu.Unlock()
			_, _ = io.WriteString(rw, "ok")
		}
	}))
	t.Cleanup(w.srv.Close)
	t.Cleanup(func() { close(w.release) })
	return w
}

func (w *slowWebhook) snapshot() (map[string][]time.Time, map[string]int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	posts := map[string][]time.Time{}
	for k, v := range w.posts {
		posts[k] = append([]time.Time(nil), v...)
	}
	answered := map[string]int{}
	for k, v := range w.answered {
		answered[k] = v
	}
	return posts, answered
}

// TestSlackWebhookBacksOffAndBoundsCopies runs the built collector against
// a webhook that is slow for one finding and down for a while for another:
// the other findings are delivered while the slow one's post is still
// held, the slow finding is posted at most twice (then dropped with an
// error log), and the failing one's retries wait longer and longer, from
// initial_backoff up to max_backoff.
func TestSlackWebhookBacksOffAndBoundsCopies(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the collector binary")
	}
	const outage = 5
	tenants := []string{"globex1", "globex2", "globex3", "globex4", "globex5"}
	hook := newSlowWebhook(t, tenants, "globex1", "globex2", outage)

	dir := t.TempDir()
	c := &crashCollector{
		bin: tenantguardBinary(t), dir: dir, cfg: filepath.Join(dir, "collector.yaml"),
		http: "127.0.0.1:" + strconv.Itoa(restartPort(t)), metrics: "127.0.0.1:" + strconv.Itoa(restartPort(t)),
	}
	outbox := strconv.Quote(filepath.Join(dir, "data", "slack-outbox.jsonl"))
	cfg := fmt.Sprintf(crashConfig, c.http, strconv.Quote(filepath.Join(dir, "data", "leaks.jsonl")),
		"127.0.0.1:"+strconv.Itoa(restartPort(t)), c.metrics, hook.srv.URL+"/services/T0/B0/x", outbox)
	const initial, maxBackoff = 50 * time.Millisecond, 400 * time.Millisecond
	cfg = strings.Replace(cfg, "outbox_path: "+outbox, "outbox_path: "+outbox+`
        timeout: 300ms
        initial_backoff: 50ms
        max_backoff: 400ms`, 1)
	if err := os.WriteFile(c.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	scenario, err := os.ReadFile(filepath.Join("..", "..", "testdata", "scenarios", "shared_inventory.json"))
	if err != nil {
		t.Fatal(err)
	}
	c.start(t)
	defer c.stop(t)
	// One leaking trace per tenant pair (acme → globexN): five findings,
	// five incidents.
	for i, tn := range tenants {
		body := strings.ReplaceAll(string(scenario), `"globex"`, strconv.Quote(tn))
		body = strings.ReplaceAll(body, "286f490d54c344f98350b1d0feeae75b", fmt.Sprintf("%032x", i+1))
		resp, err := http.Post("http://"+c.http+"/v1/traces", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("OTLP post: %s", resp.Status)
		}
	}

	// The others are delivered; globex1's first post is still held, as
	// the webhook answers it only when the test ends.
	eventually(t, 20*time.Second, "the other findings delivered", func() (bool, string) {
		_, answered := hook.snapshot()
		return answered["globex2"] == 1 && answered["globex3"] == 1 && answered["globex4"] == 1 && answered["globex5"] == 1,
			fmt.Sprintf("answered %v", answered)
	})
	eventually(t, 20*time.Second, "the slow finding given up", func() (bool, string) {
		return strings.Contains(c.logs.String(), "not posting again"), "no give-up in the log yet"
	})
	posts, answered := hook.snapshot()
	if n := len(posts["globex1"]); n != 2 {
		t.Errorf("the slow finding was posted %d times, want at most 2 (and 2 here: the webhook held each)", n)
	}
	for _, tn := range tenants[2:] {
		if n := len(posts[tn]); n != 1 {
			t.Errorf("%s posted %d times, want 1", tn, n)
		}
	}
	// The failing finding: outage refusals then one success, each wait at
	// least half its step of the schedule (a slow machine only lengthens them).
	p := posts["globex2"]
	if len(p) != outage+1 || answered["globex2"] != 1 {
		t.Fatalf("the failing finding had %d posts (%d answered), want %d: one per attempt", len(p), answered["globex2"], outage+1)
	}
	for k := 1; k < len(p); k++ {
		step := min(initial<<(k-1), maxBackoff)
		if gap := p[k].Sub(p[k-1]); gap < step/2 {
			t.Errorf("retry %d came %s after the attempt before, sooner than half its backoff step %s", k, gap, step)
		}
	}
	// The webhook answered; the notifier counts each outcome once it has it.
	want := map[string]float64{
		`tenantguard_alert_deliveries_total{notifier=slack,processor=tenantguard,result=delivered}`: 4,
		`tenantguard_alert_deliveries_total{notifier=slack,processor=tenantguard,result=failed}`:    1,
		`tenantguard_alert_pending{notifier=slack,processor=tenantguard}`:                           0,
	}
	eventually(t, 10*time.Second, "the outcomes on /metrics", func() (bool, string) {
		m := scrapeAt(t, c.metrics)
		for key, v := range want {
			if m[key] != v {
				return false, fmt.Sprintf("%s = %v, want %v", key, m[key], v)
			}
		}
		return true, ""
	})
}
