// Package journal is the embedded evidence store: an append-only file with
// one JSON object per line, each line one version of a finding. A batch is
// written with one write and one fsync, so a batch is either durable or
// (after a crash mid-write) a torn last line, which Open trims and readers
// skip. It checks at every append that its open file is still the one at
// its path, and reopens it when it is not (deleted, renamed, replaced, cut),
// failing that append so the caller retries into the right file. It is the
// default store and, with ClickHouse, its write-ahead log.
package journal
