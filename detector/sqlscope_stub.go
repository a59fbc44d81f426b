package detector

// Temporary stand-in until sqlscope.go lands; removed at merge.
type SQLScope struct{}

func NewSQLScope(tables []string, column string) (*SQLScope, error) { return &SQLScope{}, nil }
func (s *SQLScope) Unscoped(query string) []string                  { return nil }
