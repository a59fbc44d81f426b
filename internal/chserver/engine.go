package chserver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// LibEnv names the environment variable that holds the path of libchdb.so.
const LibEnv = "CHDB_LIB_PATH"

// InstallHint says how to install the library the tests need.
const InstallHint = "install the chDB engine and point " + LibEnv + " at it:\n" +
	"  npm install --prefix ~/.cache/tenantguard/chdb-26.7.3 @chdb/lib-linux-x64-gnu@26.7.3-stable.1\n" +
	"  export " + LibEnv + "=~/.cache/tenantguard/chdb-26.7.3/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so"

// The C API of libchdb (chdb.h), bound without cgo.
type api struct {
	connect       func(argc int32, argv **byte) *unsafe.Pointer // chdb_connection*
	closeConn     func(conn *unsafe.Pointer)
	queryParams   func(conn unsafe.Pointer, query *byte, queryLen uintptr, format *byte, formatLen uintptr, names **byte, nameLens *uintptr, values **byte, valueLens *uintptr, count uintptr) unsafe.Pointer
	resultBuffer  func(res unsafe.Pointer) unsafe.Pointer
	resultLength  func(res unsafe.Pointer) uintptr
	resultError   func(res unsafe.Pointer) unsafe.Pointer
	destroyResult func(res unsafe.Pointer)
	streamInsert  func(conn unsafe.Pointer, query *byte, queryLen uintptr, format *byte, formatLen uintptr) unsafe.Pointer
	streamAppend  func(stream unsafe.Pointer, data *byte, n uintptr) int32
	streamDone    func(stream unsafe.Pointer) unsafe.Pointer
	streamError   func(stream unsafe.Pointer) unsafe.Pointer
	destroyStream func(stream unsafe.Pointer)
}

// Engine is the chDB engine of this process.
type Engine struct {
	api  api
	path string
	// keep is a connection held open for the life of the process: closing
	// the last connection shuts the engine down, and it cannot boot again.
	keep *unsafe.Pointer
	// mu serialises the engine's work: one statement at a time keeps the
	// memory peak of the test process low.
	mu sync.Mutex
}

var shared struct {
	once sync.Once
	e    *Engine
	err  error
}

// Shared returns the process's engine, booting it on first use from the
// library at $CHDB_LIB_PATH, with its data in a new temporary directory.
// It fails, with InstallHint, when the variable is unset.
func Shared() (*Engine, error) {
	shared.once.Do(func() {
		lib := os.Getenv(LibEnv)
		if lib == "" {
			shared.err = errors.New(LibEnv + " is not set; " + InstallHint)
			return
		}
		shared.e, shared.err = boot(lib)
	})
	return shared.e, shared.err
}

const dataPrefix = "tenantguard-chdb-"

func boot(lib string) (*Engine, error) {
	h, err := purego.Dlopen(lib, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("loading chDB from %s=%s: %w; %s", LibEnv, lib, err, InstallHint)
	}
	e := &Engine{}
	for name, fn := range map[string]any{
		"chdb_connect": &e.api.connect, "chdb_close_conn": &e.api.closeConn,
		"chdb_query_with_params_n": &e.api.queryParams,
		"chdb_result_buffer":       &e.api.resultBuffer, "chdb_result_length": &e.api.resultLength,
		"chdb_result_error": &e.api.resultError, "chdb_destroy_query_result": &e.api.destroyResult,
		"chdb_stream_insert_n": &e.api.streamInsert, "chdb_stream_append": &e.api.streamAppend,
		"chdb_stream_done": &e.api.streamDone, "chdb_stream_insert_error": &e.api.streamError,
		"chdb_destroy_insert_stream": &e.api.destroyStream,
	} {
		if _, err := purego.Dlsym(h, name); err != nil {
			return nil, fmt.Errorf("%s=%s lacks %s (chDB 26.7 or newer is needed): %w", LibEnv, lib, name, err)
		}
		purego.RegisterLibFunc(fn, h, name)
	}
	sweepDataDirs()
	e.path, err = os.MkdirTemp("", dataPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, err
	}
	e.keep, err = e.connect(nil)
	if err != nil {
		return nil, fmt.Errorf("booting chDB on %s: %w", e.path, err)
	}
	return e, nil
}

// sweepDataDirs removes the data directories of test processes that have
// exited: a process cannot remove its own at exit (the engine runs until
// then).
func sweepDataDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dataPrefix+"*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(filepath.Base(d), dataPrefix), "-", 2)[0])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); errors.Is(err, os.ErrNotExist) {
			_ = os.RemoveAll(d)
		}
	}
}

// cstr returns s as a NUL-terminated C string in Go memory (Go's heap does
// not move; the caller keeps it alive across the call).
func cstr(s string) *byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return &b[0]
}

func ptr(b []byte) *byte {
	if len(b) == 0 {
		return nil
	}
	return &b[0]
}

// connect opens a chDB connection with the given settings
// (--name=value), which apply to this connection only.
func (e *Engine) connect(settings []string) (*unsafe.Pointer, error) {
	args := append([]string{"clickhouse", "--path=" + e.path}, settings...)
	argv := make([]*byte, len(args)+1)
	for i, a := range args {
		argv[i] = cstr(a)
	}
	conn := e.api.connect(int32(len(args)), &argv[0])
	runtime.KeepAlive(argv)
	if conn == nil || *conn == nil {
		return nil, &Exception{Code: 1001, Message: "chDB refused the connection (a setting it does not know?): " + strings.Join(settings, " ")}
	}
	return conn, nil
}

func (e *Engine) close(conn *unsafe.Pointer) { e.api.closeConn(conn) }

// Exception is an error of the engine, with ClickHouse's error code.
type Exception struct {
	Code    int
	Message string // "DB::Exception: ..." as the server writes it
}

func (x *Exception) Error() string { return fmt.Sprintf("Code: %d. %s", x.Code, x.Message) }

var codeRE = regexp.MustCompile(`^Code: (\d+)\. `)

func exception(msg string) *Exception {
	msg = strings.TrimSpace(msg)
	if m := codeRE.FindStringSubmatch(msg); m != nil {
		code, _ := strconv.Atoi(m[1])
		return &Exception{Code: code, Message: strings.TrimPrefix(msg, m[0])}
	}
	return &Exception{Code: 1001, Message: "DB::Exception: " + msg} // STD_EXCEPTION
}

func gostring(p unsafe.Pointer) string {
	if p == nil {
		return ""
	}
	var n int
	for *(*byte)(unsafe.Add(p, n)) != 0 {
		n++
	}
	return string(unsafe.Slice((*byte)(p), n))
}

// result copies a chdb_result's data (or error) and destroys it.
func (e *Engine) result(res unsafe.Pointer) ([]byte, error) {
	if res == nil {
		return nil, &Exception{Code: 1001, Message: "DB::Exception: chDB returned no result"}
	}
	defer e.api.destroyResult(res)
	if p := e.api.resultError(res); p != nil {
		if msg := gostring(p); msg != "" {
			return nil, exception(msg)
		}
	}
	n := e.api.resultLength(res)
	buf := e.api.resultBuffer(res)
	if n == 0 || buf == nil {
		return nil, nil
	}
	return append([]byte(nil), unsafe.Slice((*byte)(buf), n)...), nil
}

// Query runs one statement on a fresh connection with the given settings
// (name to value), in database db (if not empty), binding params to its
// {name:Type} placeholders, and returns its output in format.
func (e *Engine) Query(db string, settings map[string]string, query, format string, params map[string]string) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	conn, err := e.session(db, settings)
	if err != nil {
		return nil, err
	}
	defer e.close(conn)
	return e.query(conn, query, format, params)
}

// Insert runs an INSERT (without its FORMAT clause) with data in format on
// a fresh connection.
func (e *Engine) Insert(db string, settings map[string]string, insert, format string, data []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	conn, err := e.session(db, settings)
	if err != nil {
		return err
	}
	defer e.close(conn)
	q, f := []byte(insert), []byte(format)
	stream := e.api.streamInsert(*conn, ptr(q), uintptr(len(q)), ptr(f), uintptr(len(f)))
	runtime.KeepAlive(q)
	runtime.KeepAlive(f)
	if stream == nil {
		return &Exception{Code: 1001, Message: "DB::Exception: chDB could not start the insert"}
	}
	defer e.api.destroyStream(stream)
	if msg := gostring(e.api.streamError(stream)); msg != "" {
		return exception(msg)
	}
	if len(data) > 0 {
		rc := e.api.streamAppend(stream, ptr(data), uintptr(len(data)))
		runtime.KeepAlive(data)
		if rc != 0 {
			if msg := gostring(e.api.streamError(stream)); msg != "" {
				return exception(msg)
			}
			return &Exception{Code: 1001, Message: "DB::Exception: chDB refused the insert data"}
		}
	}
	_, err = e.result(e.api.streamDone(stream))
	if err == nil {
		if msg := gostring(e.api.streamError(stream)); msg != "" {
			return exception(msg)
		}
	}
	return err
}

func (e *Engine) session(db string, settings map[string]string) (*unsafe.Pointer, error) {
	if e.keep == nil {
		return nil, &Exception{Code: 1001, Message: "DB::Exception: the engine was shut down"}
	}
	args := make([]string, 0, len(settings))
	for k, v := range settings {
		args = append(args, "--"+k+"="+v)
	}
	conn, err := e.connect(args)
	if err != nil {
		return nil, err
	}
	if db != "" {
		if _, err := e.query(conn, "USE "+quoteIdent(db), "Native", nil); err != nil {
			e.close(conn)
			return nil, err
		}
	}
	return conn, nil
}

func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "`", "\\`") + "`"
}

func (e *Engine) query(conn *unsafe.Pointer, query, format string, params map[string]string) ([]byte, error) {
	q, f := []byte(query), []byte(format)
	var (
		names, values []*byte
		nameLens      []uintptr
		valueLens     []uintptr
		keep          [][]byte
	)
	for k, v := range params {
		kb, vb := []byte(k+"\x00"), []byte(v+"\x00")
		keep = append(keep, kb, vb)
		names, values = append(names, &kb[0]), append(values, &vb[0])
		nameLens, valueLens = append(nameLens, uintptr(len(k))), append(valueLens, uintptr(len(v)))
	}
	var np, vp **byte
	var nl, vl *uintptr
	if len(names) > 0 {
		np, vp, nl, vl = &names[0], &values[0], &nameLens[0], &valueLens[0]
	}
	res := e.api.queryParams(*conn, ptr(q), uintptr(len(q)), ptr(f), uintptr(len(f)),
		np, nl, vp, vl, uintptr(len(names)))
	runtime.KeepAlive(q)
	runtime.KeepAlive(f)
	runtime.KeepAlive(keep)
	runtime.KeepAlive(names)
	runtime.KeepAlive(values)
	runtime.KeepAlive(nameLens)
	runtime.KeepAlive(valueLens)
	return e.result(res)
}

// Shutdown stops the process's engine, if it booted, and removes its data.
// Call it at the end of TestMain: an engine still running when the process
// exits can crash in its own teardown (seen under the race detector, whose
// exit runs the library's destructors). The engine cannot boot again.
func Shutdown() {
	e := shared.e
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.keep != nil {
		e.close(e.keep)
		e.keep = nil
		_ = os.RemoveAll(e.path)
	}
}
