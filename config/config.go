package config

import (
	"errors"
	"strings"
)

// Store says where evidence is kept.
type Store struct {
	// Journal is the embedded JSON-lines store, always on: with ClickHouse
	// it is the write-ahead log that the shipper reads.
	Journal Journal `mapstructure:"journal"`
	// ClickHouse is the shared leak history. Default: off.
	ClickHouse ClickHouse `mapstructure:"clickhouse"`
}

// Journal configures the embedded evidence journal.
type Journal struct {
	// Path of the journal file. Default: ./data/leaks.jsonl. The file is
	// created with mode 0600: it holds evidence of cross-tenant access.
	Path string `mapstructure:"path"`
}

// DefaultJournalPath is where the journal lives unless configured.
const DefaultJournalPath = "./data/leaks.jsonl"

// Validate names the bad field. ClickHouse validates itself: confmap.Validate,
// which the collector and the analyst commands run, visits every section.
func (s *Store) Validate() error {
	if strings.TrimSpace(s.Journal.Path) == "" {
		return errors.New("store.journal.path: must not be empty")
	}
	return nil
}
