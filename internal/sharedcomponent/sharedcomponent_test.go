package sharedcomponent

import (
	"errors"
	"testing"
)

type resource struct{ closed int }

// The first Acquire opens, later ones share, the last Release closes, and
// the key is free to open afresh after that.
func TestOneResourcePerKeyUntilTheLastRelease(t *testing.T) {
	var m Map[string, *resource]
	opened := 0
	open := func() (*resource, error) { opened++; return &resource{}, nil }
	closeIt := func(r *resource) error { r.closed++; return nil }
	a, _ := m.Acquire("journal", open)
	b, _ := m.Acquire("journal", open)
	c, _ := m.Acquire("other", open)
	if a != b || a == c || opened != 2 {
		t.Fatalf("want one resource per key: a=%p b=%p c=%p opened %d", a, b, c, opened)
	}
	if m.Holders("journal") != 2 {
		t.Fatalf("holders %d, want 2", m.Holders("journal"))
	}
	if err := m.Release("journal", closeIt); err != nil || a.closed != 0 {
		t.Fatalf("closed after the first of two releases: %v, closed %d", err, a.closed)
	}
	if err := m.Release("journal", closeIt); err != nil || a.closed != 1 {
		t.Fatalf("the last release must close once: %v, closed %d", err, a.closed)
	}
	if err := m.Release("journal", closeIt); err != nil || a.closed != 1 {
		t.Fatalf("a release of a key nobody holds closed again: %v, closed %d", err, a.closed)
	}
	d, _ := m.Acquire("journal", open)
	if d == a || opened != 3 {
		t.Fatalf("after the last release the key opens afresh: same %v, opened %d", d == a, opened)
	}
}

// A failed open holds nothing, and the close error of the last release is
// the caller's.
func TestOpenAndCloseErrorsReachTheCaller(t *testing.T) {
	var m Map[string, *resource]
	boom := errors.New("bind: address already in use")
	if _, err := m.Acquire("ep", func() (*resource, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("open error %v", err)
	}
	if m.Holders("ep") != 0 {
		t.Fatalf("a failed open is held by %d", m.Holders("ep"))
	}
	m.Acquire("ep", func() (*resource, error) { return &resource{}, nil })
	if err := m.Release("ep", func(*resource) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("close error %v", err)
	}
}
