// Package clickhouse keeps the leak history in ClickHouse, where analysts
// query it across collectors and over months. The journal stays the
// write-ahead log: a Shipper reads it from a durable cursor and copies each
// finding version to ClickHouse in batches, off the span path, retrying with
// backoff while the server is away, resuming from the cursor after a
// restart, and moving a record the server refuses to a dead-letter file.
// Rows land in ReplacingMergeTree tables keyed by leak id, and every batch
// carries an insert deduplication token, so a re-sent batch adds no row;
// reads take the latest version of each finding. Client opens the
// connection (the native protocol or the HTTP interface), runs the
// versioned schema migrations, writes batches and answers the analyst
// queries of queries.sql; it is also a store.Store.
package clickhouse
