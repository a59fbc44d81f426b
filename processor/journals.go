package processor

import (
	"sync"

	"github.com/tenantguard/tenantguard/store"
	"github.com/tenantguard/tenantguard/store/journal"
)

// Several tenantguard instances (one per pipeline) may name the same journal;
// they share one open file so their appends never interleave mid-line.
var journals = struct {
	sync.Mutex
	open map[string]*sharedJournal
}{open: map[string]*sharedJournal{}}

type sharedJournal struct {
	*journal.Journal
	refs int
}

func openJournal(path string) (store.Store, error) {
	journals.Lock()
	defer journals.Unlock()
	if sj, ok := journals.open[path]; ok {
		sj.refs++
		return sj, nil
	}
	j, err := journal.Open(path)
	if err != nil {
		return nil, err
	}
	sj := &sharedJournal{Journal: j, refs: 1}
	journals.open[path] = sj
	return sj, nil
}

// releaseStore closes st, or for a shared journal drops one reference.
func releaseStore(st store.Store) error {
	sj, ok := st.(*sharedJournal)
	if !ok {
		return st.Close()
	}
	journals.Lock()
	defer journals.Unlock()
	sj.refs--
	if sj.refs > 0 {
		return nil
	}
	delete(journals.open, sj.Path())
	return sj.Journal.Close()
}
