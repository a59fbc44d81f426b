package tenantguardprocessor

import (
	"fmt"
	"testing"
)

func TestKeyTableFindsExactlyTheKeysTheRulesRead(t *testing.T) {
	slots := []slot{
		{"tenant.id", slotTenant, 0}, {"org", slotTenant, 1}, {"url.path", slotDerive, 0},
		{"db.system", slotBinding, 0}, // a configured key that is also a fact
		{"tenant.id", slotBinding, 1}, // one key, two slots
	}
	kt := newKeyTable(slots)
	want := map[string]keyUse{
		"tenant.id": {slots: []int{0, 4}}, "org": {slots: []int{1}}, "url.path": {slots: []int{2}},
		"db.system": {slots: []int{3}, fact: factDBSystem}, "db.system.name": {fact: factDBSystem},
		"http.response.status_code": {fact: factHTTPStatus}, "http.status_code": {fact: factHTTPStatus},
		"rpc.grpc.status_code": {fact: factGRPCStatus}, "messaging.system": {fact: factMessaging},
		"aws.s3.bucket": {fact: factS3Bucket}, "db.query.text": {fact: factQuery}, "db.statement": {fact: factQueryOld},
	}
	for k, w := range want {
		u := kt.find(k)
		if u == nil {
			t.Errorf("%q not found", k)
			continue
		}
		if u.key != k || u.fact != w.fact || fmt.Sprint(u.slots) != fmt.Sprint(w.slots) {
			t.Errorf("%q: got key %q fact %d slots %v, want fact %d slots %v", k, u.key, u.fact, u.slots, w.fact, w.slots)
		}
	}
	// Keys of the same lengths and sharing the hashed bytes with wanted
	// ones, and everyday semantic-convention keys, are all misses.
	others := []string{"", "o", "orf", "tenant.ix", "tenantXid", "url.xath", "db.systen", "http.route",
		"server.address", "code.function.name", "db.namespace", "db.operation.name", "user_agent.original",
		"http.request.method", "network.protocol.version", "server.port", "db.query.textx", "TENANT.ID"}
	for i := 0; i < 2000; i++ {
		others = append(others, fmt.Sprintf("k%d.%x", i, i*7919))
	}
	for _, k := range others {
		if u := kt.find(k); u != nil {
			t.Errorf("%q found as %q", k, u.key)
		}
	}
}
