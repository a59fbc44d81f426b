// Package chserver serves ClickHouse's HTTP interface over chDB, the
// ClickHouse engine built as a library (libchdb.so), in the test process.
// It exists so that the store's live suite runs against a real ClickHouse
// engine wherever the library is installed, CI included, with no server to
// run: the tests point clickhouse-go (Protocol: HTTP) at Server.Addr.
//
// It answers the subset of the HTTP interface clickhouse-go v2 uses: /ping,
// queries in the body with settings, database and param_* as URL
// parameters, INSERT ... FORMAT Native with a Native body, LZ4 or ZSTD
// block compression both ways (compress=1, decompress=1), and errors as
// HTTP 500 with X-ClickHouse-Exception-Code and a "Code: N. DB::Exception:"
// body. Query results go out in the Native layout the client asked for
// (client_protocol_version): chDB writes the layout of protocol revision 0,
// so results are decoded and re-encoded with clickhouse-go's own codecs.
//
// ServeTLS serves HTTPS with a self-signed certificate, for the client's
// TLS settings.
//
// The engine boots once per process (chDB cannot boot twice) on a data
// directory in a temporary folder; every request runs on a fresh chDB
// connection, so the settings of one request never leak into the next.
// The library is found through CHDB_LIB_PATH.
package chserver
