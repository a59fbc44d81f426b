package chserver

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

func open(t *testing.T, s *Server, db string, method ch.CompressionMethod) driver.Conn {
	t.Helper()
	conn, err := ch.Open(&ch.Options{Protocol: ch.HTTP, Addr: []string{s.Addr()}, Auth: ch.Auth{Database: db},
		Compression: &ch.Compression{Method: method}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestServerSpeaksClickHouseHTTPToTheDriver(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	boot := open(t, s, "", ch.CompressionNone)
	if err := boot.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := boot.ServerVersion()
	if err != nil || v.Version.Major < 25 {
		t.Fatalf("server version %+v, %v", v, err)
	}
	if err := boot.Exec(ctx, "CREATE DATABASE IF NOT EXISTS chserver_test"); err != nil {
		t.Fatal(err)
	}
	for _, method := range []ch.CompressionMethod{ch.CompressionNone, ch.CompressionLZ4, ch.CompressionZSTD} {
		t.Run(method.String(), func(t *testing.T) {
			conn := open(t, s, "chserver_test", method)
			if err := conn.Exec(ctx, "CREATE OR REPLACE TABLE t (id UInt64, name LowCardinality(String), tags Array(Tuple(k String, v Bool)), at DateTime64(9, 'UTC'), m Map(LowCardinality(String), String)) ENGINE = MergeTree ORDER BY id"); err != nil {
				t.Fatal(err)
			}
			b, err := conn.PrepareBatch(ch.Context(ctx, ch.WithSettings(ch.Settings{"insert_deduplicate": 1})), "INSERT INTO t")
			if err != nil {
				t.Fatal(err)
			}
			at := time.Date(2026, 3, 1, 2, 3, 4, 5, time.UTC)
			for i := range 3 {
				if err := b.Append(uint64(i), "n"+string(rune('a'+i)), []map[string]any{{"k": "x", "v": i%2 == 0}}, at, map[string]string{"a": "b"}); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.Send(); err != nil {
				t.Fatal(err)
			}
			var (
				n    uint64
				name string
				when time.Time
			)
			if err := conn.QueryRow(ctx, "SELECT count(), max(name), max(at) FROM t WHERE id >= {min:UInt64}", ch.Named("min", uint64(1))).Scan(&n, &name, &when); err != nil {
				t.Fatal(err)
			}
			if n != 2 || name != "nc" || !when.Equal(at) {
				t.Fatalf("got %d %q %s", n, name, when)
			}
			err = conn.Exec(ctx, "SELECT * FROM no_such_table")
			var exc *ch.Exception
			if !errors.As(err, &exc) || exc.Code != 60 {
				t.Fatalf("unknown table: %v, want code 60", err)
			}
		})
	}
	// A setting holds for its request only.
	conn := open(t, s, "chserver_test", ch.CompressionNone)
	var got string
	if err := conn.QueryRow(ch.Context(ctx, ch.WithSettings(ch.Settings{"insert_deduplication_token": "tok 1"})), "SELECT getSetting('insert_deduplication_token')").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != "tok 1" {
		t.Fatalf("insert_deduplication_token %q in its request", got)
	}
	if err := conn.QueryRow(ctx, "SELECT getSetting('insert_deduplication_token')").Scan(&got); err != nil || got != "" {
		t.Fatalf("insert_deduplication_token %q (%v) in the next request", got, err)
	}
}

// The wire contract clickhouse-go relies on, seen raw: /ping, and a failed
// statement as HTTP 500 with the code in a header and the exception text.
func TestServerAnswersLikeClickHouse(t *testing.T) {
	s := Start(t)
	res, err := http.Get("http://" + s.Addr() + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "Ok.\n" {
		t.Fatalf("/ping: %d %q", res.StatusCode, body)
	}
	res, err = http.Post("http://"+s.Addr()+"/?database=no_such_database_at_all", "text/plain", strings.NewReader("SELECT 1"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 500 || res.Header.Get("X-ClickHouse-Exception-Code") != "81" ||
		!strings.HasPrefix(string(body), "Code: 81. DB::Exception: ") {
		t.Fatalf("unknown database: %d %q %q", res.StatusCode, res.Header.Get("X-ClickHouse-Exception-Code"), body)
	}
	res, err = http.Post("http://"+s.Addr()+"/?param_x=it%27s&default_format=TabSeparated", "text/plain", strings.NewReader("SELECT {x:String}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "it\\'s\n" {
		t.Fatalf("a query parameter: %d %q", res.StatusCode, body)
	}
}
