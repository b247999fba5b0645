package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"

	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/telemetry"
)

const scope = "github.com/amtprov/amtprov/libs/outbox"

// Publisher is what the relay needs from libs/bus: *bus.Publisher. It must
// return only after JetStream stored the event (PubAck), keep
// Nats-Msg-Id = env.ID, and continue the trace found in ctx.
type Publisher interface {
	PublishEnvelope(ctx context.Context, env events.Envelope) error
}

// RelayConfig tunes a Relay; zero values take the defaults.
type RelayConfig struct {
	// Topics restricts the relay to the rows whose topic lies under one of
	// these subject prefixes: prefix "amt.v1.provisioning" claims
	// amt.v1.provisioning.started.<uuid> and every other subject the NATS
	// pattern amt.v1.provisioning.> matches, and nothing else. A service
	// lists the events it writes (the libs/events Subject* prefixes), so its
	// relay never claims a row its NATS user may not publish. Empty: every
	// row (`amtprov dev`, one process with every service). A prefix must be
	// dot-separated non-empty tokens without wildcards; Run and Flush
	// return an error otherwise.
	Topics []string
	// BatchSize is how many rows one transaction claims (default 256).
	BatchSize int
	// Concurrency is how many subjects of a batch are published in
	// parallel; rows of one subject are published in order (default 32).
	Concurrency int
	// PollInterval is how often the relay looks for rows without a
	// notification (default 1 s): the safety net for a missed NOTIFY.
	PollInterval time.Duration
	// BatchTimeout bounds publishing one batch; what is not acknowledged by
	// then stays in the outbox for the next attempt (default 15 s).
	BatchTimeout time.Duration
	// Log gets relay failures; nil discards.
	Log *slog.Logger
	// Telemetry: spans come from the Publisher; the relay records metrics.
	Telemetry telemetry.Providers
}

func (c RelayConfig) withDefaults() RelayConfig {
	if c.BatchSize <= 0 {
		c.BatchSize = 256
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 32
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.BatchTimeout <= 0 {
		c.BatchTimeout = 15 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Telemetry.Meter == nil {
		c.Telemetry.Meter = metricnoop.NewMeterProvider()
	}
	if c.Telemetry.Propagator == nil {
		c.Telemetry.Propagator = telemetry.NewPropagator()
	}
	return c
}

// Relay publishes the outbox's rows and deletes them after JetStream
// acknowledged them. Run one per service process that writes outbox rows,
// with Topics set to the subjects that service writes.
type Relay struct {
	pool *pgxpool.Pool
	pub  Publisher
	cfg  RelayConfig

	claimSQL  string
	claimArgs []any // the batch size ($1), then the prefix bounds
	cfgErr    error // a malformed Topics entry

	published metric.Int64Counter
	delay     metric.Float64Histogram
}

// NewRelay returns a relay over the outbox table of pool publishing through
// pub. Nothing runs until Run.
func NewRelay(pool *pgxpool.Pool, pub Publisher, cfg RelayConfig) *Relay {
	cfg = cfg.withDefaults()
	m := cfg.Telemetry.Meter.Meter(scope)
	published, err := m.Int64Counter("amtprov.outbox.relayed",
		metric.WithDescription("Outbox rows handled by the relay, by outcome (published, failed: dead-lettered, error: left for retry)."),
		metric.WithUnit("{message}"))
	if err != nil {
		published = metricnoop.Int64Counter{}
	}
	delay, err := m.Float64Histogram("amtprov.outbox.delay",
		metric.WithDescription("Time from an event's insertion into the outbox to its PubAck."),
		metric.WithUnit("s"))
	if err != nil {
		delay = metricnoop.Float64Histogram{}
	}
	r := &Relay{pool: pool, pub: pub, cfg: cfg, published: published, delay: delay}
	var bounds []any
	r.claimSQL, bounds, r.cfgErr = claimQuery(cfg.Topics)
	r.claimArgs = append([]any{cfg.BatchSize}, bounds...)
	return r
}

// claimQuery builds the statement that claims a batch of pending rows, in
// id order, of the topics under prefixes (all topics when there is none).
// Each prefix P becomes the byte range [P".", P"/") ('/' follows '.' in
// ASCII; COLLATE "C" makes the comparison bytewise whatever the database
// collation); the prefixes are parameters, so the statement text is fixed
// per relay.
//
// There is deliberately no index on topic: the claim walks outbox_pending
// in id order and filters, which is what keeps events in insertion order
// and costs nothing while the outbox holds only events in flight. Measured
// on PostgreSQL 15, an index on (topic COLLATE "C", id) was not chosen by
// the planner even when it would have helped (the LIMIT assumes matching
// rows are spread evenly over the ids), so it would only slow every insert.
// The slow case left is another service's relay stuck behind a backlog of
// its own rows: each claim then skips that backlog (about 50 ms per
// 200,000 rows), and AmtprovOutboxRelayFailing fires for the stuck relay.
func claimQuery(prefixes []string) (string, []any, error) {
	var (
		conds []string
		args  []any
	)
	for _, p := range prefixes {
		if err := events.ValidSubjectPrefix(p); err != nil {
			return "", nil, fmt.Errorf("outbox relay: topic prefix %q: %w", p, err)
		}
		lo, hi := len(args)+2, len(args)+3
		conds = append(conds, `(topic COLLATE "C" >= $`+strconv.Itoa(lo)+` AND topic COLLATE "C" < $`+strconv.Itoa(hi)+`)`)
		args = append(args, p+".", p+"/")
	}
	where := "failed_at IS NULL"
	if len(conds) > 0 {
		where += " AND (" + strings.Join(conds, " OR ") + ")"
	}
	return `SELECT id, topic, headers, data, created_at FROM outbox
WHERE ` + where + `
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED`, args, nil
}

// Run publishes pending rows until ctx ends, waking on NOTIFY and on every
// PollInterval; it returns nil when ctx ends. Publishing failures are
// logged and retried with capped backoff; rows stay in the outbox until
// acknowledged.
func (r *Relay) Run(ctx context.Context) error {
	if r.cfgErr != nil {
		return r.cfgErr
	}
	wake := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.listen(ctx, wake)
	}()
	defer wg.Wait()

	retry := backoff.NewExponentialBackOff()
	retry.InitialInterval = 100 * time.Millisecond
	retry.MaxInterval = 5 * time.Second
	retry.MaxElapsedTime = 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-timer.C:
		}
		_, err := r.Flush(ctx)
		next := r.cfg.PollInterval
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			next = retry.NextBackOff()
			r.cfg.Log.WarnContext(ctx, "outbox relay: publish failed; retrying", "err", err, "retry_in", next)
		default:
			retry.Reset()
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// listen holds one connection in LISTEN on NotifyChannel and signals wake
// for every notification, reconnecting with backoff after a failure. Without
// it the relay still works, on the poll interval.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = 10 * time.Second
	b.MaxElapsedTime = 0
	for ctx.Err() == nil {
		err := r.listenOnce(ctx, wake, b)
		if ctx.Err() != nil {
			return
		}
		d := b.NextBackOff()
		r.cfg.Log.WarnContext(ctx, "outbox relay: LISTEN connection lost; polling until it is back", "err", err, "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (r *Relay) listenOnce(ctx context.Context, wake chan<- struct{}, b backoff.BackOff) error {
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire listen connection: %w", err)
	}
	// A connection that was listening must not go back to the pool still
	// subscribed: hijack it and close it ourselves.
	pc := conn.Hijack()
	defer pc.Close(context.WithoutCancel(ctx))
	if _, err := pc.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("listen on %s: %w", NotifyChannel, err)
	}
	b.Reset()
	// Rows may have arrived before LISTEN took effect.
	signal(wake)
	for {
		if _, err := pc.WaitForNotification(ctx); err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		signal(wake)
	}
}

func signal(wake chan<- struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}

// Flush publishes every pending row now, batch after batch, and returns how
// many it published. It stops at the first batch with a failure, returning
// the error; published rows are deleted either way. Relays that hold rows
// locked are skipped, not waited for.
func (r *Relay) Flush(ctx context.Context) (int, error) {
	if r.cfgErr != nil {
		return 0, r.cfgErr
	}
	total := 0
	for {
		n, claimed, err := r.batch(ctx)
		total += n
		if err != nil {
			return total, err
		}
		if claimed < r.cfg.BatchSize {
			return total, nil
		}
	}
}

type row struct {
	id      int64
	topic   string
	headers map[string][]string
	data    []byte
	created time.Time
}

// batch claims up to BatchSize rows, publishes them and deletes the
// acknowledged ones, in one transaction.
func (r *Relay) batch(ctx context.Context) (published, claimed int, err error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("outbox relay: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	rows, err := tx.Query(ctx, r.claimSQL, r.claimArgs...)
	if err != nil {
		return 0, 0, fmt.Errorf("outbox relay: claim rows: %w", err)
	}
	var batch []row
	for rows.Next() {
		var rw row
		var hj []byte
		if err := rows.Scan(&rw.id, &rw.topic, &hj, &rw.data, &rw.created); err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("outbox relay: read row: %w", err)
		}
		if err := json.Unmarshal(hj, &rw.headers); err != nil {
			rw.headers = nil // dead-lettered below
		}
		batch = append(batch, rw)
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("outbox relay: claim rows: %w", err)
	}
	if len(batch) == 0 {
		return 0, 0, nil
	}

	done, dead, pubErr := r.publish(ctx, batch)
	for _, d := range dead {
		if _, err := tx.Exec(ctx, `UPDATE outbox SET failed_at = now(), error = $2 WHERE id = $1`, d.id, d.reason); err != nil {
			return 0, len(batch), fmt.Errorf("outbox relay: dead-letter row %d: %w", d.id, err)
		}
		r.cfg.Log.ErrorContext(ctx, "outbox relay: row can never be published; kept with failed_at set", "id", d.id, "reason", d.reason)
	}
	if len(done) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM outbox WHERE id = ANY($1)`, done); err != nil {
			return 0, len(batch), fmt.Errorf("outbox relay: delete published rows: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		// The rows stay; publishing them again is de-duplicated by JetStream.
		return 0, len(batch), fmt.Errorf("outbox relay: commit: %w", err)
	}
	if pubErr != nil {
		return len(done), len(batch), pubErr
	}
	return len(done), len(batch), nil
}

type deadRow struct {
	id     int64
	reason string
}

// publish sends the rows, subjects in parallel and each subject's rows in
// order; a failed row stops the rest of its subject. It returns the ids
// acknowledged, the rows that can never be published, and the first
// publishing error.
func (r *Relay) publish(ctx context.Context, batch []row) (done []int64, dead []deadRow, firstErr error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.BatchTimeout)
	defer cancel()

	var order []string
	byTopic := map[string][]row{}
	for _, rw := range batch {
		if _, ok := byTopic[rw.topic]; !ok {
			order = append(order, rw.topic)
		}
		byTopic[rw.topic] = append(byTopic[rw.topic], rw)
	}

	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, r.cfg.Concurrency)
	for _, topic := range order {
		sem <- struct{}{}
		wg.Add(1)
		go func(rs []row) {
			defer func() { <-sem; wg.Done() }()
			for _, rw := range rs {
				env, err := parseRow(rw)
				if err != nil {
					mu.Lock()
					dead = append(dead, deadRow{id: rw.id, reason: err.Error()})
					mu.Unlock()
					r.published.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "failed")))
					continue
				}
				pctx := r.cfg.Telemetry.Propagator.Extract(ctx, carrier(rw.headers))
				if err := r.pub.PublishEnvelope(pctx, env); err != nil {
					r.published.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "error")))
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("outbox relay: publish row %d: %w", rw.id, err)
					}
					mu.Unlock()
					return // keep this subject's order: the rest waits for the next attempt
				}
				r.published.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "published")))
				r.delay.Record(ctx, time.Since(rw.created).Seconds())
				mu.Lock()
				done = append(done, rw.id)
				mu.Unlock()
			}
		}(byTopic[topic])
	}
	wg.Wait()
	return done, dead, firstErr
}

// errBadRow marks a stored row that is not a valid event.
var errBadRow = errors.New("not a valid event")

func parseRow(rw row) (events.Envelope, error) {
	if rw.headers == nil {
		return events.Envelope{}, fmt.Errorf("%w: headers are not a JSON object of string lists", errBadRow)
	}
	env, err := events.Parse(rw.topic, rw.headers, rw.data)
	if err != nil {
		return events.Envelope{}, fmt.Errorf("%w: %v", errBadRow, err)
	}
	return env, nil
}
