package config

import (
	"strings"
	"testing"
)

func TestClickHouseProtocol(t *testing.T) {
	for _, tc := range []struct {
		protocol string
		err      string
	}{
		{"native", ""},
		{"http", ""},
		{"https", `store.clickhouse.protocol: "https" is not one of native, http`},
		{"", `store.clickhouse.protocol: "" is not one of native, http`},
	} {
		c := DefaultClickHouse()
		c.Endpoints = []string{"ch-1:8443"}
		c.Protocol = tc.protocol
		err := c.Validate()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("protocol %q: %v", tc.protocol, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || strings.Count(err.Error(), "protocol") != 1):
			t.Errorf("protocol %q: %v, want one error saying %s", tc.protocol, err, tc.err)
		}
	}
	if DefaultClickHouse().Protocol != "native" {
		t.Error("the default protocol must be native: existing configs name native endpoints")
	}
}
