package chserver

import (
	"os"
	"testing"
)

// Start serves the shared engine for a test, stopping the server when the
// test ends. Without the library the test is skipped with InstallHint, or
// fails when $CI is true: in CI the engine suite must run.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, (*Engine).Serve)
}

// StartTLS is Start over HTTPS (see ServeTLS).
func StartTLS(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, (*Engine).ServeTLS)
}

func start(tb testing.TB, serve func(*Engine) (*Server, error)) *Server {
	tb.Helper()
	e, err := Shared()
	if err != nil {
		if os.Getenv(LibEnv) == "" && os.Getenv("CI") != "true" {
			tb.Skip("ClickHouse engine tests skipped: " + err.Error())
		}
		tb.Fatal(err)
	}
	s, err := serve(e)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}
