package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tenantguard/tenantguard/internal/chserver"
)

// e2eDir holds the binary the end-to-end tests build; TestMain removes it.
var e2eDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tenantguard-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating e2e build dir:", err)
		os.Exit(1)
	}
	e2eDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	chserver.Shutdown() // the ClickHouse engine of the leaks tests, before the process exits
	os.Exit(code)
}

var build struct {
	once sync.Once
	bin  string
	err  error
	took time.Duration
}

// tenantguardBinary builds this package's real binary with the `go` on
// PATH, once per test process, the first time an end-to-end test asks for
// it (so unit tests in this package do not pay for a link they never use).
func tenantguardBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		start := time.Now()
		goTool, err := exec.LookPath("go")
		if err != nil {
			build.err = fmt.Errorf("no go tool on PATH: %w", err)
			return
		}
		bin := filepath.Join(e2eDir, "tenantguard")
		// Built as deploy/Dockerfile builds it, so the image test and
		// this one share one build cache.
		cmd := exec.Command(goTool, "build", "-trimpath", "-o", bin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %w\n%s", err, out)
			return
		}
		build.bin, build.took = bin, time.Since(start)
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}
