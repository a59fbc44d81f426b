package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
)

var (
	// ErrUnavailable marks a failure of the server or the way to it: nothing
	// listens, a timeout, a lost connection, failed authentication, a missing
	// table, a server too busy or out of space. Nothing is wrong with the
	// data; the shipper retries with backoff for as long as it lasts and
	// never dead-letters a record for it.
	ErrUnavailable = errors.New("clickhouse unavailable")
	// ErrRejected marks data that cannot be written: it does not encode
	// (*RecordError) or the server refused it (a type or constraint error).
	// Re-sending it unchanged fails the same way, so the shipper bisects the
	// batch and moves the poison record to the dead-letter file.
	ErrRejected = errors.New("rejected by clickhouse")
	// ErrNotFound is returned by Show for an unknown leak id.
	ErrNotFound = errors.New("no such finding")
)

// Server error codes (ClickHouse src/Common/ErrorCodes.cpp) that mean the
// data itself was refused.
var rejectedCodes = map[int32]bool{
	6:   true, // CANNOT_PARSE_TEXT
	19:  true, // SIZE_OF_FIXED_STRING_DOESNT_MATCH
	26:  true, // CANNOT_PARSE_QUOTED_STRING
	27:  true, // CANNOT_PARSE_INPUT_ASSERTION_FAILED
	38:  true, // CANNOT_PARSE_DATE
	41:  true, // CANNOT_PARSE_DATETIME
	53:  true, // TYPE_MISMATCH
	69:  true, // ARGUMENT_OUT_OF_BOUND
	70:  true, // CANNOT_CONVERT_TYPE
	72:  true, // CANNOT_PARSE_NUMBER
	117: true, // INCORRECT_DATA
	128: true, // TOO_LARGE_ARRAY_SIZE
	131: true, // TOO_LARGE_STRING_SIZE
	190: true, // SIZES_OF_ARRAYS_DOESNT_MATCH
	321: true, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
	349: true, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
	366: true, // SIZES_OF_NESTED_COLUMNS_ARE_INCONSISTENT
	467: true, // CANNOT_PARSE_BOOL
	469: true, // VIOLATED_CONSTRAINT
}

// Server error codes that say the server, the schema or the account cannot
// take any insert right now, whatever the data: retried without limit.
var unavailableCodes = map[int32]bool{
	8:   true, // THERE_IS_NO_COLUMN (schema older than this collector: run the migrations)
	16:  true, // NO_SUCH_COLUMN_IN_TABLE
	47:  true, // UNKNOWN_IDENTIFIER
	60:  true, // UNKNOWN_TABLE
	81:  true, // UNKNOWN_DATABASE
	115: true, // UNKNOWN_SETTING (server too old)
	159: true, // TIMEOUT_EXCEEDED
	164: true, // READONLY
	173: true, // CANNOT_ALLOCATE_MEMORY
	192: true, // UNKNOWN_USER
	193: true, // WRONG_PASSWORD
	194: true, // REQUIRED_PASSWORD
	195: true, // IP_ADDRESS_NOT_ALLOWED
	201: true, // QUOTA_EXCEEDED
	202: true, // TOO_MANY_SIMULTANEOUS_QUERIES
	203: true, // NO_FREE_CONNECTION
	209: true, // SOCKET_TIMEOUT
	210: true, // NETWORK_ERROR
	218: true, // TABLE_IS_DROPPED
	225: true, // NO_ZOOKEEPER
	236: true, // ABORTED
	241: true, // MEMORY_LIMIT_EXCEEDED
	242: true, // TABLE_IS_READ_ONLY
	243: true, // NOT_ENOUGH_SPACE
	252: true, // TOO_MANY_PARTS
	254: true, // NO_ACTIVE_REPLICAS
	279: true, // ALL_CONNECTION_TRIES_FAILED
	285: true, // TOO_FEW_LIVE_REPLICAS
	286: true, // UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
	291: true, // DATABASE_ACCESS_DENIED
	319: true, // UNKNOWN_STATUS_OF_INSERT
	394: true, // QUERY_WAS_CANCELLED
	497: true, // ACCESS_DENIED
	516: true, // AUTHENTICATION_FAILED
	519: true, // NO_REMOTE_SHARD_AVAILABLE
	999: true, // KEEPER_EXCEPTION
}

// HTTP statuses without a server exception that mean the way to the
// server is blocked for now, whatever the data.
var unavailableStatus = map[int]bool{
	401: true, 403: true, 407: true, 408: true, 429: true, 502: true, 503: true, 504: true,
}

// classify wraps a write error with ErrUnavailable or ErrRejected when it
// can tell; other errors are returned as they are and the shipper counts
// them against max_attempts.
func classify(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRejected) {
		return err
	}
	var (
		exc     *ch.Exception
		httpErr *ch.HTTPError
		recErr  *RecordError
		convErr *column.ColumnConverterError
		colErr  *column.Error
		netErr  net.Error
	)
	switch {
	case errors.As(err, &exc):
		switch {
		case rejectedCodes[exc.Code]:
			return fmt.Errorf("%w: %w", ErrRejected, err)
		case unavailableCodes[exc.Code]:
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	case errors.As(err, &httpErr) && unavailableStatus[httpErr.StatusCode]:
		// Over HTTP, something in front of the server answered (a load
		// balancer, ClickHouse Cloud's proxy while the service wakes up).
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	case errors.As(err, &recErr), errors.As(err, &convErr), errors.As(err, &colErr):
		return fmt.Errorf("%w: %w", ErrRejected, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, ch.ErrAcquireConnTimeout), errors.Is(err, ch.ErrConnectionClosed),
		errors.Is(err, ch.ErrAcquireConnNoAddress), errors.Is(err, errTooOld):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// exceptionCode returns the server error code in err, or 0.
func exceptionCode(err error) int32 {
	var exc *ch.Exception
	if errors.As(err, &exc) {
		return exc.Code
	}
	return 0
}

// redacted keeps an error's chain (errors.Is and As still work) but never
// prints the secret, whatever the driver or server put in the message.
type redacted struct {
	err    error
	secret string
}

func (r *redacted) Error() string {
	return strings.ReplaceAll(r.err.Error(), r.secret, "[REDACTED]")
}

func (r *redacted) Unwrap() error { return r.err }

func redact(err error, secret string) error {
	if err == nil || secret == "" {
		return err
	}
	return &redacted{err: err, secret: secret}
}
