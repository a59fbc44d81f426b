package sharedcomponent

import "sync"

// Map holds the resources its instances share, by key (a journal's path,
// a metrics endpoint). The zero value is ready to use; it is safe for
// concurrent use.
type Map[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]*entry[V]
}

type entry[V any] struct {
	v    V
	refs int
}

// Acquire returns the resource for key, opening it with open when nobody
// holds it, and counts one more holder. An error from open is returned as
// is and nothing is held.
func (m *Map[K, V]) Acquire(key K, open func() (V, error)) (V, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.m[key]; ok {
		e.refs++
		return e.v, nil
	}
	v, err := open()
	if err != nil {
		return v, err
	}
	if m.m == nil {
		m.m = map[K]*entry[V]{}
	}
	m.m[key] = &entry[V]{v: v, refs: 1}
	return v, nil
}

// Release drops one holder of key. The last one's release removes the
// resource and closes it with close, whose error it returns; close runs
// with the map locked, so a new Acquire of the key waits and opens afresh.
// Releasing a key nobody holds does nothing.
func (m *Map[K, V]) Release(key K, close func(V) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[key]
	if !ok {
		return nil
	}
	if e.refs--; e.refs > 0 {
		return nil
	}
	delete(m.m, key)
	return close(e.v)
}

// Holders reports how many hold key.
func (m *Map[K, V]) Holders(key K) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.m[key]; ok {
		return e.refs
	}
	return 0
}
