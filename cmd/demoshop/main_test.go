package main

import (
	"bytes"
	"strings"
	"testing"
)

// Bad flags stop demoshop before it sends anything, with one error naming
// the problem. (The run itself is tested end to end, against the built
// collector, by cmd/tenantguard's TestDemoShopReportShowsIsolationHeldButForTheInjectedLeak.)
func TestDemoShopRefusesBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--duration", "0s"}, "--duration must be positive"},
		{[]string{"--interval", "-1s"}, "--interval not negative"},
		{[]string{"--duration", "ten"}, `invalid value "ten" for flag -duration`},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		var stdout, stderr bytes.Buffer
		err := run(c.args, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("demoshop %v: error %v, want one naming %q", c.args, err, c.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("demoshop %v printed a summary: %s", c.args, stdout.String())
		}
	}
}
