package processor

import (
	"math"
	"time"

	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

// toEvidence converts a finding into its stored form.
func toEvidence(f *detector.Finding, instance string) store.Evidence {
	ev := store.Evidence{
		LeakID:        f.LeakID,
		Version:       f.Version,
		Rule:          string(f.Rule),
		Severity:      string(f.Severity),
		Status:        string(f.Status),
		AllowedBy:     f.AllowedBy,
		Reason:        f.Reason,
		TraceID:       f.TraceID.String(),
		Tenants:       f.Tenants,
		Services:      f.Services,
		CrossingEdges: make([]store.CrossingEdge, 0, len(f.Edges)),
		Spans:         make([]store.Span, 0, len(f.Spans)),
		SpanCount:     f.SpanCount,
		FirstSeen:     f.FirstSeen.UTC(),
		LastSeen:      f.LastSeen.UTC(),
		DetectedAt:    f.DetectedAt.UTC(),
		Collector:     instance,
	}
	for _, e := range f.Edges {
		ev.CrossingEdges = append(ev.CrossingEdges, store.CrossingEdge{
			From: edgeEnd(e.From), To: edgeEnd(e.To), Hops: e.Hops, Link: e.Link, Outcome: e.Outcome,
		})
	}
	for _, m := range f.Mismatches {
		sm := store.Mismatch{SpanID: m.SpanID.String(), Service: m.Service, Span: m.Name}
		for _, v := range m.Values {
			sm.Values = append(sm.Values, store.TenantSource{Key: v.Key, Tenant: v.Tenant, Resource: v.Resource})
		}
		ev.Mismatches = append(ev.Mismatches, sm)
	}
	for _, k := range f.Keys {
		ev.Keys = append(ev.Keys, store.KeyUse{SpanID: k.SpanID.String(), Service: k.Service, Span: k.Name, Attribute: k.Attribute,
			Identifier: k.Identifier, KeyTenant: k.KeyTenant, SpanTenant: k.SpanTenant, Global: k.Global})
	}
	for _, q := range f.Queries {
		ev.Queries = append(ev.Queries, store.Query{SpanID: q.SpanID.String(), Service: q.Service, Span: q.Name, Tables: q.Tables})
	}
	for _, s := range f.Spans {
		sp := store.Span{SpanID: s.SpanID.String(), Service: s.Service, Name: s.Name, Tenant: s.Tenant, TenantKey: s.TenantKey,
			Outcome: s.Outcome, Data: s.Data}
		if !s.ParentID.IsEmpty() {
			sp.ParentID = s.ParentID.String()
		}
		if d := s.Detail; d != nil {
			sp.Kind, sp.Status, sp.Attributes = d.Kind, d.Status, d.Attributes
			if d.StartUnixNano > 0 && d.StartUnixNano <= math.MaxInt64 {
				sp.StartTime = time.Unix(0, int64(d.StartUnixNano)).UTC()
			}
			if d.StartUnixNano > 0 && d.EndUnixNano > d.StartUnixNano {
				sp.DurationNs = d.EndUnixNano - d.StartUnixNano
			}
		}
		ev.Spans = append(ev.Spans, sp)
	}
	return ev
}

func edgeEnd(e detector.EdgeEnd) store.EdgeEnd {
	end := store.EdgeEnd{SpanID: e.SpanID.String(), Service: e.Service, Span: e.Name, Tenant: e.Tenant}
	if !e.TraceID.IsEmpty() {
		end.TraceID = e.TraceID.String()
	}
	return end
}
