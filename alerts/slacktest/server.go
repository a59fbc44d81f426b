package slacktest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
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
	lastTS    int64       // microseconds of the last message's ts
	histories int
	replies   int

	// Set them through Set. Fail429 answers that many requests with 429
	// Retry-After: 1; then Fail503 that many with 503; FailCode answers
	// every request with that status while set.
	Fail429, Fail503, FailCode int
}

// NewServer starts a local Slack, closed when the test ends.
func NewServer(t testing.TB) *Server {
	s := &Server{}
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
		// Slack's ts is the message's unix time in microseconds, unique
		// in its channel.
		s.lastTS = max(time.Now().UnixMicro(), s.lastTS+1)
		p.TS = fmt.Sprintf("%d.%06d", s.lastTS/1e6, s.lastTS%1e6)
		s.posts = append(s.posts, p)
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": "C0LEAKS", "ts": p.TS})
	case "/api/chat.update":
		s.updates = append(s.updates, p)
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": p.Channel, "ts": p.TS})
	case "/api/conversations.history":
		// Top-level messages, newest first, one page of them.
		s.histories++
		var msgs []map[string]any
		for i := len(s.posts) - 1; i >= 0; i-- {
			if post := s.posts[i]; post.ThreadTS == "" && inRange(r, post.TS) {
				msgs = append(msgs, message(post))
			}
		}
		page(w, r, 100, msgs)
	case "/api/conversations.replies":
		// The thread's parent, then its replies, oldest first, as Slack
		// answers; each with its metadata.
		s.replies++
		ts := r.Form.Get("ts")
		var msgs []map[string]any
		for _, post := range s.posts {
			if post.TS == ts || post.ThreadTS == ts && inRange(r, post.TS) {
				m := message(post)
				m["thread_ts"] = ts
				msgs = append(msgs, m)
			}
		}
		if len(msgs) == 0 || msgs[0]["ts"] != ts {
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "thread_not_found"})
			return
		}
		page(w, r, 1000, msgs)
	default:
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "unknown_method"})
	}
}

func message(post Post) map[string]any {
	var md map[string]any
	_ = json.Unmarshal([]byte(post.Metadata), &md)
	return map[string]any{"type": "message", "ts": post.TS, "text": post.Text, "metadata": md}
}

// inRange applies the oldest and latest parameters (exclusive unless
// inclusive is set), as Slack does.
func inRange(r *http.Request, ts string) bool {
	at, incl := micros(ts), r.Form.Get("inclusive") == "true" || r.Form.Get("inclusive") == "1"
	if o := r.Form.Get("oldest"); o != "" && (at < micros(o) || at == micros(o) && !incl) {
		return false
	}
	if l := r.Form.Get("latest"); l != "" && (at > micros(l) || at == micros(l) && !incl) {
		return false
	}
	return true
}

// micros reads a Slack timestamp ("seconds.micros").
func micros(ts string) int64 {
	sec, frac, _ := strings.Cut(ts, ".")
	s, _ := strconv.ParseInt(sec, 10, 64)
	f, _ := strconv.ParseInt((frac + "000000")[:6], 10, 64)
	return s*1e6 + f
}

// page answers with the page of msgs that the cursor and limit (default
// def, at most 999 a page, as Slack caps it) pick, and the cursor of the
// next page when there is one. The cursor is opaque to clients: here, the
// offset.
func page(w http.ResponseWriter, r *http.Request, def int, msgs []map[string]any) {
	limit := def
	if l, err := strconv.Atoi(r.Form.Get("limit")); err == nil && l > 0 {
		limit = l
	}
	limit = min(limit, 999)
	from := 0
	if c := r.Form.Get("cursor"); c != "" {
		b, err := base64.StdEncoding.DecodeString(c)
		off, ok := strings.CutPrefix(string(b), "offset:")
		n, aerr := strconv.Atoi(off)
		if err != nil || !ok || aerr != nil || n < 0 || n > len(msgs) {
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "invalid_cursor"})
			return
		}
		from = n
	}
	to := min(from+limit, len(msgs))
	resp := map[string]any{"ok": true, "messages": msgs[from:to], "has_more": to < len(msgs)}
	if to < len(msgs) {
		resp["response_metadata"] = map[string]any{"next_cursor": base64.StdEncoding.EncodeToString([]byte("offset:" + strconv.Itoa(to)))}
	}
	_ = json.NewEncoder(w).Encode(resp)
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
