package clickhouse

import (
	"os"
	"testing"

	"github.com/tenantguard/tenantguard/internal/chserver"
)

func TestMain(m *testing.M) {
	code := m.Run()
	chserver.Shutdown() // the live suite's engine, before the process exits
	os.Exit(code)
}
