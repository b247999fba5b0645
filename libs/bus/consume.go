package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-kit/kit/endpoint"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/telemetry"
)

// ConsumeOptions tunes Consume. Zero values take the defaults.
type ConsumeOptions struct {
	// Workers is how many handlers run at once in this process (default 1).
	// It also sizes the client-side pull buffer, so a replica never holds
	// many more messages than it can work on.
	Workers int
	// Backoff is the NakWithDelay delay for a failed delivery: entry
	// NumDelivered-1, the last entry once deliveries exceed the list.
	// Default DefaultBackoff().
	Backoff []time.Duration
	Logger  *slog.Logger
	Tel     telemetry.Providers
	// Name labels logs, spans and metrics; default the consumer's name.
	Name string
	// AckAsync acknowledges with a plain Ack instead of AckSync: about a
	// third more throughput on a small machine, but an ack lost in transit
	// (or still unsent when the process dies) means a redelivery after
	// AckWait. Only for idempotent handlers.
	AckAsync bool
}

// DefaultBackoff is the redelivery schedule used when
// ConsumeOptions.Backoff is empty.
func DefaultBackoff() []time.Duration {
	return []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 5 * time.Minute}
}

// ackTimeout bounds one AckSync round trip.
const ackTimeout = 5 * time.Second

// defaultAckWait is JetStream's AckWait when the consumer sets none.
const defaultAckWait = 30 * time.Second

// Subscription is a running Consume. Stop it to shut down cleanly.
type Subscription struct {
	name       string
	cons       jetstream.Consumer
	jobs       chan jetstream.Msg // fetched, not yet taken by a worker; only the fetcher sends
	freed      chan struct{}      // a worker took a job: the fetcher may pull more
	ep         endpoint.Endpoint
	log        *slog.Logger
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	backoff    []time.Duration
	heartbeat  time.Duration
	maxDeliver int // of the consumer; <= 0 unlimited
	ackAsync   bool
	consumed   metric.Int64Counter
	duration   metric.Float64Histogram

	stopOnce       sync.Once
	stopping       chan struct{} // closed: fetch no more
	cancelHandlers context.CancelFunc
	forced         atomic.Bool // Stop's ctx ended: hand unfinished messages back
	done           chan struct{}
	errMu          sync.Mutex
	err            error
}

// Consume runs ep for every message of cons on a pool of opts.Workers
// goroutines and returns at once. For each message it parses the envelope
// (an invalid one is terminated, logged and counted), continues the trace
// from the message headers in a consumer span, calls ep(ctx, env) with the
// events.Envelope as the request, and settles the message by classify:
// Ack (AckSync) on success, Term for terminal errors, NakWithDelay otherwise.
// While a handler runs longer than half the AckWait the message is kept
// alive with InProgress.
//
// When ctx ends the subscription drains as if Stop had been called without
// a deadline; handlers' contexts are not cancelled by ctx (they carry its
// values), only by a Stop whose own ctx ends first.
func Consume(ctx context.Context, cons jetstream.Consumer, ep endpoint.Endpoint, opts ConsumeOptions) (*Subscription, error) {
	if cons == nil || ep == nil {
		return nil, errors.New("consume: nil consumer or endpoint")
	}
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if len(opts.Backoff) == 0 {
		opts.Backoff = DefaultBackoff()
	}
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	info := cons.CachedInfo()
	ackWait := defaultAckWait
	maxDeliver := -1
	if info != nil {
		maxDeliver = info.Config.MaxDeliver
		if opts.Name == "" {
			opts.Name = info.Name
		}
		if info.Config.AckWait > 0 {
			ackWait = info.Config.AckWait
		}
		if len(info.Config.BackOff) > 0 && info.Config.BackOff[0] < ackWait {
			ackWait = info.Config.BackOff[0] // the server's first redelivery deadline
		}
	}
	tel := withDefaults(opts.Tel)
	m := tel.Meter.Meter(scope)
	consumed, err := m.Int64Counter("amtprov.bus.consumed",
		metric.WithDescription("Messages settled by the consume adapter, by consumer, subject prefix and outcome (ack, nak, term)."),
		metric.WithUnit("{message}"))
	if err != nil {
		consumed = noopCounter()
	}
	duration, err := m.Float64Histogram("amtprov.bus.handler.duration",
		metric.WithDescription("Time spent in the event handler, by consumer, subject prefix and outcome."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	if err != nil {
		duration = noopHistogram()
	}

	lag, err := registerLag(m, cons, opts.Name)
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", opts.Name, err)
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Subscription{
		name:           opts.Name,
		cons:           cons,
		jobs:           make(chan jetstream.Msg, opts.Workers),
		freed:          make(chan struct{}, 1),
		ep:             ep,
		log:            opts.Logger.With("consumer", opts.Name),
		tracer:         tel.Tracer.Tracer(scope),
		propagator:     tel.Propagator,
		backoff:        opts.Backoff,
		heartbeat:      ackWait / 2,
		ackAsync:       opts.AckAsync,
		maxDeliver:     maxDeliver,
		consumed:       consumed,
		duration:       duration,
		stopping:       make(chan struct{}),
		cancelHandlers: cancel,
		done:           make(chan struct{}),
	}
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Go(func() { s.work(hctx) })
	}
	go func() {
		s.fetch()
		close(s.jobs) // workers finish what was fetched, then exit
		wg.Wait()
		cancel()
		_ = lag.Unregister() // fails only if already unregistered
		close(s.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			s.stopFetching()
		case <-s.done:
		}
	}()
	return s, nil
}

// lagInfoTimeout bounds the consumer-info request made per metrics scrape.
const lagInfoTimeout = 2 * time.Second

// registerLag reports the consumer's backlog at each metrics collection:
// messages not yet delivered (pending) and delivered but not acknowledged
// (ack_pending), fleet-wide for the durable.
func registerLag(m metric.Meter, cons jetstream.Consumer, name string) (metric.Registration, error) {
	g, err := m.Int64ObservableGauge("amtprov.bus.consumer.lag",
		metric.WithDescription("Messages of the durable consumer not yet delivered (state=pending) or not yet acknowledged (state=ack_pending)."),
		metric.WithUnit("{message}"))
	if err != nil {
		return nil, fmt.Errorf("create lag gauge: %w", err)
	}
	pending := metric.WithAttributes(attrConsumer.String(name), attrState.String("pending"))
	ackPending := metric.WithAttributes(attrConsumer.String(name), attrState.String("ack_pending"))
	reg, err := m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, lagInfoTimeout)
		defer cancel()
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("consumer %s info for lag: %w", name, err)
		}
		o.ObserveInt64(g, int64(info.NumPending), pending)
		o.ObserveInt64(g, int64(info.NumAckPending), ackPending)
		return nil
	}, g)
	if err != nil {
		return nil, fmt.Errorf("register lag callback: %w", err)
	}
	return reg, nil
}

// Stop stops pulling new messages and waits until the buffered and
// in-flight ones have been handled and settled. If ctx ends first, the
// handlers' contexts are cancelled, every message not yet settled (a
// handler that then fails, or one still buffered) is handed back with
// NakWithDelay(0) so another replica takes it at once, and Stop returns
// ctx's error without waiting further (Done tells when the workers have
// exited).
func (s *Subscription) Stop(ctx context.Context) error {
	s.stopFetching()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.forced.Store(true)
		s.cancelHandlers()
		return fmt.Errorf("stop consumer %s: in-flight messages handed back: %w", s.name, ctx.Err())
	}
}

// Done is closed when every worker has exited: after Stop, after the
// Consume ctx ended and the subscription drained, or when pulling ended on
// its own (see Err).
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err reports why the subscription ended on its own (connection closed,
// consumer deleted); nil while running or after a requested stop.
func (s *Subscription) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

func (s *Subscription) stopFetching() { s.stopOnce.Do(func() { close(s.stopping) }) }

// fetchWait is how long one pull request waits on an idle stream. It bounds
// how long Stop waits for the outstanding request: pull requests are always
// allowed to finish (never abandoned by unsubscribing), because the server
// may already have assigned messages to them, and those would otherwise sit
// unacknowledged until AckWait.
const fetchWait = 500 * time.Millisecond

// fetch pulls messages into jobs until stopping, requesting no more than
// the free room in jobs, so the fetcher never blocks on a full buffer and
// every fetched message reaches a worker.
func (s *Subscription) fetch() {
	retry := backoff.NewExponentialBackOff()
	retry.InitialInterval = 100 * time.Millisecond
	retry.MaxInterval = 5 * time.Second
	retry.MaxElapsedTime = 0
	threshold := max(1, cap(s.jobs)/2)
	for {
		select {
		case <-s.stopping:
			return
		default:
		}
		room := cap(s.jobs) - len(s.jobs)
		if room < threshold {
			select {
			case <-s.freed:
				continue
			case <-s.stopping:
				return
			}
		}
		batch, err := s.cons.Fetch(room, jetstream.FetchMaxWait(fetchWait))
		if err == nil {
			for msg := range batch.Messages() {
				s.jobs <- msg
			}
			err = batch.Error()
		}
		if err == nil {
			retry.Reset()
			continue
		}
		if errors.Is(err, jetstream.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionClosed) ||
			errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
			s.setErr(err)
			return
		}
		d := retry.NextBackOff()
		s.log.Warn("consume: fetch failed; retrying", "err", err, "retry_in", d)
		select {
		case <-time.After(d):
		case <-s.stopping:
			return
		}
	}
}

func (s *Subscription) work(ctx context.Context) {
	for msg := range s.jobs {
		select {
		case s.freed <- struct{}{}:
		default:
		}
		s.handle(ctx, msg)
	}
}

func (s *Subscription) setErr(err error) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.err == nil {
		s.err = fmt.Errorf("consumer %s: %w", s.name, err)
	}
}

// handle runs one message through the endpoint and settles it.
func (s *Subscription) handle(ctx context.Context, msg jetstream.Msg) {
	start := time.Now()
	delivered := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	env, err := events.Parse(msg.Subject(), msg.Headers(), msg.Data())
	if err != nil {
		s.log.WarnContext(ctx, "consume: invalid event terminated", "subject", msg.Subject(), "err", err)
		s.settle(ctx, msg, decision{action: actionTerm}, "invalid", start, nil)
		return
	}
	prefix := subjectPrefix(env.Type)
	if s.forced.Load() {
		// Stop gave up waiting: do not start new work, hand it back.
		s.settle(ctx, msg, decision{action: actionNak}, prefix, start, nil)
		return
	}
	pctx := s.propagator.Extract(ctx, headerCarrier(msg.Headers()))
	sctx, span := s.tracer.Start(pctx, "process "+prefix,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attrSystem.String("nats"),
			attrDestination.String(env.Topic),
			attrOperationType.String("process"),
			attrMessageID.String(env.ID),
			attrCEType.String(env.Type),
			attrConsumerGroup.String(s.name),
			attrDeliveryCount.Int64(int64(delivered)),
		))
	defer span.End()

	sctx = context.WithValue(sctx, deliveryKey{}, delivered)
	hb := startHeartbeat(msg, s.heartbeat)
	err = s.call(sctx, env)
	hb.stop()

	d := classify(err, delivered, s.maxDeliver, s.backoff)
	if err != nil && d.action == actionNak && s.forced.Load() {
		d.delay = 0 // shutting down: hand it back for another replica at once
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, d.action.String())
		lvl, what := slog.LevelWarn, "consume: handler failed"
		if d.exhausted {
			lvl, what = slog.LevelError, "consume: handler failed on the last allowed delivery; message terminated"
		}
		s.log.Log(sctx, lvl, what, "subject", env.Topic, "ce_id", env.ID,
			"delivered", delivered, "decision", d.action.String(), "delay", d.delay, "err", err)
	}
	s.settle(sctx, msg, d, prefix, start, span)
}

// call runs the endpoint, turning a panic into an error so one bad message
// cannot take the process down, and honouring go-kit's endpoint.Failer.
func (s *Subscription) call(ctx context.Context, env events.Envelope) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic on %s: %v", env.Topic, r)
		}
	}()
	resp, err := s.ep(ctx, env)
	if err != nil {
		return err
	}
	if f, ok := resp.(endpoint.Failer); ok {
		return f.Failed()
	}
	return nil
}

func (s *Subscription) settle(ctx context.Context, msg jetstream.Msg, d decision, prefix string, start time.Time, span trace.Span) {
	var err error
	switch d.action {
	case actionAck:
		if s.ackAsync {
			err = msg.Ack()
			break
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
		err = msg.DoubleAck(actx)
		cancel()
	case actionTerm:
		err = msg.Term()
	case actionNak:
		err = msg.NakWithDelay(d.delay)
	}
	if err != nil {
		// Unsettled: JetStream redelivers after AckWait; handlers are idempotent.
		s.log.WarnContext(ctx, "consume: settle message", "subject", msg.Subject(), "decision", d.action.String(), "err", err)
		if span != nil {
			span.RecordError(err)
		}
	}
	set := metric.WithAttributes(attrConsumer.String(s.name), attrSubjectPrefix.String(prefix), attrOutcome.String(d.action.String()))
	s.consumed.Add(ctx, 1, set)
	s.duration.Record(ctx, time.Since(start).Seconds(), set)
}

type deliveryKey struct{}

// Delivery returns how many times JetStream has delivered the message whose
// handler received ctx (1 the first time); 0 outside a Consume handler. A
// handler may use it to give up with ErrTerminal after enough attempts.
func Delivery(ctx context.Context) uint64 {
	n, _ := ctx.Value(deliveryKey{}).(uint64)
	return n
}

// subjectPrefix is the bounded-cardinality label of an event type.
func subjectPrefix(ceType string) string {
	if k, ok := events.KindOf(ceType); ok {
		return k.Prefix
	}
	return "unknown"
}

type action int

const (
	actionAck action = iota
	actionNak
	actionTerm
)

func (a action) String() string {
	switch a {
	case actionAck:
		return "ack"
	case actionNak:
		return "nak"
	case actionTerm:
		return "term"
	}
	return "unknown"
}

type decision struct {
	action    action
	delay     time.Duration // for actionNak
	exhausted bool          // terminated because MaxDeliver was reached
}

// classify is the one place that maps a handler result to a JetStream
// decision (STYLE.md "Handlers and transports"). It never yields a plain
// Nak: every redelivery has a delay. A retryable failure on the consumer's
// last allowed delivery (maxDeliver > 0) is terminated instead, so the
// outcome is explicit in logs and metrics rather than a Nak the server
// ignores.
func classify(err error, delivered uint64, maxDeliver int, schedule []time.Duration) decision {
	if err == nil {
		return decision{action: actionAck}
	}
	var perm *backoff.PermanentError
	if errors.Is(err, ErrTerminal) || errors.Is(err, events.ErrInvalid) || errors.As(err, &perm) {
		return decision{action: actionTerm}
	}
	if maxDeliver > 0 && delivered >= uint64(maxDeliver) {
		return decision{action: actionTerm, exhausted: true}
	}
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return decision{action: actionNak, delay: max(ra.After, 0)}
	}
	return decision{action: actionNak, delay: backoffFor(delivered, schedule)}
}

// backoffFor returns the delay after the delivered-th failed delivery.
func backoffFor(delivered uint64, schedule []time.Duration) time.Duration {
	if len(schedule) == 0 {
		schedule = DefaultBackoff()
	}
	i := int(min(max(delivered, 1)-1, uint64(len(schedule)-1)))
	return schedule[i]
}

// heartbeat keeps a message alive with InProgress while its handler runs.
type heartbeat struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func startHeartbeat(msg jetstream.Msg, every time.Duration) *heartbeat {
	h := &heartbeat{}
	if every <= 0 {
		return h
	}
	var tick func()
	tick = func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.stopped {
			return
		}
		_ = msg.InProgress() // best effort: a lost InProgress means at worst a redelivery
		h.t = time.AfterFunc(every, tick)
	}
	h.mu.Lock()
	h.t = time.AfterFunc(every, tick)
	h.mu.Unlock()
	return h
}

func (h *heartbeat) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	if h.t != nil {
		h.t.Stop()
	}
}
