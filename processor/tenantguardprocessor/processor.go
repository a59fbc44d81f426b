package tenantguardprocessor

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.uber.org/zap"

	"github.com/tenantguard/tenantguard/alerts"
	"github.com/tenantguard/tenantguard/config"
	"github.com/tenantguard/tenantguard/detector"
	"github.com/tenantguard/tenantguard/store"
)

// Backoff bounds for a store that refuses writes (full disk, dead backend).
const (
	storeRetryMin = 100 * time.Millisecond
	storeRetryMax = 30 * time.Second
	shutdownTries = 5
	shutdownRetry = 200 * time.Millisecond
)

type tenantguard struct {
	id       string  // component id, the `processor` label of every metric
	shared   *shared // what this factory's processors share
	cfg      *Config
	logger   *zap.Logger
	det      *detector.Detector
	extract  *Extractor
	redactor *evidenceRedactor // nil: evidence spans keep no details
	queue    *evidenceQueue    // findings on their way to the journal
	acks     durableAcks       // requests waiting for their findings to be durable
	flights  flights           // requests in flight, for those whose spans others judged
	// reading are the requests being read, until they have raised
	// everything: the evidence worker waits for them (linger).
	reading   flights
	lingerMax time.Duration // bounds that wait: lingerMax unless a test changes it
	lingered  chan struct{} // the evidence worker's, signalled by reading.land
	requests  sync.Pool     // *requestState
	// storeHealthy is set while the last store write (or open) succeeded:
	// requests wait for durability only then.
	storeHealthy atomic.Bool
	alertQueue   *evidenceQueue // findings on their way to the notifiers
	notifiers    []alerts.Notifier
	slack        *alerts.SlackNotifier
	coverage     *coverageLog // nil: coverage is not counted

	// openStore is how the worker gets its store; tests swap it to inject faults.
	openStore func() (store.Store, error)
	journal   atomic.Pointer[sharedJournal] // for status: the ClickHouse shipper's backlog

	invalidSpans   atomic.Uint64
	queueFull      atomic.Uint64
	heldForOthers  atomic.Uint64 // requests that waited for the requests in flight with them (answer)
	storeFailures  atomic.Uint64 // failed opens and writes of the journal
	journalWrites  atomic.Uint64 // batches the journal took
	stored         atomic.Uint64
	lastStored     atomic.Int64 // unix nanoseconds of the last successful store write
	lostAtShutdown atomic.Uint64

	stop    chan struct{}
	done    sync.WaitGroup
	stopped bool
}

func newTenantguard(set processor.Settings, cfg *Config, sh *shared) (*tenantguard, error) {
	p := &tenantguard{
		id:     set.ID.String(),
		shared: sh,
		cfg:    cfg,
		logger: set.Logger,
		queue:  newEvidenceQueue(cfg.QueueSize),
		stop:   make(chan struct{}),
	}
	p.alertQueue = newEvidenceQueue(cfg.QueueSize)
	p.lingerMax, p.lingered = lingerMax, make(chan struct{}, 1)
	p.requests.New = p.newRequest
	det, ex, err := newDetector(cfg, nil, p.onFinding, set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	p.det, p.extract = det, ex
	p.coverage = newCoverageLog(cfg, set.Logger)
	p.redactor = newEvidenceRedactor(cfg.EvidenceAttributes, cfg.TenantAttributes)
	path := cfg.Store.Journal.Path
	p.openStore = func() (store.Store, error) {
		sj, err := openJournal(&sh.journals, path, cfg.Store.ClickHouse, set.Logger)
		if err != nil {
			return nil, err
		}
		p.journal.Store(sj)
		return sj, nil
	}
	if cfg.Alerts.Log.Enabled {
		p.notifiers = append(p.notifiers, alerts.NewLogNotifier(set.Logger))
	}
	return p, nil
}

// onFinding is the detector's sink. The detector calls it with no shard
// locked, from the goroutine that raised the finding (a request's, after
// requestState.see; the sweeper's; shutdown's Flush). It only enqueues, so
// that the request is not held up: on the alert queue, so that people hear
// of the finding whatever the journal's state, and on the evidence queue.
//
// A version the request raising it waits for wakes neither worker: the
// request wakes both once it has read all its spans (feed), so that
// everything it raised (new findings, updates, the closing versions of the
// traces it evicted unjudged) shares one write and one fsync, and one
// wake-up of each worker (a wake-up can cost an idle core's thread a start
// and a park). A closing version nobody waits for (a sweep's, the flush's,
// or that of a trace a request pushed out of memory: see
// detector.Batch.Annotate) wakes no worker either: it goes with the next
// write, the next request's that raised a finding or the one the sweep loop
// wakes after its next tick, whichever comes first. Other versions nobody
// waits for wake them at once.
func (p *tenantguard) onFinding(f detector.Finding) {
	p.observeFinding(&f)
	ev := store.NewEvidence(&f, p.cfg.Instance)
	awaited := p.acks.awaited(ev.LeakID, ev.Version)
	wake := !awaited && f.Status != detector.StatusClosed
	if !p.alertQueue.push(ev, wake) {
		p.logger.Error("alert queue full: finding not announced (it is still recorded); the notifiers are stuck",
			zap.String("leak_id", ev.LeakID), zap.String("trace_id", ev.TraceID), zap.String("rule", ev.Rule),
			zap.Int("queue_size", p.cfg.QueueSize))
	}
	if !p.queue.push(ev, wake) {
		p.queueFull.Add(1)
		p.acks.lost(ev.LeakID, ev.Version)
		p.logger.Error("evidence queue full: finding not recorded; raise queue_size or fix the store",
			zap.String("leak_id", ev.LeakID), zap.String("trace_id", ev.TraceID), zap.String("rule", ev.Rule),
			zap.Int("queue_size", p.cfg.QueueSize))
	}
}

// processTraces runs detection inline and returns the request untouched;
// processorhelper passes it downstream. A request that raised findings
// returns once they are in the journal (see awaitDurable): acknowledging it
// acknowledges its evidence. So does a request whose spans a concurrent
// request judged: it returns once the requests in flight with it have had
// their findings made durable (awaitEarlier). Clean requests never wait.
func (p *tenantguard) processTraces(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	r := p.requests.Get().(*requestState)
	ticket := p.flights.board()
	// Landed by answer; this one only counts if feed panicked (the HTTP
	// receiver recovers a request's panic), so that no ticket stays in
	// flight for ever.
	defer p.flights.land(ticket)
	judgedElsewhere, boarded := p.feed(r, td)
	p.answer(ctx, r, ticket, judgedElsewhere, boarded)
	r.reset()
	p.requests.Put(r)
	return td, nil
}

// answer waits until the request may be acknowledged: what it raised is
// durable and, if another request judged some of its spans, the requests in
// flight when it closed its batch have landed.
func (p *tenantguard) answer(ctx context.Context, r *requestState, ticket uint64, judgedElsewhere bool, boarded uint64) {
	p.awaitDurable(ctx, r)
	p.flights.land(ticket)
	if judgedElsewhere {
		p.heldForOthers.Add(1)
		p.awaitEarlier(ctx, r, boarded)
	}
}

func (p *tenantguard) start(_ context.Context, _ component.Host) error {
	if p.redactor != nil && p.redactor.key == nil {
		p.logger.Warn("evidence_attributes.hmac_key is not set: evidence keeps attribute values outside the clear list as " +
			config.RedactedValue + "; set it (e.g. ${env:TENANTGUARD_EVIDENCE_HMAC_KEY}) to store keyed digests analysts can correlate")
	}
	p.startSlack()
	if err := p.shared.telemetry.register(p); err != nil {
		return err
	}
	// Open the store before the receivers start, so the first request
	// already waits for its findings to be durable; and with ClickHouse on,
	// its shipper must also ship what a previous run left in the journal.
	st := p.openFirstStore()
	p.done.Add(3)
	go p.sweepLoop()
	go p.evidenceLoop(st)
	go p.alertLoop()
	return nil
}

func (p *tenantguard) shutdown(ctx context.Context) error {
	if p.stopped || p.det == nil {
		return nil
	}
	p.stopped = true
	// Close every trace still in memory so its finding's last version is
	// queued before the workers drain for the last time.
	p.det.Flush()
	close(p.stop)
	waited := make(chan struct{})
	go func() { p.done.Wait(); close(waited) }()
	defer p.shared.telemetry.unregister(ctx, p)
	select {
	case <-waited:
		if p.slack != nil {
			// Undelivered alerts stay in the outbox for the next start.
			if err := p.slack.Close(ctx); err != nil {
				p.logger.Warn("closing the Slack notifier", zap.Error(err))
			}
		}
		if p.lostAtShutdown.Load() > 0 {
			return errors.New("tenantguard: the evidence store refused the last findings at shutdown; their trace ids are in the log")
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *tenantguard) sweepLoop() {
	defer p.done.Done()
	every := min(p.cfg.IdleWindow/4, time.Second)
	t := time.NewTicker(max(every, 10*time.Millisecond))
	defer t.Stop()
	var lastEvicted uint64
	lastWarn := time.Time{}
	for {
		select {
		case <-p.stop:
			p.writeCoverage(time.Now(), true) // the detector was flushed
			return
		case now := <-t.C:
			p.det.Sweep()
			// The closing versions queued without waking the workers, the
			// sweep's and any a request left (onFinding), go now.
			p.queue.signalIfQueued()
			p.alertQueue.signalIfQueued()
			p.writeCoverage(now, false)
			// Evictions mean max_traces is too small for the traffic and
			// crossings can be missed: say so, at most once a minute.
			if ev := p.det.Stats().TracesEvicted; ev > lastEvicted && now.Sub(lastWarn) >= time.Minute {
				p.logger.Warn("traces evicted before their idle window ended; crossings in them may be missed: raise max_traces",
					zap.Uint64("evicted_since_last_warning", ev-lastEvicted), zap.Int("max_traces", p.cfg.MaxTraces))
				lastEvicted, lastWarn = ev, now
			}
		}
	}
}

// writeCoverage writes the ended hours' coverage, then wakes its shipper.
func (p *tenantguard) writeCoverage(now time.Time, final bool) {
	if p.coverage.write(p.det, now, final) {
		if sj := p.journal.Load(); sj != nil {
			sj.coverageWritten()
		}
	}
}

// openFirstStore opens the store at start; a store that cannot be opened is
// counted and logged, and the evidence worker retries it.
func (p *tenantguard) openFirstStore() store.Store {
	st, err := p.openStore()
	if err != nil {
		p.storeFailed()
		p.logger.Error("evidence store cannot be opened; findings wait in memory and opening is retried",
			zap.String("journal", p.cfg.Store.Journal.Path), zap.Error(err))
		return nil
	}
	p.storeHealthy.Store(true)
	return st
}

// evidenceLoop writes queued findings to the store. It takes the whole
// queue at once, so the requests waiting for their findings share one
// write and one fsync; woken, it first lets the requests being read finish
// (linger), so that theirs share it too. A failing store is retried with capped exponential
// backoff; its batch goes back to the queue, so nothing is lost while memory
// lasts and what does not fit is logged with its trace id.
func (p *tenantguard) evidenceLoop(st store.Store) {
	defer p.done.Done()
	var backoff time.Duration
	defer func() {
		if st != nil {
			if err := releaseStore(&p.shared.journals, st, p.logger); err != nil {
				p.logger.Error("closing evidence store", zap.Error(err))
			}
		}
	}()
	stopping, finalTries := false, 0
	for {
		if !stopping && backoff == 0 {
			select {
			case <-p.queue.wake:
				p.linger()
			case <-p.stop:
				stopping = true
			}
		} else if !stopping {
			select {
			case <-time.After(backoff):
			case <-p.stop:
				stopping = true
			}
		}
		err := p.writeQueued(&st)
		switch {
		case err == nil:
			backoff = 0
			if stopping && p.queue.len() == 0 {
				return
			}
		case stopping:
			finalTries++
			if finalTries >= shutdownTries {
				for _, ev := range p.queue.take() {
					p.lostAtShutdown.Add(1)
					p.logger.Error("evidence store unavailable at shutdown: finding not recorded",
						zap.String("leak_id", ev.LeakID), zap.String("trace_id", ev.TraceID), zap.String("rule", ev.Rule))
				}
				return
			}
			p.logger.Error("evidence store unavailable during shutdown; retrying", zap.Error(err))
			time.Sleep(shutdownRetry)
		default:
			backoff = min(max(backoff*2, storeRetryMin), storeRetryMax)
			p.logger.Error("evidence store write failed; findings kept in memory and retried",
				zap.String("journal", p.cfg.Store.Journal.Path), zap.Error(err),
				zap.Duration("retry_in", backoff), zap.Int("queued", p.queue.len()))
		}
	}
}

func (p *tenantguard) writeQueued(st *store.Store) error {
	batch := p.queue.take()
	if len(batch) == 0 {
		return nil
	}
	if *st == nil {
		s, err := p.openStore()
		if err != nil {
			p.storeFailed()
			p.putBack(batch)
			return err
		}
		*st = s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := (*st).Append(ctx, batch); err != nil {
		p.storeFailed()
		p.putBack(batch)
		return err
	}
	p.journalWrites.Add(1)
	p.stored.Add(uint64(len(batch)))
	p.lastStored.Store(time.Now().UnixNano())
	p.storeHealthy.Store(true)
	p.acks.durable(batch)
	return nil
}

// storeFailed counts a failed open or write of the store; until a write
// succeeds, requests do not wait for durability.
func (p *tenantguard) storeFailed() {
	p.storeFailures.Add(1)
	p.storeHealthy.Store(false)
}

func (p *tenantguard) putBack(batch []store.Evidence) {
	for _, ev := range p.queue.requeue(batch) {
		p.queueFull.Add(1)
		p.acks.lost(ev.LeakID, ev.Version)
		p.logger.Error("evidence queue full while the store is failing: finding not recorded",
			zap.String("leak_id", ev.LeakID), zap.String("trace_id", ev.TraceID), zap.String("rule", ev.Rule))
	}
}

// alertLoop tells the notifiers about each finding version as it is
// raised, whatever the journal's state: the log notifier logs, the Slack
// notifier writes its own outbox and delivers from there. Versions raised
// while the notifiers are busy coalesce, as in the evidence queue.
func (p *tenantguard) alertLoop() {
	defer p.done.Done()
	for {
		select {
		case <-p.alertQueue.wake:
			p.notify(p.alertQueue.take())
		case <-p.stop:
			// Flush queued the last versions before stop was closed.
			p.notify(p.alertQueue.take())
			return
		}
	}
}

func (p *tenantguard) notify(batch []store.Evidence) {
	ctx := context.Background()
	for i := range batch {
		for _, n := range p.notifiers {
			err := n.Notify(ctx, &batch[i])
			if n.Name() == "log" {
				alertDeliveries.WithLabelValues(p.id, "log", alerts.ResultDelivered).Inc()
			}
			if err != nil {
				p.logger.Error("notifier could not keep the alert durably", zap.String("notifier", n.Name()),
					zap.String("leak_id", batch[i].LeakID), zap.String("trace_id", batch[i].TraceID), zap.Error(err))
			}
		}
	}
}

// startSlack turns the Slack notifier on when a token or webhook is set,
// and says once that it is off otherwise.
func (p *tenantguard) startSlack() {
	cfg := p.cfg.Alerts.Slack
	if !cfg.Enabled() {
		p.logger.Info("Slack alerts are off: set alerts.slack.token and channel, or alerts.slack.webhook_url")
		return
	}
	n, err := alerts.NewSlack(cfg, p.logger, alerts.WithDeliveryObserver(func(result string) {
		alertDeliveries.WithLabelValues(p.id, "slack", result).Inc()
	}))
	if err != nil {
		p.logger.Error("Slack alerts are off: the notifier could not start", zap.Error(err))
		return
	}
	p.slack = n
	p.notifiers = append(p.notifiers, n)
	n.Start()
	p.logger.Info("Slack alerts are on", zap.String("mode", n.Mode()), zap.String("min_severity", cfg.MinSeverity))
}

type backlog struct {
	store       string
	records     int64
	lastSuccess time.Time
	deadLetters uint64
	// unknownFailures are failures of a cause the shipper cannot tell.
	unknownFailures uint64
	// writes are the batches the store acknowledged, writeFailures the
	// attempts that failed.
	writes, writeFailures uint64
}

// backlogs reports the stores behind the journal (ClickHouse) and how far
// behind they are.
func (p *tenantguard) backlogs() []backlog {
	sj := p.journal.Load()
	if sj == nil || sj.shipper == nil {
		return nil
	}
	st := sj.shipper.Status()
	return []backlog{{store: "clickhouse", records: st.Backlog, lastSuccess: st.LastSuccessAt, deadLetters: st.DeadLetters,
		unknownFailures: st.Unknown, writes: st.Writes, writeFailures: st.WriteFailures}}
}

type pendingAlerts struct {
	notifier string
	pending  int
}

func (p *tenantguard) pendingAlerts() []pendingAlerts {
	if p.slack == nil {
		return nil
	}
	return []pendingAlerts{{"slack", p.slack.Pending()}}
}

// NewDetector builds the detector and span reader a processor config
// implies, for offline use (scans, tests): CI and production judge alike.
// adjust, if not nil, may change what is not a rule (the clock, shards).
func NewDetector(cfg *Config, sink detector.Sink, adjust func(*detector.Config)) (*detector.Detector, *Extractor, error) {
	return newDetector(cfg, adjust, sink, nopTelemetry())
}

func newDetector(cfg *Config, adjust func(*detector.Config), sink detector.Sink, set component.TelemetrySettings) (*detector.Detector, *Extractor, error) {
	dc := cfg.detectorConfig(nil)
	if adjust != nil {
		adjust(&dc)
	}
	det, err := detector.New(dc, sink)
	if err != nil {
		return nil, nil, err
	}
	ex := NewExtractor(det)
	allow, err := parseAllowConditions(cfg.Allow.Conditions, set)
	if err != nil {
		return nil, nil, err
	}
	if allow != nil {
		ex.allow = allow.match
	}
	return det, ex, nil
}
