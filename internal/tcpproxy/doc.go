// Package tcpproxy is a loopback TCP proxy for tests, put between a client
// (the ClickHouse driver, a whole collector) and a real server, so that a
// test can take "the server" down and bring it back on the same address,
// or cut it the moment the client sends a given marker.
package tcpproxy
