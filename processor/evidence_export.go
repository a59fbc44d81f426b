package processor

import (
	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

// Evidence converts a finding into its stored form exactly as the processor
// records it, naming instance as the collector. Offline tools (`tenantguard
// scan`) use it so that their reports carry the journal's fields.
func Evidence(f *detector.Finding, instance string) store.Evidence { return toEvidence(f, instance) }
