package processor

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/store"
	"github.com/tenantguard/tenantguard/store/clickhouse"
	"github.com/tenantguard/tenantguard/store/journal"
)

// Several tenantguard instances (one per pipeline) may name the same journal;
// they share one open file so their appends never interleave mid-line, and
// one ClickHouse shipper reading it.
var journals = struct {
	sync.Mutex
	open map[string]*sharedJournal
}{open: map[string]*sharedJournal{}}

type sharedJournal struct {
	*journal.Journal
	refs int
	// With ClickHouse on, the journal is the write-ahead log: a finding is
	// on disk before anything else happens, and the shipper copies it to
	// ClickHouse exactly once, across outages and restarts.
	shipper   *clickhouse.Shipper
	connector *clickhouse.Connector
}

// shipperStopTimeout bounds shutdown's last attempt to ship; what remains
// stays in the journal and ships after the next start.
const shipperStopTimeout = 5 * time.Second

func openJournal(path string, ch config.ClickHouse, logger *zap.Logger) (*sharedJournal, error) {
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
	if ch.Enabled() {
		sj.connector = clickhouse.NewConnector(ch, logger)
		sh, err := clickhouse.NewShipper(ch, path, sj.connector, logger)
		if err != nil {
			_ = j.Close()
			return nil, err
		}
		sj.shipper = sh
		sh.Start() // ships what a previous run left behind, too
	}
	journals.open[path] = sj
	return sj, nil
}

// Append writes to the journal, then tells the shipper there is more.
func (sj *sharedJournal) Append(ctx context.Context, batch []store.Evidence) error {
	if err := sj.Journal.Append(ctx, batch); err != nil {
		return err
	}
	if sj.shipper != nil {
		sj.shipper.Wake()
	}
	return nil
}

// releaseStore closes st, or for a shared journal drops one reference.
func releaseStore(st store.Store, logger *zap.Logger) error {
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
	if sj.shipper != nil {
		ctx, cancel := context.WithTimeout(context.Background(), shipperStopTimeout)
		err := sj.shipper.Stop(ctx)
		cancel()
		switch {
		case errors.Is(err, clickhouse.ErrNotDrained):
			logger.Warn("ClickHouse has not received every finding yet; they are safe in the journal and ship after the next start",
				zap.Error(err))
		case err != nil:
			logger.Error("stopping the ClickHouse shipper", zap.Error(err))
		}
		if err := sj.connector.Close(); err != nil {
			logger.Warn("closing the ClickHouse connection", zap.Error(err))
		}
	}
	return sj.Journal.Close()
}
