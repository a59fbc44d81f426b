package tenantguardprocessor

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"iter"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/detector"
)

// Bounds on what one evidence span keeps: evidence lives in memory with its
// finding until the trace's late window ends, so a hostile span must not
// make it large.
const (
	maxEvidenceKeyBytes   = 128
	maxEvidenceClearBytes = 256
)

// digestPrefix marks a stored value as a digest, naming the algorithm so
// that a later change of algorithm cannot be confused with it.
const digestPrefix = "hmac-sha256:"

// evidenceRedactor turns an evidence span's attributes into what may be
// stored: clear-listed and tenant values as they are (capped), every other
// value as a keyed digest, or RedactedValue without a key.
type evidenceRedactor struct {
	clear map[string]struct{}
	key   []byte
	max   int
}

func newEvidenceRedactor(cfg config.EvidenceAttributes, tenantKeys []string) *evidenceRedactor {
	if !cfg.Enabled {
		return nil
	}
	r := &evidenceRedactor{clear: make(map[string]struct{}, len(cfg.Clear)+len(tenantKeys)), max: cfg.MaxPerSpan}
	for _, k := range cfg.Clear {
		r.clear[k] = struct{}{}
	}
	for _, k := range tenantKeys {
		r.clear[k] = struct{}{}
	}
	if len(cfg.HMACKey) > 0 {
		r.key = []byte(cfg.HMACKey)
	}
	return r
}

// Digest is the stored form of a value outside the clear list:
// "hmac-sha256:" and the hex HMAC-SHA256 of the value under key.
func Digest(key []byte, value string) string {
	return digest(hmac.New(sha256.New, key), value)
}

func digest(mac hash.Hash, value string) string {
	mac.Reset()
	mac.Write([]byte(value))
	var sum [sha256.Size]byte
	return digestPrefix + hex.EncodeToString(mac.Sum(sum[:0]))
}

// attributes returns the stored form of attrs, at most r.max entries (in
// the span's order: instrumentation puts the defining ones first).
func (r *evidenceRedactor) attributes(attrs pcommon.Map) map[string]string {
	if attrs.Len() == 0 || r.max == 0 {
		return nil
	}
	var mac hash.Hash
	if r.key != nil {
		mac = hmac.New(sha256.New, r.key)
	}
	out := make(map[string]string, min(attrs.Len(), r.max))
	attrs.Range(func(k string, v pcommon.Value) bool {
		if len(out) >= r.max {
			return false
		}
		key := capUTF8(k, maxEvidenceKeyBytes)
		switch _, clear := r.clear[k]; {
		case clear:
			out[key] = capUTF8(v.AsString(), maxEvidenceClearBytes)
		case mac != nil:
			out[key] = digest(mac, v.AsString())
		default:
			out[key] = config.RedactedValue
		}
		return true
	})
	return out
}

// capUTF8 makes s valid UTF-8 and cuts it to at most n bytes on a rune
// boundary, marking the cut.
func capUTF8(s string, n int) string {
	return detector.CapString(strings.ToValidUTF8(s, "\uFFFD"), n)
}

// EvidenceReader gives the evidence spans of the findings one request
// raises the details that request carries: kind, timing, status, and
// attributes stored as evidence_attributes says. The processor keeps one
// per pooled request; offline tools (`tenantguard scan`) use one so that
// their records, and so their messages, are the collector's.
//
// Most requests raise no finding and a few raise one or two: each such
// finding walks the request for its trace's spans, comparing trace ids (a
// few microseconds for a thousand spans). A request that raises more (a
// leak storm, evictions of open findings) indexes its spans by trace once,
// after walksBeforeIndex walks, and then costs a lookup per finding. The
// index lives in buffers the reader keeps, so a pooled reader indexes
// without allocating.
type EvidenceReader struct {
	r     *evidenceRedactor
	parts []ptrace.Traces
	walks int // walks of the request so far

	// The index: every span of parts[:indexed] in request order, each
	// trace's spans chained from its first to its last.
	indexed int
	spans   []ptrace.Span
	next    []int32 // next[i]: the trace's span after spans[i]; -1 after its last
	heads   []spanChain
	chains  map[detector.TraceID]int32 // index in heads
}

// spanChain is where one trace's spans start and end in the index.
type spanChain struct{ first, last int32 }

// walksBeforeIndex is how many walks of a request come before it is
// indexed: indexing costs as much as 5 to 15 walks (a map probe per run of
// a trace's spans, against a compare per span), so a request that raises a
// few findings never pays it, and one that raises many pays at most about
// twice what the better of the two would have cost.
const walksBeforeIndex = 8

// maxKeptIndex bounds the index a pooled reader keeps between requests, in
// spans: a huge request must not pin its size in every pooled reader.
const maxKeptIndex = 1 << 14

// NewEvidenceReader returns a reader for requests judged under cfg, or nil
// when evidence_attributes is off (evidence spans then keep no details).
func NewEvidenceReader(cfg *Config) *EvidenceReader {
	return newEvidenceReader(newEvidenceRedactor(cfg.EvidenceAttributes, cfg.TenantAttributes))
}

func newEvidenceReader(r *evidenceRedactor) *EvidenceReader {
	if r == nil {
		return nil
	}
	return &EvidenceReader{r: r}
}

// Read adds td, the whole request or one part of it, to what Fill looks in.
func (q *EvidenceReader) Read(td ptrace.Traces) {
	q.parts = append(q.parts, td)
}

// Reset forgets the request, keeping the reader's buffers for the next.
func (q *EvidenceReader) Reset() {
	clear(q.parts)
	q.parts = q.parts[:0]
	q.walks = 0
	if q.indexed == 0 {
		return
	}
	q.indexed = 0
	if cap(q.spans) > maxKeptIndex {
		q.spans, q.next, q.heads, q.chains = nil, nil, nil, nil
		return
	}
	clear(q.spans) // they point into the request
	q.spans, q.next, q.heads = q.spans[:0], q.next[:0], q.heads[:0]
	clear(q.chains)
}

// Fill gives f's evidence spans without details the details of the spans
// with their ids that the request carries. It is a Batch.Annotate.
func (q *EvidenceReader) Fill(f *detector.Finding) {
	missing := 0
	for i := range f.Spans {
		if f.Spans[i].Detail == nil {
			missing++
		}
	}
	if missing == 0 {
		return
	}
	if q.walks++; q.walks > walksBeforeIndex {
		q.index()
		n, ok := q.chains[f.TraceID]
		if !ok {
			return
		}
		for i := q.heads[n].first; i >= 0 && missing > 0; i = q.next[i] {
			missing = q.fill(f, q.spans[i], missing)
		}
		return
	}
	for _, td := range q.parts {
		for sp := range Spans(td) {
			if detector.TraceID(sp.TraceID()) != f.TraceID {
				continue
			}
			if missing = q.fill(f, sp, missing); missing == 0 {
				return
			}
		}
	}
}

// Spans yields every span of td, resource by resource, scope by scope.
func Spans(td ptrace.Traces) iter.Seq[ptrace.Span] {
	return func(yield func(ptrace.Span) bool) {
		rss := td.ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			sss := rss.At(i).ScopeSpans()
			for j := 0; j < sss.Len(); j++ {
				spans := sss.At(j).Spans()
				for k := 0; k < spans.Len(); k++ {
					if !yield(spans.At(k)) {
						return
					}
				}
			}
		}
	}
}

// fill gives sp's details to the finding's evidence span with its id (the
// first, when a broken client repeats ids) and returns how many still lack
// them.
func (q *EvidenceReader) fill(f *detector.Finding, sp ptrace.Span, missing int) int {
	id := detector.SpanID(sp.SpanID())
	for n := range f.Spans {
		es := &f.Spans[n]
		if es.SpanID != id || es.Detail != nil {
			continue
		}
		es.Detail = &detector.SpanDetail{
			Kind:          spanKind(sp.Kind()),
			StartUnixNano: uint64(sp.StartTimestamp()),
			EndUnixNano:   uint64(sp.EndTimestamp()),
			Status:        spanStatus(sp.Status().Code()),
			Attributes:    q.r.attributes(sp.Attributes()),
		}
		return missing - 1
	}
	return missing
}

// index adds the parts read since the last call to the index, chaining
// each span to its trace's in request order, as a walk meets them.
func (q *EvidenceReader) index() {
	if q.chains == nil {
		q.chains = map[detector.TraceID]int32{}
	}
	var prev detector.TraceID
	c := -1 // prev's chain: spans of a trace come in runs
	for _, td := range q.parts[q.indexed:] {
		for sp := range Spans(td) {
			i := int32(len(q.spans))
			q.spans = append(q.spans, sp)
			q.next = append(q.next, -1)
			if id := detector.TraceID(sp.TraceID()); c < 0 || id != prev {
				n, ok := q.chains[id]
				if !ok {
					n = int32(len(q.heads))
					q.chains[id] = n
					q.heads = append(q.heads, spanChain{i, i})
					prev, c = id, int(n)
					continue
				}
				prev, c = id, int(n)
			}
			q.next[q.heads[c].last] = i
			q.heads[c].last = i
		}
	}
	q.indexed = len(q.parts)
}

func spanKind(k ptrace.SpanKind) string {
	switch k {
	case ptrace.SpanKindServer:
		return "server"
	case ptrace.SpanKindClient:
		return "client"
	case ptrace.SpanKindProducer:
		return "producer"
	case ptrace.SpanKindConsumer:
		return "consumer"
	case ptrace.SpanKindInternal:
		return "internal"
	}
	return ""
}

func spanStatus(c ptrace.StatusCode) string {
	switch c {
	case ptrace.StatusCodeOk:
		return "ok"
	case ptrace.StatusCodeError:
		return "error"
	}
	return "unset"
}
