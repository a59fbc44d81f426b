package clickhouse

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/store"
)

// Minimum server version: what the schema and queries are written for, and
// what clickhouse-go v2 supports (older servers accept the connection and
// then hang on batch inserts).
const minMajor, minMinor = 25, 8

var errTooOld = errors.New("ClickHouse server too old")

// Client is a connection pool to ClickHouse with the tenantguard schema. It
// writes finding versions (Writer, store.Store) and answers the analyst
// queries. It is safe for concurrent use.
type Client struct {
	conn   driver.Conn
	cfg    config.ClickHouse
	logger *zap.Logger
}

var (
	_ Writer      = (*Client)(nil)
	_ store.Store = (*Client)(nil)
)

// Open connects to the first reachable endpoint, checks the server version
// and, when cfg.CreateSchema is set, creates the database if needed and
// runs the schema migrations. It returns as soon as it fails (each endpoint
// is given cfg.DialTimeout): the caller decides when to try again, so the
// collector never waits on it. Errors never contain the password.
func Open(ctx context.Context, cfg config.ClickHouse, logger *zap.Logger) (*Client, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if !cfg.Enabled() {
		return nil, errors.New("clickhouse store is not configured: set store.clickhouse.endpoints")
	}
	pw := string(cfg.Password)
	where := fmt.Sprintf("ClickHouse at %s (database %s, user %s)", strings.Join(cfg.Endpoints, ", "), cfg.Database, cfg.Username)
	connect := func(database string) (*Client, error) {
		opts, err := options(ctx, cfg, database)
		if err != nil {
			return nil, err
		}
		conn, err := ch.Open(opts)
		if err != nil {
			return nil, err
		}
		c := &Client{conn: conn, cfg: cfg, logger: logger}
		if err := c.check(ctx); err != nil {
			_ = conn.Close()
			return nil, err
		}
		return c, nil
	}
	c, err := connect(cfg.Database)
	if exceptionCode(err) == 81 && cfg.CreateSchema { // UNKNOWN_DATABASE: first start against this server
		boot, berr := connect("")
		if berr != nil {
			return nil, fmt.Errorf("connecting to %s: %w", where, redact(classify(berr), pw))
		}
		d := newSchemaData(cfg)
		stmt, _ := render(bootstrapStatements[0], d)
		berr = boot.conn.Exec(ctx, stmt)
		_ = boot.Close()
		if berr != nil {
			return nil, fmt.Errorf("creating database %s on %s: %w", cfg.Database, where, redact(classify(berr), pw))
		}
		c, err = connect(cfg.Database)
	}
	if err != nil {
		if exceptionCode(err) == 81 {
			return nil, fmt.Errorf("connecting to %s: the database does not exist; the collector creates it with store.clickhouse.create_schema: true: %w",
				where, redact(classify(err), pw))
		}
		return nil, fmt.Errorf("connecting to %s: %w", where, redact(classify(err), pw))
	}
	if cfg.CreateSchema {
		if err := c.Migrate(ctx); err != nil {
			_ = c.Close()
			return nil, classify(err)
		}
	}
	return c, nil
}

func options(ctx context.Context, cfg config.ClickHouse, database string) (*ch.Options, error) {
	opts := &ch.Options{
		Protocol: ch.Native,
		Addr:     cfg.Endpoints,
		Auth: ch.Auth{
			Database: database,
			Username: cfg.Username,
			Password: string(cfg.Password),
		},
		DialTimeout:      cfg.DialTimeout,
		ReadTimeout:      cfg.ReadTimeout,
		ConnOpenStrategy: ch.ConnOpenInOrder, // endpoints fail over in order
		MaxOpenConns:     4,
		MaxIdleConns:     2,
		ClientInfo: ch.ClientInfo{Products: []struct {
			Name    string
			Version string
		}{{Name: "tenantguard"}}},
	}
	if cfg.Protocol == "http" {
		// ClickHouse's HTTP interface (HTTPS with TLS, as on ClickHouse
		// Cloud's port 8443): the same Native blocks, compressed alike.
		opts.Protocol = ch.HTTP
	}
	switch cfg.Compression {
	case "zstd":
		opts.Compression = &ch.Compression{Method: ch.CompressionZSTD}
	case "none":
		opts.Compression = &ch.Compression{Method: ch.CompressionNone}
	default:
		opts.Compression = &ch.Compression{Method: ch.CompressionLZ4}
	}
	if !cfg.TLS.Insecure {
		tlsCfg, err := cfg.TLS.LoadTLSConfig(ctx)
		if err != nil {
			return nil, fmt.Errorf("store.clickhouse.tls: %w", err)
		}
		opts.TLS = tlsCfg
	}
	return opts, nil
}

// check pings the server and refuses versions the schema is not written for.
func (c *Client) check(ctx context.Context) error {
	if err := c.conn.Ping(ctx); err != nil {
		return err
	}
	v, err := c.conn.ServerVersion()
	if err != nil {
		return err
	}
	if v.Version.Major < minMajor || (v.Version.Major == minMajor && v.Version.Minor < minMinor) {
		return fmt.Errorf("%w: %s %d.%d.%d; tenantguard needs %d.%d or newer", errTooOld,
			v.Name, v.Version.Major, v.Version.Minor, v.Version.Patch, minMajor, minMinor)
	}
	return nil
}

func (c *Client) redact(err error) error { return redact(err, string(c.cfg.Password)) }

// insertSettings are the settings of every insert: the batch's
// deduplication token (a re-sent batch is dropped by the server), no async
// insert (its acknowledgement and deduplication differ), and in cluster
// mode a synchronous Distributed insert, so the acknowledgement means the
// shards have the rows.
func insertSettings(token string, clustered bool) ch.Settings {
	s := ch.Settings{
		"insert_deduplicate":         1,
		"insert_deduplication_token": token,
		"async_insert":               0,
	}
	if clustered {
		s["distributed_foreground_insert"] = 1
	}
	return s
}

// chContext carries an insert's settings.
func chContext(ctx context.Context, token string, clustered bool) context.Context {
	return ch.Context(ctx, ch.WithSettings(insertSettings(token, clustered)))
}

// Write inserts the batch into tenant_leaks and its evidence spans into
// tenant_leak_spans, both with token as insert_deduplication_token. It
// implements Writer: errors are wrapped with ErrUnavailable or ErrRejected
// when the cause is known.
func (c *Client) Write(ctx context.Context, batch []store.Evidence, token string) error {
	if len(batch) == 0 {
		return nil
	}
	leaks, spans, err := encodeBatch(batch)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	ctx = chContext(ctx, token, c.cfg.Cluster != "")
	if err := c.insert(ctx, "tenant_leaks", leakColumns, leaks); err != nil {
		return fmt.Errorf("inserting %d findings into tenant_leaks: %w", len(leaks), c.redact(classify(err)))
	}
	if len(spans) > 0 {
		if err := c.insert(ctx, "tenant_leak_spans", spanColumns, spans); err != nil {
			return fmt.Errorf("inserting %d evidence spans into tenant_leak_spans: %w", len(spans), c.redact(classify(err)))
		}
	}
	return nil
}

func (c *Client) insert(ctx context.Context, table string, cols []columnDef, rows [][]any) error {
	b, err := c.conn.PrepareBatch(ctx, insertSQL(table, cols))
	if err != nil {
		return err
	}
	defer func() { _ = b.Close() }()
	for _, r := range rows {
		if err := b.Append(r...); err != nil {
			_ = b.Abort()
			return err
		}
	}
	return b.Send()
}

// Append implements store.Store: Write with a token derived from the
// batch's content, so appending the same batch twice stores it once.
func (c *Client) Append(ctx context.Context, batch []store.Evidence) error {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for i := range batch {
		if err := enc.Encode(&batch[i]); err != nil {
			return fmt.Errorf("%w: %w", ErrRejected, err)
		}
	}
	return c.Write(ctx, batch, "tenantguard-append-"+hex.EncodeToString(h.Sum(nil))[:40])
}

// Close releases the connections.
func (c *Client) Close() error { return c.conn.Close() }

// Connector is the Writer to give the shipper: it opens its Client (running
// the migrations when create_schema is on) on the first write, on the
// shipper's goroutine, and again after a failed open, so a ClickHouse that
// is down when the collector starts delays shipping, never the start.
// Connection failures are ErrUnavailable. It is safe for concurrent use.
type Connector struct {
	cfg    config.ClickHouse
	logger *zap.Logger

	mu     sync.Mutex
	client *Client
	closed bool
	// open is Open; tests replace it.
	open func(context.Context, config.ClickHouse, *zap.Logger) (*Client, error)
}

// NewConnector returns a Connector for cfg. It does not connect.
func NewConnector(cfg config.ClickHouse, logger *zap.Logger) *Connector {
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Connector{cfg: cfg, logger: logger, open: Open}
}

// Write implements Writer.
func (c *Connector) Write(ctx context.Context, batch []store.Evidence, token string) error {
	cl, err := c.get(ctx)
	if err != nil {
		return err
	}
	return cl.Write(ctx, batch, token)
}

func (c *Connector) get(ctx context.Context) (*Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, store.ErrClosed)
	}
	if c.client != nil {
		return c.client, nil
	}
	cl, err := c.open(ctx, c.cfg, c.logger)
	if err != nil {
		if !errors.Is(err, ErrUnavailable) {
			// Whatever stops the connection or the schema stops every
			// record alike: never a reason to dead-letter one.
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil, err
	}
	c.logger.Info("clickhouse: connected", zap.Strings("endpoints", c.cfg.Endpoints), zap.String("database", c.cfg.Database))
	c.client = cl
	return cl, nil
}

// Close closes the client if one was opened.
func (c *Connector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.client == nil {
		return nil
	}
	err := c.client.Close()
	c.client = nil
	return err
}
