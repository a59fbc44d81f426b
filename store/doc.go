// Package store keeps evidence: the record of every finding, version by
// version, so that analysts and auditors can prove what crossed which tenant
// boundary and when. Evidence is the stored form of a finding, the one record
// every output renders: NewEvidence builds it from a detector finding and
// Message tells it in one sentence, and AppendJSON writes it as the
// journal's line. Store is what every backend implements. The embedded
// default is the JSON-lines journal in store/journal; ClickHouse builds on the
// same interface.
package store
