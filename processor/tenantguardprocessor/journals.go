package tenantguardprocessor

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/internal/sharedcomponent"
	"github.com/tenantguard/tenantguard/store"
	"github.com/tenantguard/tenantguard/store/clickhouse"
	"github.com/tenantguard/tenantguard/store/journal"
)

// Several tenantguard instances (one per pipeline) may name the same journal;
// they share one open file so their appends never interleave mid-line, and
// one ClickHouse shipper reading it. The factory owns the map that counts
// who holds it (shared.journals).
type sharedJournal struct {
	*journal.Journal
	// With ClickHouse on, the journal is the write-ahead log: a finding is
	// on disk before anything else happens, and the shipper copies it to
	// ClickHouse exactly once, across outages and restarts.
	shipper   *clickhouse.Shipper
	connector *clickhouse.Connector
	// coverage ships the coverage file next to the journal to
	// tenant_coverage, from its own cursor, through the same connection.
	coverage *clickhouse.CoverageShipper
}

// shipperStopTimeout bounds shutdown's last attempt to ship; what remains
// stays in the journal and ships after the next start.
const shipperStopTimeout = 5 * time.Second

// openJournal opens the journal at path (and its shipper, with ClickHouse
// on), or shares the one journals already holds.
func openJournal(journals *sharedcomponent.Map[string, *sharedJournal], path string, ch config.ClickHouse, logger *zap.Logger) (*sharedJournal, error) {
	return journals.Acquire(path, func() (*sharedJournal, error) {
		j, err := journal.Open(path)
		if err != nil {
			return nil, err
		}
		sj := &sharedJournal{Journal: j}
		if ch.Enabled() {
			sj.connector = clickhouse.NewConnector(ch, logger)
			sh, err := clickhouse.NewShipper(ch, path, sj.connector, logger)
			if err != nil {
				_ = j.Close()
				return nil, err
			}
			cov, err := clickhouse.NewCoverageShipper(ch, path, sj.connector, logger)
			if err != nil {
				_ = j.Close()
				_ = sh.Stop(context.Background()) // never started: releases the journal path
				return nil, err
			}
			sj.shipper, sj.coverage = sh, cov
			sh.Start() // ships what a previous run left behind, too
			cov.Start()
		}
		return sj, nil
	})
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

// coverageWritten tells the coverage shipper the coverage file grew.
func (sj *sharedJournal) coverageWritten() {
	if sj.coverage != nil {
		sj.coverage.Wake()
	}
}

// releaseStore closes st, or for a shared journal drops one holder: the
// last one stops the shipper and closes the file.
func releaseStore(journals *sharedcomponent.Map[string, *sharedJournal], st store.Store, logger *zap.Logger) error {
	sj, ok := st.(*sharedJournal)
	if !ok {
		return st.Close()
	}
	return journals.Release(sj.Path(), func(sj *sharedJournal) error { return sj.close(logger) })
}

// close stops the shippers, shipping what they can first (both within
// shipperStopTimeout), then closes the file. Coverage records written after
// this (the last hour, at shutdown) ship after the next start.
func (sj *sharedJournal) close(logger *zap.Logger) error {
	if sj.shipper != nil {
		ctx, cancel := context.WithTimeout(context.Background(), shipperStopTimeout)
		errs := make(chan error, 1)
		go func() { errs <- sj.coverage.Stop(ctx) }()
		err := sj.shipper.Stop(ctx)
		cerr := <-errs
		cancel()
		switch {
		case errors.Is(err, clickhouse.ErrNotDrained):
			logger.Warn("ClickHouse has not received every finding yet; they are safe in the journal and ship after the next start",
				zap.Error(err))
		case err != nil:
			logger.Error("stopping the ClickHouse shipper", zap.Error(err))
		}
		switch {
		case errors.Is(cerr, clickhouse.ErrNotDrained):
			logger.Warn("ClickHouse has not received every coverage record yet; they are safe in the coverage file and ship after the next start",
				zap.Error(cerr))
		case cerr != nil:
			logger.Error("stopping the ClickHouse coverage shipper", zap.Error(cerr))
		}
		if err := sj.connector.Close(); err != nil {
			logger.Warn("closing the ClickHouse connection", zap.Error(err))
		}
	}
	return sj.Journal.Close()
}
