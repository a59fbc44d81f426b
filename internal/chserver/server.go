package chserver

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/ch-go/compress"
	chproto "github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
)

// Server is ClickHouse's HTTP interface over an Engine, on a loopback port.
type Server struct {
	e   *Engine
	ln  net.Listener
	srv *http.Server

	mu      sync.Mutex
	fault   func(query string, data []byte) *Exception
	certPEM []byte
}

// InjectFault makes the server answer a request with the exception f
// returns for its statement and (decompressed) data, as ClickHouse answers
// a failed statement, instead of running it; f returning nil runs it. It is
// how a test makes the engine fail the way a server does (an error code the
// collector has never seen, a record refused). nil removes the fault.
func (s *Server) InjectFault(f func(query string, data []byte) *Exception) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// Serve starts a server for e on 127.0.0.1 (a free port).
func (e *Engine) Serve() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{e: e, ln: ln}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// ServeTLS is Serve over HTTPS, with a new self-signed certificate for
// 127.0.0.1 (CertPEM): what a client's TLS settings are checked against.
func (e *Engine) ServeTLS() (*Server, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "chserver"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	s := &Server{e: e, ln: tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})}
	s.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(s.ln) }()
	return s, nil
}

// CertPEM is the certificate of a ServeTLS server (nil for Serve).
func (s *Server) CertPEM() []byte { return s.certPEM }

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server; the engine runs on.
func (s *Server) Close() error { return s.srv.Close() }

// URL parameters of the HTTP interface that are not settings.
var notSettings = map[string]bool{
	"query": true, "database": true, "default_format": true, "client_protocol_version": true,
	"compress": true, "decompress": true, "query_id": true, "quota_key": true, "user": true,
	"password": true, "session_id": true, "session_timeout": true, "session_check": true,
	"enable_http_compression": true, "wait_end_of_query": true, "buffer_size": true,
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ping" || (r.URL.Path == "/" && r.Method == http.MethodGet && r.URL.Query().Get("query") == "") {
		_, _ = io.WriteString(w, "Ok.\n")
		return
	}
	if r.URL.Path != "/" {
		fail(w, &Exception{Code: 1001, Message: "DB::Exception: no handler for " + r.URL.Path}, http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	settings, params := map[string]string{}, map[string]string{}
	for k, vs := range q {
		switch {
		case strings.HasPrefix(k, "param_"):
			params[strings.TrimPrefix(k, "param_")] = vs[0]
		case !notSettings[k]:
			settings[k] = vs[0]
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		// A request cut short never runs: a half-sent insert stores nothing.
		fail(w, &Exception{Code: 1000, Message: "DB::Exception: reading the request: " + err.Error()}, http.StatusBadRequest)
		return
	}
	query := q.Get("query")
	var data []byte
	if query == "" {
		query = string(body)
	} else {
		data = body
	}
	if q.Get("decompress") == "1" && len(data) > 0 {
		if data, err = decompress(data); err != nil {
			fail(w, &Exception{Code: 271, Message: "DB::Exception: cannot decompress the request body: " + err.Error() + " (CANNOT_DECOMPRESS)"}, http.StatusInternalServerError)
			return
		}
	}
	s.mu.Lock()
	fault := s.fault
	s.mu.Unlock()
	if fault != nil {
		if x := fault(query, data); x != nil {
			fail(w, x, http.StatusInternalServerError)
			return
		}
	}
	db := q.Get("database")
	if insert, format, ok := splitInsert(query); ok && data != nil {
		if err := s.e.Insert(db, settings, insert, format, data); err != nil {
			fail(w, err, http.StatusInternalServerError)
		}
		return
	}
	format := q.Get("default_format")
	if format == "" {
		format = "TabSeparated"
	}
	out, err := s.e.Query(db, settings, query, format, params)
	if err != nil {
		fail(w, err, http.StatusInternalServerError)
		return
	}
	if format == "Native" && len(out) > 0 {
		rev, _ := strconv.ParseUint(q.Get("client_protocol_version"), 10, 64)
		if out, err = reencode(out, rev); err != nil {
			fail(w, &Exception{Code: 1001, Message: "DB::Exception: re-encoding the result for the client: " + err.Error()}, http.StatusInternalServerError)
			return
		}
		if q.Get("compress") == "1" {
			method := compress.LZ4
			if strings.EqualFold(settings["network_compression_method"], "ZSTD") {
				method = compress.ZSTD
			}
			cw := compress.NewWriter(compress.LevelZero, method)
			if err := cw.Compress(out); err != nil {
				fail(w, &Exception{Code: 1001, Message: "DB::Exception: compressing the result: " + err.Error()}, http.StatusInternalServerError)
				return
			}
			out = cw.Data
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	_, _ = w.Write(out)
}

var insertRE = regexp.MustCompile(`(?is)^\s*(INSERT\s+INTO\s+.*?)\s+FORMAT\s+(\w+)\s*$`)

// splitInsert splits "INSERT INTO t (...) FORMAT F" into the statement and F.
func splitInsert(query string) (insert, format string, ok bool) {
	m := insertRE.FindStringSubmatch(query)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// reencode decodes the Native blocks chDB wrote (protocol revision 0) and
// encodes them for a client of revision rev.
func reencode(native []byte, rev uint64) ([]byte, error) {
	if rev == 0 {
		return native, nil
	}
	rd := chproto.NewReader(bufio.NewReader(bytes.NewReader(native)))
	sc := &column.ServerContext{Revision: rev, Timezone: time.UTC}
	var out chproto.Buffer
	for {
		b := proto.Block{ServerContext: sc}
		if err := b.Decode(rd, 0); err != nil {
			if errors.Is(err, io.EOF) {
				return out.Buf, nil
			}
			return nil, err
		}
		if err := b.Encode(&out, rev); err != nil {
			return nil, err
		}
	}
}

// fail answers as ClickHouse does: the code in a header, the exception text
// in the body.
func fail(w http.ResponseWriter, err error, status int) {
	var x *Exception
	if !errors.As(err, &x) {
		x = &Exception{Code: 1001, Message: "DB::Exception: " + err.Error()}
	}
	w.Header().Set("X-ClickHouse-Exception-Code", strconv.Itoa(x.Code))
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "Code: %d. %s\n", x.Code, x.Message)
}

// decompress reads ClickHouse compressed blocks to their end.
func decompress(data []byte) ([]byte, error) {
	var out bytes.Buffer
	_, err := io.Copy(&out, compress.NewReader(bytes.NewReader(data)))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return out.Bytes(), nil
}
