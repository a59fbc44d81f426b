package slacktest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Post is one chat.postMessage or chat.update call, as Slack received it.
type Post struct {
	Channel, Text, Blocks, ThreadTS, TS, Metadata string
}

// Server is the local Slack. Web API methods live under /api/, the
// incoming webhook at /webhook (or any path that is not /api/…).
type Server struct {
	*httptest.Server

	mu        sync.Mutex
	posts     []Post      // chat.postMessage, in order
	updates   []Post      // chat.update
	hooks     []string    // webhook bodies
	bodies    []string    // every raw request body
	arrived   []time.Time // when each request arrived
	nextTS    int
	histories int
	replies   int

	// Set them through Set. Fail429 answers that many requests with 429
	// Retry-After: 1; then Fail503 that many with 503; FailCode answers
	// every request with that status while set.
	Fail429, Fail503, FailCode int
}

// NewServer starts a local Slack, closed when the test ends.
func NewServer(t testing.TB) *Server {
	s := &Server{nextTS: 100}
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

// ServeHTTP answers one request as Slack would.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bodies = append(s.bodies, string(body))
	s.arrived = append(s.arrived, time.Now())
	if s.Fail429 > 0 {
		s.Fail429--
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	if s.Fail503 > 0 {
		s.Fail503--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if s.FailCode != 0 {
		w.WriteHeader(s.FailCode)
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/api/") {
		s.hooks = append(s.hooks, string(body))
		_, _ = io.WriteString(w, "ok")
		return
	}
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	_ = r.ParseForm()
	p := Post{Channel: r.Form.Get("channel"), Text: r.Form.Get("text"), Blocks: r.Form.Get("blocks"),
		ThreadTS: r.Form.Get("thread_ts"), Metadata: r.Form.Get("metadata"), TS: r.Form.Get("ts")}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/api/chat.postMessage":
		s.nextTS++
		p.TS = fmt.Sprintf("1700000000.%06d", s.nextTS)
		s.posts = append(s.posts, p)
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": "C0LEAKS", "ts": p.TS})
	case "/api/chat.update":
		s.updates = append(s.updates, p)
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": p.Channel, "ts": p.TS})
	case "/api/conversations.history":
		s.histories++
		var msgs []map[string]any
		for _, post := range s.posts {
			if post.ThreadTS != "" {
				continue
			}
			var md map[string]any
			_ = json.Unmarshal([]byte(post.Metadata), &md)
			msgs = append(msgs, map[string]any{"type": "message", "ts": post.TS, "text": post.Text, "metadata": md})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "messages": msgs})
	case "/api/conversations.replies":
		// The thread's parent, then its replies, oldest first, as Slack
		// answers; each with its metadata.
		s.replies++
		ts := r.Form.Get("ts")
		var msgs []map[string]any
		for _, post := range s.posts {
			if post.TS != ts && post.ThreadTS != ts {
				continue
			}
			var md map[string]any
			_ = json.Unmarshal([]byte(post.Metadata), &md)
			msgs = append(msgs, map[string]any{"type": "message", "ts": post.TS, "thread_ts": ts, "text": post.Text, "metadata": md})
		}
		if len(msgs) == 0 {
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "thread_not_found"})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "messages": msgs})
	default:
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "unknown_method"})
	}
}

// Snapshot returns the posts, the edits and the webhook bodies so far.
func (s *Server) Snapshot() (posts, updates []Post, hooks []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Post(nil), s.posts...), append([]Post(nil), s.updates...), append([]string(nil), s.hooks...)
}

// TopLevel returns the posts that are not thread replies.
func (s *Server) TopLevel() []Post {
	posts, _, _ := s.Snapshot()
	var out []Post
	for _, p := range posts {
		if p.ThreadTS == "" {
			out = append(out, p)
		}
	}
	return out
}

// RepliesIn returns the thread replies under the message ts.
func (s *Server) RepliesIn(ts string) []Post {
	posts, _, _ := s.Snapshot()
	var out []Post
	for _, p := range posts {
		if p.ThreadTS == ts {
			out = append(out, p)
		}
	}
	return out
}

// Bodies returns every request body so far.
func (s *Server) Bodies() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

// Arrived returns when each request arrived.
func (s *Server) Arrived() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.arrived...)
}

// Replies counts conversations.replies calls.
func (s *Server) Replies() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replies
}

// Histories counts conversations.history calls.
func (s *Server) Histories() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.histories
}

// Set changes the failure settings under the server's lock.
func (s *Server) Set(f func(*Server)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}
