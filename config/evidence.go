package config

import (
	"errors"
	"fmt"

	"go.opentelemetry.io/collector/config/configopaque"
)

// EvidenceAttributes says what of an evidence span's own attributes is
// kept with a finding. Evidence proves that one customer saw another's
// data; stored in clear it would be a second copy of that leak, so values
// outside the clear list are kept only as keyed digests: equal values give
// equal digests, which lets analysts correlate findings without seeing the
// values, and without the key nobody can test a guess against them.
type EvidenceAttributes struct {
	// Enabled records evidence spans' kind, timing, status and attributes.
	// Default: true.
	Enabled bool `mapstructure:"enabled"`
	// Clear lists the attribute keys whose values are kept as they are;
	// the tenant attributes always are (tenant ids are the point of the
	// evidence). Setting it replaces the default list.
	// Default: DefaultClearAttributes.
	Clear []string `mapstructure:"clear"`
	// HMACKey keys the HMAC-SHA256 digests stored for every other value;
	// use ${env:TENANTGUARD_EVIDENCE_HMAC_KEY}. Without a key, those values
	// are stored as RedactedValue. Default: none.
	HMACKey configopaque.String `mapstructure:"hmac_key"`
	// MaxPerSpan caps the attributes kept per evidence span. Default: 32.
	MaxPerSpan int `mapstructure:"max_per_span"`
}

// RedactedValue stands for an attribute value that was not kept.
const RedactedValue = "[redacted]"

// MinHMACKeyBytes is the shortest evidence key accepted: a short key can be
// brute-forced from one digest of a guessable value.
const MinHMACKeyBytes = 16

// DefaultClearAttributes are attributes whose values describe the
// operation, not the customer's data: methods, routes (templated), status
// codes, systems and operation names. Paths, query text, URLs, addresses
// and user ids are not among them.
func DefaultClearAttributes() []string {
	return []string{
		"http.request.method", "http.method", "http.route",
		"http.response.status_code", "http.status_code",
		"rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code",
		"db.system.name", "db.system", "db.operation.name", "db.operation",
		"db.collection.name", "db.sql.table",
		"messaging.system", "messaging.operation.name", "messaging.operation", "messaging.destination.name",
		"error.type",
	}
}

// DefaultEvidenceAttributes returns the defaults: on, digests when a key is
// configured.
func DefaultEvidenceAttributes() EvidenceAttributes {
	return EvidenceAttributes{Enabled: true, Clear: DefaultClearAttributes(), MaxPerSpan: 32}
}

// Validate names the bad field; it never prints the key.
func (e EvidenceAttributes) Validate() error {
	var errs []error
	if n := len(e.HMACKey); n > 0 && n < MinHMACKeyBytes {
		errs = append(errs, fmt.Errorf("evidence_attributes.hmac_key: %d bytes is too short; use at least %d random bytes (32 recommended)", n, MinHMACKeyBytes))
	}
	if e.MaxPerSpan < 0 {
		errs = append(errs, fmt.Errorf("evidence_attributes.max_per_span: must not be negative, got %d", e.MaxPerSpan))
	}
	return errors.Join(errs...)
}
