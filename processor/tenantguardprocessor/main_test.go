package tenantguardprocessor

import (
	"os"
	"testing"

	"github.com/tenantguard/tenantguard/internal/chserver"
)

func TestMain(m *testing.M) {
	code := m.Run()
	chserver.Shutdown() // the engine some tests start, before the process exits
	os.Exit(code)
}
