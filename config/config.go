package config

import (
	"errors"
	"strings"
)

// Store says where evidence is kept.
type Store struct {
	// Journal is the embedded JSON-lines store, on by default.
	Journal Journal `mapstructure:"journal"`
}

// Journal configures the embedded evidence journal.
type Journal struct {
	// Path of the journal file. Default: ./data/leaks.jsonl. The file is
	// created with mode 0600: it holds evidence of cross-tenant access.
	Path string `mapstructure:"path"`
}

// DefaultJournalPath is where the journal lives unless configured.
const DefaultJournalPath = "./data/leaks.jsonl"

// Validate names the bad field.
func (s *Store) Validate() error {
	if strings.TrimSpace(s.Journal.Path) == "" {
		return errors.New("store.journal.path: must not be empty")
	}
	return nil
}

// Alerts says who is told about findings.
type Alerts struct {
	// Log writes each finding to the collector's log. Default: true.
	Log LogAlerts `mapstructure:"log"`
}

// LogAlerts configures the log notifier.
type LogAlerts struct {
	Enabled bool `mapstructure:"enabled"`
}
