package detector

import "strings"

// interner copies strings that outlive a request (service and span names,
// tenants) once, so state never pins a request's buffers and repeated names
// cost no allocation. It keeps two generations: when the current one fills,
// it becomes the previous one and a fresh one starts, so the table stays
// bounded even under unbounded name cardinality, while strings already held
// by traces stay valid (they are ordinary Go strings).
type interner struct {
	cur, prev map[string]string
	limit     int
}

func newInterner(limit int) *interner {
	return &interner{cur: make(map[string]string, 256), limit: limit}
}

func (in *interner) intern(s string) string {
	if v, ok := in.cur[s]; ok {
		return v
	}
	if v, ok := in.prev[s]; ok {
		in.put(v)
		return v
	}
	v := strings.Clone(s)
	in.put(v)
	return v
}

// internBytes looks up without allocating when the string is known; the
// compiler does not copy b for the map index.
func (in *interner) internBytes(b []byte) string {
	if v, ok := in.cur[string(b)]; ok {
		return v
	}
	if v, ok := in.prev[string(b)]; ok {
		in.put(v)
		return v
	}
	v := string(b)
	in.put(v)
	return v
}

func (in *interner) put(v string) {
	if len(in.cur) >= in.limit {
		in.prev = in.cur
		in.cur = make(map[string]string, len(in.prev))
	}
	in.cur[v] = v
}

// endpoint is a (service, span name) pair, interned so a span record holds
// a 4-byte id instead of two strings. The id, not a pointer, keeps the
// state's span buffers and its ring of buried spans free of pointers, so
// the garbage collector does not scan them: in a collector, which
// allocates for every request it decodes, the GC runs often and those
// buffers are most of tenantguard's memory.
type endpoint struct {
	service string
	name    string
	svc     *serviceCounts // the service's coverage counters
	// gen is the serviceNames generation at which svc was looked up, so
	// an endpoint folded into OtherServices asks again once names are
	// forgotten (see services.go).
	gen uint64

	// The id is the endpoint's index in its table's byID. refs counts the
	// span records, buried spans and trace service lists that hold it; an endpoint the table no
	// longer finds by name (retired) frees its id when refs reaches 0, and
	// not before, so an id in a record always names its endpoint.
	id      uint32
	refs    int32
	retired bool
}

type endpointTable struct {
	cur, prev map[endpoint]*endpoint
	limit     int
	// recent are endpoints of the service last asked for, most of them
	// those of one ResourceSpans: a request carries a service's spans
	// together and they have few distinct names, so most spans find their
	// endpoint here by comparing names, without hashing both strings and
	// probing the map.
	recent  [maxRecentEndpoints]*endpoint
	nRecent int
	next    int // the slot the next endpoint replaces once recent is full

	byID []*endpoint // by id; nil: a free id
	free []uint32    // free ids
}

const maxRecentEndpoints = 8

func newEndpointTable(limit int) *endpointTable {
	return &endpointTable{cur: make(map[endpoint]*endpoint, 256), limit: limit}
}

func (t *endpointTable) get(service, name string, create func(service, name string) *endpoint) *endpoint {
	if t.nRecent > 0 {
		if t.recent[0].service == service {
			for _, e := range t.recent[:t.nRecent] {
				if e.name == name {
					return e
				}
			}
		} else {
			t.nRecent, t.next = 0, 0 // another service: its own names
		}
	}
	e := t.lookup(service, name, create)
	if t.nRecent < len(t.recent) {
		t.recent[t.nRecent] = e
		t.nRecent++
	} else {
		t.recent[t.next] = e
		t.next = (t.next + 1) % len(t.recent)
	}
	return e
}

func (t *endpointTable) lookup(service, name string, create func(service, name string) *endpoint) *endpoint {
	k := endpoint{service: service, name: name}
	if e, ok := t.cur[k]; ok {
		return e
	}
	e, ok := t.prev[k]
	if !ok {
		e = create(service, name)
		t.register(e)
	}
	k = endpoint{service: e.service, name: e.name}
	if len(t.cur) >= t.limit {
		if ok {
			t.cur[k] = e // promoted before the generation turns, so it does not retire
		}
		t.rotate()
	}
	t.cur[k] = e
	return e
}

// rotate starts a new generation: cur becomes prev, and the endpoints of
// the old prev that were not asked for since (so are not in cur) retire.
func (t *endpointTable) rotate() {
	for k, e := range t.prev {
		if t.cur[k] != e {
			t.retire(e)
		}
	}
	t.prev = t.cur
	t.cur = make(map[endpoint]*endpoint, len(t.prev))
	// recent may hold a retiring endpoint: it must not be handed out again.
	t.nRecent, t.next = 0, 0
}

func (t *endpointTable) register(e *endpoint) {
	if n := len(t.free); n > 0 {
		e.id = t.free[n-1]
		t.free = t.free[:n-1]
		t.byID[e.id] = e
		return
	}
	e.id = uint32(len(t.byID))
	t.byID = append(t.byID, e)
}

func (t *endpointTable) retire(e *endpoint) {
	e.retired = true
	if e.refs == 0 {
		t.release(e)
	}
}

func (t *endpointTable) release(e *endpoint) {
	t.byID[e.id] = nil
	t.free = append(t.free, e.id)
}

// at is the endpoint with id, which a record holding it keeps alive.
func (t *endpointTable) at(id uint32) *endpoint { return t.byID[id] }

// hold and drop count a record (a span record, a buried span or a trace's
// entry in its services) taking and letting go of an endpoint; holdID is hold for a record copied from
// another that holds it.
func (t *endpointTable) hold(e *endpoint) uint32 {
	e.refs++
	return e.id
}

func (t *endpointTable) holdID(id uint32) uint32 { return t.hold(t.byID[id]) }

func (t *endpointTable) drop(id uint32) {
	e := t.byID[id]
	if e.refs--; e.refs == 0 && e.retired {
		t.release(e)
	}
}
