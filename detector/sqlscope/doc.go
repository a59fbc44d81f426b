// Package sqlscope decides whether SQL statements against tenant-scoped
// tables filter on the tenant column: the analysis behind the detector's
// unscoped_query rule. It reads text only (no database, no schema), imports
// nothing of this project, and is split as a reader would look for it: the
// API and name matching (sqlscope.go), the bounded cache of answers by
// statement text (cache.go), the lexer (lexer.go, keywords.go),
// the statement model (statement.go, from.go) and the scope checks
// (conditions.go). What counts as a predicate is documented on Scope.
package sqlscope
