package alerts

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// alert is what the Slack notifier keeps of a finding version: the fields a
// message shows, already reduced to what may leave the process.
type alert struct {
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
	// Kind is what the version changed: new, update (more tenants or
	// edges), escalated (higher severity), reclassified, withdrawn (allowed)
	// or closed.
	Kind      string        `json:"kind"`
	LeakID    string        `json:"leak_id"`
	Rule      string        `json:"rule"`
	Severity  string        `json:"severity"`
	Status    string        `json:"status,omitempty"`
	Reason    string        `json:"reason,omitempty"`
	TraceID   string        `json:"trace_id"`
	Tenants   []string      `json:"tenants"`
	Edges     []edgeSummary `json:"edges,omitempty"`
	MoreEdges int           `json:"more_edges,omitempty"`
	Mismatch  *mismatchView `json:"mismatch,omitempty"`
	SpanCount int           `json:"span_count"`
	FirstSeen time.Time     `json:"first_seen"`
	AllowedBy string        `json:"allowed_by,omitempty"`
	// Reached is the data-bearing span of a foreign tenant, when the
	// evidence has one: what made a crossing critical.
	Reached *reachView `json:"reached,omitempty"`
	// Message is the finding's message as Slack shows it (escaped,
	// tenants pseudonymized when configured).
	Message string `json:"message,omitempty"`
}

type edgeSummary struct {
	FromTenant, FromService, FromSpan string
	ToTenant, ToService, ToSpan       string
	Hops                              int
}

type mismatchView struct {
	Service string
	Span    string
	Values  []string // key=tenant
}

type reachView struct {
	Service, Span, Tenant string
}

// signature groups findings that are the same incident: the same rule and
// tenants through the same known crossing edge (or the same disagreeing
// span), whatever the trace. It is "" when no edge is known yet: such a
// finding stands alone.
func (a *alert) signature() string {
	var b bytes.Buffer
	b.WriteString(a.Rule)
	for _, t := range a.Tenants {
		b.WriteString("|" + t)
	}
	switch {
	case len(a.Edges) > 0 && a.Edges[0].FromService != "" && a.Edges[0].ToService != "":
		e := a.Edges[0]
		fmt.Fprintf(&b, "|%s/%s>%s/%s", e.FromService, e.FromSpan, e.ToService, e.ToSpan)
	case a.Mismatch != nil:
		fmt.Fprintf(&b, "|%s/%s", a.Mismatch.Service, a.Mismatch.Span)
	default:
		return ""
	}
	return b.String()
}

// outboxRecord is one line of the outbox file.
type outboxRecord struct {
	// alert: queued; posting: about to post (one record per attempt);
	// refused: Slack refused that attempt, so it posted nothing; done:
	// finished (delivered, grouped, skipped or failed); thread: where a
	// finding's message is and what it has told.
	Type  string `json:"type"`
	Seq   uint64 `json:"seq,omitempty"`
	Alert *alert `json:"alert,omitempty"`
	// done and thread records
	LeakID   string    `json:"leak_id,omitempty"`
	Result   string    `json:"result,omitempty"`
	Channel  string    `json:"channel,omitempty"`
	TS       string    `json:"ts,omitempty"`
	Sig      string    `json:"sig,omitempty"`
	Count    int       `json:"count,omitempty"`
	At       time.Time `json:"at,omitempty"`
	Tenants  int       `json:"tenants,omitempty"`
	Edges    int       `json:"edges,omitempty"`
	Severity string    `json:"severity,omitempty"`
	Owner    string    `json:"owner,omitempty"`
}

// thread is where a finding's message lives in Slack, and how much of the
// finding it has announced (so a restart does not repeat or miss updates).
type thread struct {
	Channel string
	TS      string
	At      time.Time
	Tenants int
	Edges   int
	// Severity is the last severity announced.
	Severity string
	// Owner is the finding whose top-level message this is, when the
	// finding was grouped into another's message; "" for its own.
	Owner string
	// Count is how many findings the top-level message stands for (its
	// owner's thread only).
	Count int
}

func (t thread) record(leak string) outboxRecord {
	return outboxRecord{Type: "thread", LeakID: leak, Channel: t.Channel, TS: t.TS, At: t.At, Tenants: t.Tenants,
		Edges: t.Edges, Severity: t.Severity, Owner: t.Owner, Count: t.Count}
}

func (r *outboxRecord) thread() thread {
	return thread{Channel: r.Channel, TS: r.TS, At: r.At, Tenants: r.Tenants, Edges: r.Edges, Severity: r.Severity,
		Owner: r.Owner, Count: r.Count}
}

// group is a top-level message that findings of the same incident collapse into.
type group struct {
	thread // Count is how many findings it stands for
	Root   *alert
}

// outbox is the notifier's durable memory: alerts not yet delivered, the
// intent to post (so a crash between posting and recording is detectable),
// and the message each finding went to. It is a JSON-lines file rewritten
// compactly at open.
type outbox struct {
	path string
	mu   sync.Mutex
	f    *os.File
	buf  bytes.Buffer
}

// maxThreads bounds how many finding → message mappings survive a restart.
const maxThreads = 50_000

type outboxState struct {
	pending []*alert
	// posting counts, per alert, the posts whose outcome is unknown (sent,
	// never answered): each may have put a copy in the channel.
	posting map[uint64]int
	threads map[string]thread // leak id → message
	groups  map[string]*group // signature → first message
	nextSeq uint64
}

func openOutbox(path string, groupWindow time.Duration, now time.Time) (*outbox, *outboxState, error) {
	st := &outboxState{posting: map[uint64]int{}, threads: map[string]thread{}, groups: map[string]*group{}, nextSeq: 1}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, nil, fmt.Errorf("creating Slack outbox directory for %s: %w", path, err)
	}
	if err := st.load(path, groupWindow, now); err != nil {
		return nil, nil, err
	}
	// Rewrite compactly: what is still pending, and where findings went.
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("rewriting Slack outbox %s: %w", path, err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, leak := range st.sortedThreads() {
		_ = enc.Encode(st.threads[leak].record(leak))
	}
	for sig, g := range st.groups {
		_ = enc.Encode(g.record(sig))
	}
	for _, a := range st.pending {
		_ = enc.Encode(outboxRecord{Type: "alert", Seq: a.Seq, Alert: a})
		for range st.posting[a.Seq] {
			_ = enc.Encode(outboxRecord{Type: "posting", Seq: a.Seq})
		}
	}
	if err := errors.Join(w.Flush(), f.Sync(), f.Close()); err != nil {
		return nil, nil, fmt.Errorf("rewriting Slack outbox %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, nil, fmt.Errorf("rewriting Slack outbox %s: %w", path, err)
	}
	f, err = os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("opening Slack outbox %s: %w", path, err)
	}
	return &outbox{path: path, f: f}, st, nil
}

func (st *outboxState) load(path string, groupWindow time.Duration, now time.Time) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading Slack outbox %s: %w", path, err)
	}
	byseq := map[uint64]*alert{}
	var order []uint64
	// An alert's done record can precede its alert record (a notifier
	// before this fix wrote them from two goroutines): an alert is pending
	// only if no done record names its seq, wherever that record is.
	done := map[uint64]bool{}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r outboxRecord
		if json.Unmarshal(line, &r) != nil {
			continue // a torn last line from a crash: that write never completed
		}
		if r.Seq >= st.nextSeq {
			st.nextSeq = r.Seq + 1
		}
		switch r.Type {
		case "alert":
			if r.Alert != nil && !done[r.Seq] {
				byseq[r.Seq] = r.Alert
				order = append(order, r.Seq)
			}
		case "posting":
			if !done[r.Seq] {
				st.posting[r.Seq]++
			}
		case "refused":
			if st.posting[r.Seq] > 0 {
				st.posting[r.Seq]--
			}
		case "thread":
			st.threads[r.LeakID] = r.thread()
		case "done":
			done[r.Seq] = true
			delete(byseq, r.Seq)
			delete(st.posting, r.Seq)
			// Outboxes written before thread records carried everything
			// kept the message in the done record.
			if r.LeakID != "" && r.Result == "delivered" && (r.TS != "" || r.Channel == webhookChannel) {
				st.threads[r.LeakID] = r.thread()
			}
			st.loadGroup(&r, groupWindow, now)
		case "group":
			st.loadGroup(&r, groupWindow, now)
		}
	}
	for _, seq := range order {
		if a, ok := byseq[seq]; ok {
			st.pending = append(st.pending, a)
		}
	}
	if len(st.threads) > maxThreads {
		keep := st.sortedThreads()[:maxThreads]
		kept := make(map[string]thread, maxThreads)
		for _, k := range keep {
			kept[k] = st.threads[k]
		}
		st.threads = kept
	}
	return nil
}

// loadGroup keeps a group whose window is still open.
func (st *outboxState) loadGroup(r *outboxRecord, groupWindow time.Duration, now time.Time) {
	if r.Sig == "" || r.Alert == nil || now.Sub(r.At) >= groupWindow {
		return
	}
	if g := st.groups[r.Sig]; g == nil || g.TS == r.TS {
		st.groups[r.Sig] = &group{thread: thread{Channel: r.Channel, TS: r.TS, At: r.At, Count: max(r.Count, 1), Owner: r.Owner}, Root: r.Alert}
	}
}

// owner is the finding whose top-level message the group is.
func (g *group) owner() string {
	if g.Owner != "" {
		return g.Owner
	}
	return g.Root.LeakID // an outbox from before owners were kept
}

func (g *group) record(sig string) outboxRecord {
	return outboxRecord{Type: "group", Seq: g.Root.Seq, Alert: g.Root, LeakID: g.Root.LeakID, Channel: g.Channel, TS: g.TS,
		Sig: sig, Count: g.Count, At: g.At, Owner: g.owner()}
}

// sortedThreads lists leak ids newest first.
func (st *outboxState) sortedThreads() []string {
	keys := make([]string, 0, len(st.threads))
	for k := range st.threads {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := st.threads[keys[i]], st.threads[keys[j]]
		if !a.At.Equal(b.At) {
			return a.At.After(b.At)
		}
		return keys[i] < keys[j]
	})
	return keys
}

// append writes records with one write and one fsync.
func (o *outbox) append(recs ...outboxRecord) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Reset()
	enc := json.NewEncoder(&o.buf)
	for i := range recs {
		if err := enc.Encode(&recs[i]); err != nil {
			return err
		}
	}
	if _, err := o.f.Write(o.buf.Bytes()); err != nil {
		return fmt.Errorf("writing Slack outbox %s: %w", o.path, err)
	}
	if err := o.f.Sync(); err != nil {
		return fmt.Errorf("syncing Slack outbox %s: %w", o.path, err)
	}
	return nil
}

func (o *outbox) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.f.Close()
}
