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

// builds are the programs the end-to-end tests run, each built once per
// test process, the first time a test asks for it (so unit tests in this
// package do not pay for links they never use).
var builds struct {
	mu sync.Mutex
	by map[string]*builtProgram
}

type builtProgram struct {
	once sync.Once
	bin  string
	err  error
	took time.Duration
}

// buildProgram builds the main package in dir (relative to this package)
// into the e2e dir as name, with the `go` on PATH, as deploy/Dockerfile
// builds its binaries (CGO_ENABLED=0, -trimpath), so the image test and
// these share one build cache. It returns the binary and how long the
// build took.
func buildProgram(t *testing.T, name, dir string) (string, time.Duration) {
	t.Helper()
	builds.mu.Lock()
	if builds.by == nil {
		builds.by = map[string]*builtProgram{}
	}
	b, ok := builds.by[name]
	if !ok {
		b = &builtProgram{}
		builds.by[name] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() {
		start := time.Now()
		goTool, err := exec.LookPath("go")
		if err != nil {
			b.err = fmt.Errorf("no go tool on PATH: %w", err)
			return
		}
		bin := filepath.Join(e2eDir, name)
		cmd := exec.Command(goTool, "build", "-trimpath", "-o", bin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build (%s): %w\n%s", dir, err, out)
			return
		}
		b.bin, b.took = bin, time.Since(start)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin, b.took
}

// tenantguardBinary is this package's real binary.
func tenantguardBinary(t *testing.T) string {
	t.Helper()
	bin, _ := buildProgram(t, "tenantguard", ".")
	return bin
}

// demoshopBinary is cmd/demoshop, the demo shop that sends real SDK traces.
func demoshopBinary(t *testing.T) string {
	t.Helper()
	bin, _ := buildProgram(t, "demoshop", filepath.Join("..", "demoshop"))
	return bin
}
