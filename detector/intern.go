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
// one pointer instead of two strings.
type endpoint struct {
	service string
	name    string
	svc     *serviceCounts // the service's coverage counters
	// gen is the serviceNames generation at which svc was looked up, so
	// an endpoint folded into OtherServices asks again once names are
	// forgotten (see services.go).
	gen uint64
}

type endpointTable struct {
	cur, prev map[endpoint]*endpoint
	limit     int
}

func newEndpointTable(limit int) *endpointTable {
	return &endpointTable{cur: make(map[endpoint]*endpoint, 256), limit: limit}
}

func (t *endpointTable) get(service, name string, create func(service, name string) *endpoint) *endpoint {
	k := endpoint{service: service, name: name}
	if e, ok := t.cur[k]; ok {
		return e
	}
	e, ok := t.prev[k]
	if !ok {
		e = create(service, name)
	}
	if len(t.cur) >= t.limit {
		t.prev = t.cur
		t.cur = make(map[endpoint]*endpoint, len(t.prev))
	}
	t.cur[endpoint{service: e.service, name: e.name}] = e
	return e
}
