package detector

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Per-trace rules keep a finding in the trace's state; per-service rules
// (unscoped_query, missing_tenant) are emitted at once, rate-limited.
const (
	idxCross = iota
	idxBlocked
	idxMismatch
	idxKey
	idxUnscoped
	idxMissing
	numRules
)

// ruleByIndex: the index constants follow the order of Rules (the
// conversion panics at start-up if a rule is added to one and not the other).
var ruleByIndex = [numRules]Rule(Rules)

// finding is the detector's memory of what it last said about a rule on a trace.
type finding struct {
	rule        Rule
	leakID      string
	detectedAt  time.Time
	lastVersion uint64
	emitted     bool
	shape       shape // of the last version emitted
	status      Status
	last        *Finding // the last version emitted, for a late span's tombstone
}

// shape is what makes a new version worth sending: more tenants, edges,
// services or offending spans, or another severity. Growth in span count
// alone waits for the closing version, so a long leaking trace is one
// finding with a handful of versions, not one per span.
type shape struct {
	tenants, edges, services, items int
	severity                        Severity
}

func shapeOf(f *Finding) shape {
	return shape{len(f.Tenants), len(f.Edges), len(f.Services), len(f.Mismatches) + len(f.Keys) + len(f.Queries), f.Severity}
}

type edgeRef struct {
	from, to int32 // span indexes; from < 0: a link edge, to is the consumer
	link     int32 // index into traceState.links for link edges
	hops     int
	blocked  bool
}

// evaluate runs the per-trace rules on one trace and emits what changed.
func (sh *shard) evaluate(ts *traceState, now time.Time) {
	ts.dirty = false
	ts.listed = ^sh.holder.seq
	if sh.n(ts).allowedBy != "" {
		// Streaming means a finding may have gone out before the allow-listed
		// span arrived; withdraw it so nobody acts on it.
		for _, f := range sh.n(ts).findings {
			if f != nil && f.status == StatusOpen {
				f.status = StatusAllowed
				sh.emit(ts, f, now, true)
			}
		}
		return
	}
	edges := sh.crossingEdges(ts)
	var succeeded, blocked []edgeRef
	for _, e := range edges {
		if e.blocked {
			blocked = append(blocked, e)
		} else {
			succeeded = append(succeeded, e)
		}
	}
	if int(ts.tenants.n) >= 2 {
		cross := sh.n(ts).findings[idxCross]
		switch {
		case len(succeeded) > 0 || len(edges) == 0:
			// No edge known yet (a parent still to come, tenants in separate
			// roots) is treated as a leak: streaming detection errs towards
			// telling on-call.
			sh.judge(ts, idxCross, now)
		case cross != nil && cross.status == StatusOpen:
			// Every crossing turned out refused: the blocked_attempt finding
			// tells the story now.
			cross.status = StatusReclassified
			sh.emit(ts, cross, now, true)
		}
	}
	if len(blocked) > 0 {
		sh.judge(ts, idxBlocked, now)
	}
	if len(sh.n(ts).mismatches) > 0 {
		sh.judge(ts, idxMismatch, now)
	}
	if len(sh.n(ts).keys) > 0 {
		sh.judge(ts, idxKey, now)
	}
}

// judge creates or updates the trace's finding for one rule.
func (sh *shard) judge(ts *traceState, idx int, now time.Time) {
	f := sh.n(ts).findings[idx]
	if f == nil {
		rule := ruleByIndex[idx]
		f = &finding{rule: rule, status: StatusOpen, detectedAt: now, leakID: LeakID(ts.id, rule)}
		if prior := sh.n(ts).prior; prior != nil {
			if prev := prior.findings[rule]; prev != nil {
				// Reopened by a late span: continue the same finding.
				f.emitted, f.detectedAt, f.shape, f.last = true, prev.DetectedAt, shapeOf(prev), prev
			}
		}
		sh.note(ts).findings[idx] = f
	}
	if f.status != StatusOpen {
		return
	}
	out := sh.build(ts, f, now)
	if f.emitted && shapeOf(&out) == f.shape {
		return
	}
	sh.send(f, out, now, true)
}

// emit sends the current version of f whatever its shape (status changes).
// owed says whether the lock's holder answers for it (see shard.close).
func (sh *shard) emit(ts *traceState, f *finding, now time.Time, owed bool) {
	sh.send(f, sh.build(ts, f, now), now, owed)
}

func (sh *shard) send(f *finding, out Finding, now time.Time, owed bool) {
	// Versions grow per shard, not just per finding: a trace id always maps
	// to the same shard, so a trace that is closed and starts again (late
	// spans, eviction, a batch that read the clock before a sweep) keeps
	// its leak id's versions increasing.
	v := uint64(now.UnixNano())
	if v <= sh.lastVers {
		v = sh.lastVers + 1
	}
	sh.lastVers = v
	out.Version = v
	out.New = !f.emitted
	if f.last != nil {
		carryDetails(&out, f.last)
	}
	f.lastVersion, f.emitted, f.shape = v, true, shapeOf(&out)
	last := out
	f.last = &last
	// The raised copy's evidence spans are its own: the batch's Annotate
	// fills them after the lock is released, while f.last stays as it is.
	out.Spans = slices.Clone(out.Spans)
	sh.raise(out, owed)
}

// raise counts a finding version and collects it for the lock's holder,
// noting whether the holder answers for it.
func (sh *shard) raise(out Finding, owed bool) {
	sh.d.stats.findings.Add(1)
	sh.d.stats.byRule[indexOfRule(out.Rule)].Add(1)
	sh.holder.raised = append(sh.holder.raised, out)
	sh.holder.owed = append(sh.holder.owed, owed)
}

func indexOfRule(r Rule) int {
	for i, x := range ruleByIndex {
		if x == r {
			return i
		}
	}
	return 0
}

// build assembles a finding version from the trace's state (and, for a
// trace reopened by late spans, what was said before it closed).
func (sh *shard) build(ts *traceState, f *finding, now time.Time) Finding {
	spans := sh.spansOf(ts)
	out := Finding{
		LeakID:     f.leakID,
		Rule:       f.rule,
		Status:     f.status,
		TraceID:    ts.id,
		Tenants:    sortedCopy(sh.tenantsOf(ts)),
		Services:   sh.serviceNames(ts),
		SpanCount:  ts.spanCount,
		ArrivedAt:  timeAt(ts.arrived, now),
		FirstSeen:  timeAt(ts.firstSeen, now),
		LastSeen:   timeAt(ts.lastSeenForEvidence(), now),
		DetectedAt: f.detectedAt,
	}
	if f.status == StatusAllowed {
		out.AllowedBy = sh.n(ts).allowedBy
	}
	ev := evidenceSet{max: sh.d.cfg.MaxEvidenceSpans}
	switch f.rule {
	case RuleCrossTenantTrace, RuleBlockedAttempt:
		wantBlocked := f.rule == RuleBlockedAttempt
		for _, e := range sh.crossingEdges(ts) {
			if e.blocked != wantBlocked {
				continue
			}
			out.Edges = append(out.Edges, sh.edge(ts, e, &ev))
		}
		if f.rule == RuleCrossTenantTrace {
			// A crossing without a known edge still needs one span per tenant.
			var first [maxTenantsPerTrace + 1]int32 // 1-based tenant → its first span + 1
			for i := range spans {
				if t := spans[i].tenant; t != 0 && first[t] == 0 {
					first[t] = int32(i) + 1
				}
			}
			for ti := 0; ti < int(ts.tenants.n) && len(ev.spans) < ev.max; ti++ {
				if i := first[ti+1]; i != 0 && !ev.hasTenant(sh.tenantsOf(ts)[ti]) {
					ev.add(sh.evidence(ts, &spans[i-1]))
				}
			}
		}
		out.Severity, out.Reason = sh.crossSeverity(ts, &out, &ev)
		if f.status == StatusReclassified {
			out.Reason = "every crossing in this trace was refused; see its blocked_attempt finding"
		}
	case RuleTenantMismatch:
		// The forged tenant is a tenant the trace reached for: list it, so
		// that a search by either tenant finds the attempt. A span can name
		// many (a header array): the finding lists at most
		// maxTenantsPerTrace, the trace's own first.
		seen := make(map[string]struct{}, len(out.Tenants))
		for _, t := range out.Tenants {
			seen[t] = struct{}{}
		}
	values:
		for _, m := range sh.n(ts).mismatches {
			for _, v := range m.Values {
				if len(out.Tenants) >= maxTenantsPerTrace {
					break values
				}
				if _, ok := seen[v.Tenant]; !ok {
					seen[v.Tenant] = struct{}{}
					out.Tenants = append(out.Tenants, v.Tenant)
				}
			}
		}
		slices.Sort(out.Tenants)
		out.Mismatches = append([]Mismatch(nil), sh.n(ts).mismatches...)
		out.Severity, out.Reason = sh.offenderSeverity(ts, SeverityHigh, "the disagreeing request was served")
	case RuleForeignSigningKey:
		for _, k := range sh.n(ts).keys {
			if k.KeyTenant != "" {
				out.Tenants = addTenant(out.Tenants, k.KeyTenant)
			}
		}
		slices.Sort(out.Tenants)
		out.Keys = append([]KeyUse(nil), sh.n(ts).keys...)
		out.Severity, out.Reason = sh.offenderSeverity(ts, SeverityCritical, "a token verified with another tenant's (or a global) key was accepted")
	}
	if f.rule == RuleTenantMismatch || f.rule == RuleForeignSigningKey {
		for i := range spans {
			if spans[i].flags&flagEvidence != 0 {
				ev.add(sh.evidence(ts, &spans[i]))
			}
		}
	}
	out.Spans = ev.spans
	if prior := sh.n(ts).prior; prior != nil {
		if prev := prior.findings[f.rule]; prev != nil {
			mergePrior(&out, prev, sh.d.cfg.MaxEvidenceSpans)
		}
	}
	return out
}

// crossSeverity: a succeeded crossing into a foreign tenant's stored data
// (a database, cache, object store or queue span of that tenant) is
// critical; other succeeded crossings are high; refused ones low. The span
// that touched the data joins the evidence: it is what makes it critical,
// and it need not be on the crossing edge (the edge may enter the foreign
// tenant at a service whose query runs further down).
func (sh *shard) crossSeverity(ts *traceState, out *Finding, ev *evidenceSet) (Severity, string) {
	spans := sh.spansOf(ts)
	if out.Rule == RuleBlockedAttempt {
		return SeverityLow, "the crossing was refused: isolation held"
	}
	// The first data-bearing span each tenant reached, in one pass.
	var data map[string]*spanRec
	for i := range spans {
		r := &spans[i]
		if r.flags&flagData != 0 && r.flags&flagBlocked == 0 && r.tenant != 0 {
			if data == nil {
				data = map[string]*spanRec{}
			}
			if t := sh.tenantOf(ts, r); data[t] == nil {
				data[t] = r
			}
		}
	}
	for _, e := range out.Edges {
		if r := data[e.To.Tenant]; r != nil {
			ev.add(sh.evidence(ts, r))
			ep := sh.eps.at(r.ep)
			return SeverityCritical, fmt.Sprintf("%s `%s` read or wrote %s's data", ep.service, ep.name, e.To.Tenant)
		}
	}
	if len(out.Edges) == 0 {
		if out.Status == StatusOpen {
			return SeverityHigh, "the trace carries several tenants; the crossing edge is not known yet"
		}
		return SeverityHigh, "the trace carries several tenants in branches with no tenant-carrying common ancestor"
	}
	return SeverityHigh, "the crossing succeeded; no data-bearing span of the foreign tenant seen"
}

// offenderSeverity is low when every offending span was refused.
func (sh *shard) offenderSeverity(ts *traceState, served Severity, reason string) (Severity, string) {
	spans := sh.spansOf(ts)
	for i := range spans {
		r := &spans[i]
		if r.flags&flagEvidence != 0 && r.flags&flagBlocked == 0 {
			return served, reason
		}
	}
	return SeverityLow, "the request was refused: isolation held"
}

func (sh *shard) edge(ts *traceState, e edgeRef, ev *evidenceSet) CrossingEdge {
	spans := sh.spansOf(ts)
	to := &spans[e.to]
	toEP := sh.eps.at(to.ep)
	ce := CrossingEdge{
		To:      EdgeEnd{SpanID: to.id, Service: toEP.service, Name: toEP.name, Tenant: sh.tenantOf(ts, to)},
		Hops:    e.hops,
		Outcome: OutcomeSucceeded,
	}
	if e.blocked {
		ce.Outcome = OutcomeBlocked
	}
	if e.from < 0 {
		ce.From, ce.Link = sh.n(ts).links[e.link].from, true
	} else {
		from := &spans[e.from]
		fromEP := sh.eps.at(from.ep)
		ce.From = EdgeEnd{SpanID: from.id, Service: fromEP.service, Name: fromEP.name, Tenant: sh.tenantOf(ts, from)}
		ev.add(sh.evidence(ts, from))
	}
	ev.add(sh.evidence(ts, to))
	return ce
}

// mergePrior folds the version said before a trace closed into a version
// built from late spans, so the late version is never poorer.
func mergePrior(out, prev *Finding, maxEvidence int) {
	for _, t := range prev.Tenants {
		out.Tenants = addTenant(out.Tenants, t)
	}
	slices.Sort(out.Tenants)
	for _, s := range prev.Services {
		if !contains(out.Services, s) {
			out.Services = append(out.Services, s)
		}
	}
	slices.Sort(out.Services)
	edges := append([]CrossingEdge(nil), prev.Edges...)
	for _, e := range out.Edges {
		dup := false
		for _, p := range prev.Edges {
			if p.From.SpanID == e.From.SpanID && p.To.SpanID == e.To.SpanID {
				dup = true
			}
		}
		if !dup {
			edges = append(edges, e)
		}
	}
	out.Edges = edges
	out.Mismatches = append(append([]Mismatch(nil), prev.Mismatches...), out.Mismatches...)
	out.Keys = append(append([]KeyUse(nil), prev.Keys...), out.Keys...)
	ev := evidenceSet{max: maxEvidence, spans: append([]EvidenceSpan(nil), prev.Spans...)}
	for _, s := range out.Spans {
		ev.add(s)
	}
	out.Spans = ev.spans
	out.SpanCount += prev.SpanCount
	if prev.FirstSeen.Before(out.FirstSeen) {
		out.FirstSeen = prev.FirstSeen
	}
	// The earlier version saw spans the late one cannot (they are gone):
	// its judgement stands unless the late spans make it worse.
	if prev.Severity.Rank() >= out.Severity.Rank() {
		out.Severity, out.Reason = prev.Severity, prev.Reason
	}
	if prev.ArrivedAt.Before(out.ArrivedAt) {
		out.ArrivedAt = prev.ArrivedAt
	}
}

// addTenant adds t to a finding's tenants unless it is listed already or
// the list holds maxTenantsPerTrace.
func addTenant(tenants []string, t string) []string {
	if len(tenants) >= maxTenantsPerTrace || contains(tenants, t) {
		return tenants
	}
	return append(tenants, t)
}

// evidenceSet collects evidence spans without duplicates, up to a cap.
type evidenceSet struct {
	max   int
	spans []EvidenceSpan
}

func (s *evidenceSet) add(e EvidenceSpan) {
	if len(s.spans) >= s.max {
		return
	}
	for i := range s.spans {
		if s.spans[i].SpanID == e.SpanID {
			return
		}
	}
	s.spans = append(s.spans, e)
}

func (s *evidenceSet) hasTenant(t string) bool {
	for i := range s.spans {
		if s.spans[i].Tenant == t {
			return true
		}
	}
	return false
}

func (sh *shard) evidence(ts *traceState, r *spanRec) EvidenceSpan {
	ep := sh.eps.at(r.ep)
	e := EvidenceSpan{SpanID: r.id, ParentID: r.parent, Service: ep.service, Name: ep.name, Tenant: sh.tenantOf(ts, r),
		Outcome: OutcomeSucceeded, Data: r.flags&flagData != 0}
	if r.flags&flagBlocked != 0 {
		e.Outcome = OutcomeBlocked
	}
	if e.Tenant != "" {
		e.TenantKey = sh.d.keys[r.key]
	}
	return e
}

// crossingEdges finds, for every span with a tenant, its nearest ancestor
// with a tenant; where the two differ, that is a crossing edge. Spans without
// a tenant in between (a proxy, a middleware) are walked through and counted
// as hops. Span links whose producer's tenant differs from the consumer's
// are crossing edges too. It runs only on traces that already hold two
// tenants, and is linear in the spans kept, using an index map the shard
// reuses.
func (sh *shard) crossingEdges(ts *traceState) []edgeRef {
	spans := sh.spansOf(ts)
	if int(ts.tenants.n) < 2 {
		return nil
	}
	idx := sh.index
	clear(idx)
	for i := range spans {
		if _, dup := idx[spans[i].id]; !dup {
			idx[spans[i].id] = int32(i)
		}
	}
	// Each span's nearest tenant-carrying ancestor is found once and
	// remembered, so the walks cost O(spans) together however deep the
	// tenantless chains are; a parent loop without a tenant has none.
	anc := sh.anc[:0]
	for range spans {
		anc = append(anc, ancestor{span: ancUnknown})
	}
	sh.anc = anc
	var edges []edgeRef
	for i := range spans {
		c := &spans[i]
		if c.tenant == 0 || c.parent.IsEmpty() || idx[c.id] != int32(i) {
			// No tenant, a root, or a second delivery of a span (an
			// exporter retry): no edge of its own.
			continue
		}
		p, ok := idx[c.parent]
		if !ok {
			continue
		}
		a := sh.nearestTenant(ts, p)
		if a.span < 0 {
			continue
		}
		if spans[a.span].tenant != c.tenant {
			edges = append(edges, edgeRef{from: a.span, to: int32(i), hops: int(a.hops), blocked: c.flags&flagBlocked != 0})
		}
	}
	for li, le := range sh.n(ts).links {
		if to := &spans[le.to]; to.tenant != 0 && sh.tenantOf(ts, to) != le.from.Tenant {
			edges = append(edges, edgeRef{from: -1, to: le.to, link: int32(li), blocked: le.blocked})
		}
	}
	return edges
}

// ancestor is a span's nearest tenant-carrying ancestor-or-self (an index
// into traceState.spans, or ancNone) and the tenantless spans between.
type ancestor struct {
	span, hops int32
}

const (
	ancNone    = -1 // a root, a missing parent or a loop before any tenant
	ancUnknown = -2
	ancWalking = -3
)

// nearestTenant resolves sh.anc[j]: j itself when it has a tenant, else
// its parent's answer one hop further. It walks up until a known answer,
// then fills in every span it passed.
func (sh *shard) nearestTenant(ts *traceState, j int32) ancestor {
	spans := sh.spansOf(ts)
	anc, path := sh.anc, sh.path[:0]
	var res ancestor
	for {
		if a := anc[j]; a.span != ancUnknown {
			res = a
			if a.span == ancWalking {
				res = ancestor{span: ancNone} // back on this walk: a loop
			}
			break
		}
		r := &spans[j]
		if r.tenant != 0 {
			res = ancestor{span: j}
			anc[j] = res
			break
		}
		anc[j].span = ancWalking
		path = append(path, j)
		p, ok := sh.index[r.parent]
		if r.parent.IsEmpty() || !ok {
			res = ancestor{span: ancNone}
			break
		}
		j = p
	}
	for k := len(path) - 1; k >= 0; k-- {
		if res.span >= 0 {
			res.hops++
		}
		anc[path[k]] = res
	}
	sh.path = path
	return res
}

// missingTenant reports a tenant-aware service's span without a tenant,
// once per service and span name per coverage window.
func (sh *shard) missingTenant(ts *traceState, s *Span, ep *endpoint, now time.Time) {
	d := sh.d
	window, ok := d.windows.allow(windowKey{RuleMissingTenant, ep.service, ep.name}, spanTime(s, now), d.cfg.CoverageWindow)
	if !ok {
		d.stats.suppressed.Add(1)
		return
	}
	out := sh.standalone(RuleMissingTenant, SeverityMedium, ts, s, ep, now, window)
	out.Reason = fmt.Sprintf("%s is listed as tenant-aware but `%s` carried no tenant", ep.service, ep.name)
	sh.sendStandalone(out)
}

// checkQuery reports a statement against scoped tables with no tenant
// predicate, once per service, span name and tables per window. It reports
// whether the statement was unscoped.
func (sh *shard) checkQuery(ts *traceState, s *Span, ep *endpoint, now time.Time) bool {
	d := sh.d
	tables, joined := d.sql.UnscopedCached(s.Query)
	if len(tables) == 0 {
		return false
	}
	window, ok := d.windows.allow(windowKey{RuleUnscopedQuery, ep.service, ep.name + "\x00" + joined}, spanTime(s, now), d.cfg.UnscopedWindow)
	if !ok {
		d.stats.suppressed.Add(1)
		return true
	}
	out := sh.standalone(RuleUnscopedQuery, SeverityHigh, ts, s, ep, now, window)
	out.LeakID = windowLeakID(RuleUnscopedQuery, ep.service, ep.name+"\x00"+joined, window)
	out.Queries = []UnscopedQuery{{SpanID: s.SpanID, Service: ep.service, Name: ep.name, Tables: slices.Clone(tables)}}
	out.Reason = fmt.Sprintf("a statement on %s has no predicate on %s", joined, d.cfg.tenantColumn())
	sh.sendStandalone(out)
	return true
}

// standalone builds a per-service finding around one span.
func (sh *shard) standalone(rule Rule, sev Severity, ts *traceState, s *Span, ep *endpoint, now, window time.Time) Finding {
	out := Finding{
		LeakID: windowLeakID(rule, ep.service, ep.name, window), Rule: rule, Severity: sev, Status: StatusClosed,
		TraceID: s.TraceID, Tenants: sortedCopy(sh.tenantsOf(ts)), Services: []string{ep.service}, SpanCount: 1,
		ArrivedAt: now, FirstSeen: timeAt(ts.firstSeen, now), LastSeen: timeAt(ts.lastSeenForEvidence(), now), DetectedAt: now, New: true,
		Spans: []EvidenceSpan{{SpanID: s.SpanID, ParentID: s.ParentID, Service: ep.service, Name: ep.name,
			Outcome: OutcomeSucceeded, Data: s.Data != DataNone}},
	}
	if s.blocked() {
		out.Spans[0].Outcome = OutcomeBlocked
	}
	return out
}

func (sh *shard) sendStandalone(out Finding) {
	v := uint64(out.DetectedAt.UnixNano())
	if v <= sh.lastVers {
		v = sh.lastVers + 1
	}
	sh.lastVers = v
	out.Version = v
	sh.raise(out, true)
}

// carryDetails gives the evidence spans of a new version the details an
// earlier version captured: a version built after its request is gone
// (closing, late spans, a sweep) keeps what was read from the spans.
func carryDetails(out, prev *Finding) {
	for i := range out.Spans {
		if out.Spans[i].Detail != nil {
			continue
		}
		for j := range prev.Spans {
			if prev.Spans[j].SpanID == out.Spans[i].SpanID && prev.Spans[j].Detail != nil {
				out.Spans[i].Detail = prev.Spans[j].Detail
				break
			}
		}
	}
}

func sortedCopy(xs []string) []string {
	out := append([]string(nil), xs...)
	slices.Sort(out)
	return out
}

// spanTime dates a per-service finding's window by when the span ran, so a
// replay of old traces (a scan, a restarted collector) names the same
// windows, and so the same findings, as the live run did.
func spanTime(s *Span, now time.Time) time.Time {
	if s.StartUnixNano > 0 && s.StartUnixNano <= math.MaxInt64 {
		if t := time.Unix(0, int64(s.StartUnixNano)); t.Before(now) {
			return t
		}
	}
	return now
}
