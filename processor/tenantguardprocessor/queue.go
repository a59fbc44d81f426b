package tenantguardprocessor

import (
	"sync"

	"github.com/tenantguard/tenantguard/store"
)

// evidenceQueue carries findings from the span path to a worker: the
// evidence worker (to the journal) or the alert worker (to the notifiers).
// Pushing never blocks. Versions of one finding coalesce (the newest wins:
// each version is a superset of the ones before), so the queue's length is
// bounded by the number of distinct findings waiting, not by span traffic.
type evidenceQueue struct {
	mu    sync.Mutex
	items []store.Evidence
	at    map[string]int // leak id → index in items
	limit int
	wake  chan struct{}
}

func newEvidenceQueue(limit int) *evidenceQueue {
	return &evidenceQueue{at: map[string]int{}, limit: limit, wake: make(chan struct{}, 1)}
}

// push enqueues ev and reports false when the queue is full. With wake,
// it wakes the worker; without, the caller must call signal later.
func (q *evidenceQueue) push(ev store.Evidence, wake bool) bool {
	q.mu.Lock()
	ok := q.put(ev)
	q.mu.Unlock()
	if ok && wake {
		q.signal()
	}
	return ok
}

// signal wakes the worker to take what is queued. Every signal after a
// push is followed by a take after that push.
func (q *evidenceQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// signalIfQueued wakes the worker when something is queued.
func (q *evidenceQueue) signalIfQueued() {
	if q.len() > 0 {
		q.signal()
	}
}

func (q *evidenceQueue) put(ev store.Evidence) bool {
	if i, ok := q.at[ev.LeakID]; ok {
		if ev.Version > q.items[i].Version {
			q.items[i] = ev
		}
		return true
	}
	if len(q.items) >= q.limit {
		return false
	}
	q.at[ev.LeakID] = len(q.items)
	q.items = append(q.items, ev)
	return true
}

// requeue puts back a batch the store refused, without overwriting newer
// versions that arrived meanwhile. It returns what did not fit.
func (q *evidenceQueue) requeue(batch []store.Evidence) (lost []store.Evidence) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, ev := range batch {
		if !q.put(ev) {
			lost = append(lost, ev)
		}
	}
	return lost
}

// take removes and returns everything queued.
func (q *evidenceQueue) take() []store.Evidence {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.items
	q.items = nil
	clear(q.at)
	return out
}

func (q *evidenceQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
