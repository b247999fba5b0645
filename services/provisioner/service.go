package provisioner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/outbox"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/provisioner/errcode"
	"github.com/amtprov/amtprov/services/provisioner/internal/jobstore"
	"github.com/amtprov/amtprov/services/provisioner/internal/workflow"
)

// Config configures a provisioner replica. Zero values take the defaults.
type Config struct {
	// Durable is the pull consumer shared by all replicas (default "provisioner").
	Durable string
	// Workers is how many devices this replica works on at once (default
	// 256: the work is waiting on devices, not CPU).
	Workers int
	// Instance names this replica in job leases (default host-pid-random).
	Instance string
	// Lease is how long a job stays this replica's without renewal
	// (default 60 s); a running job renews it every Lease/3.
	Lease time.Duration
	// AckWait is the consumer's redelivery timeout for a replica that
	// vanished (default 30 s); handlers keep messages alive meanwhile.
	AckWait time.Duration
	// MaxDeliver is how many times a job is run before a transient failure
	// ends it with its code (default 10). Its hello is redelivered until
	// then (the consumer itself does not limit deliveries).
	MaxDeliver int
	// Backoff is the redelivery delay after the n-th transient failure
	// (default 2s, 5s, 10s, 20s, 30s, 60s).
	Backoff []time.Duration
	// RetryFailedAfter: after a job fails, the device's hellos start a new
	// attempt only once this long has passed (default 5 min; negative: on
	// the next hello).
	RetryFailedAfter time.Duration
	// Workflow tunes the device conversation (ports, timeouts).
	Workflow workflow.Config
	// Relay tunes the outbox relay.
	Relay outbox.RelayConfig
	// Admin tunes the admin request/reply server.
	Admin admin.ServerOptions
}

func (c Config) withDefaults() Config {
	if c.Durable == "" {
		c.Durable = "provisioner"
	}
	if c.Workers <= 0 {
		c.Workers = 256
	}
	if c.Instance == "" {
		host, _ := os.Hostname()
		var b [3]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
		c.Instance = host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
	}
	if c.Lease <= 0 {
		c.Lease = time.Minute
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 10
	}
	if len(c.Backoff) == 0 {
		c.Backoff = []time.Duration{2 * time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second, time.Minute}
	}
	if c.RetryFailedAfter == 0 {
		c.RetryFailedAfter = 5 * time.Minute
	}
	c.Workflow.Lease = c.Lease
	if c.Admin.Queue == "" {
		c.Admin.Queue = admin.QueueGroup("provisioner")
	}
	return c
}

// Deps are the provisioner's collaborators.
type Deps struct {
	Pool    *pgxpool.Pool
	JS      jetstream.JetStream
	NC      *nats.Conn // admin request/reply
	Keys    *secrets.Keyring
	Domains workflow.DomainSource
	Signer  workflow.Signer
	Tel     telemetry.Providers
	Log     *slog.Logger
	// Source is the ce-source of the events it writes (default /provisioner/<instance>).
	Source string
}

// Stats are this replica's counters since start (the `amtprov dev`
// progress line).
type Stats struct {
	Received    int64 // hellos handled
	InProgress  int64 // jobs being worked on now
	Provisioned int64
	Failed      int64
	Retries     int64 // transient failures handed back for redelivery
}

// Service is one provisioner replica.
type Service struct {
	adminReady admin.ReadyCheck // the admin verbs' server, once Run started it

	cfg    Config
	deps   Deps
	store  *jobstore.Store
	engine *workflow.Engine
	log    *slog.Logger
	seq    atomic.Int64

	received, inProgress, provisioned, failed, retries atomic.Int64

	m metrics
}

// New checks deps and builds the service; Run starts it.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.Pool == nil || deps.JS == nil || deps.NC == nil || deps.Keys == nil || deps.Domains == nil || deps.Signer == nil {
		return nil, errors.New("new provisioner: pool, jetstream, nats, keyring, domains and signer are required")
	}
	cfg = cfg.withDefaults()
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Source == "" {
		deps.Source = "/provisioner/" + cfg.Instance
	}
	if deps.Tel.Tracer != nil {
		cfg.Workflow.Tracer = deps.Tel.Tracer
	}
	cfg.Workflow.Logger = deps.Log
	s := &Service{cfg: cfg, deps: deps, log: deps.Log}
	s.store = jobstore.New(deps.Pool, deps.Source)
	s.store.FailedCooldown = max(cfg.RetryFailedAfter, 0)
	m, err := newMetrics(deps.Tel.Meter, s.inProgress.Load)
	if err != nil {
		return nil, err
	}
	s.m = m
	s.store.StepFinished = m.stepFinished
	s.engine = workflow.New(cfg.Workflow, s.store, deps.Domains, deps.Signer, deps.Keys)
	return s, nil
}

// Stats snapshots the counters.
func (s *Service) Stats() Stats {
	return Stats{Received: s.received.Load(), InProgress: s.inProgress.Load(), Provisioned: s.provisioned.Load(),
		Failed: s.failed.Load(), Retries: s.retries.Load()}
}

// Ready reports whether Run answers the profile, jobs, explain and device
// admin verbs (for service.Lifecycle.Ready: /readyz waits for them too).
func (s *Service) Ready(ctx context.Context) error { return s.adminReady.Ready(ctx) }

// Run consumes hellos, relays the outbox and answers admin verbs until ctx
// ends, then drains: in-flight jobs finish (or are handed back when the
// shutdown deadline of the caller's lifecycle passes).
func (s *Service) Run(ctx context.Context) error {
	cons, err := bus.EnsureConsumer(ctx, s.deps.JS, bus.ConsumerConfig{
		Durable:        s.cfg.Durable,
		FilterSubjects: []string{events.SubjectDeviceHello + ".>"},
		AckWait:        s.cfg.AckWait,
		// Unlimited: a hello comes back until its job has ended. The
		// provisioner gives up by the job's tries (settle), which a hello's
		// delivery count overstates (see settle).
		MaxDeliver:    0,
		MaxAckPending: max(s.cfg.Workers*4, 1024),
	})
	if err != nil {
		return fmt.Errorf("provisioner consumer: %w", err)
	}
	relayCfg := s.cfg.Relay
	// The relay publishes only the provisioning events this service writes
	// (the outbox table is shared; deploy/nats/accounts.conf).
	relayCfg.Topics = []string{events.SubjectProvisioning}
	relayCfg.Log, relayCfg.Telemetry = s.log, s.deps.Tel
	relay := outbox.NewRelay(s.deps.Pool, bus.NewPublisher(s.deps.JS, s.deps.Source, s.deps.Tel), relayCfg)
	adminOpts := s.cfg.Admin
	adminOpts.Log, adminOpts.Telemetry = s.log, s.deps.Tel
	srv := admin.NewServer(s.deps.NC, adminOpts)
	s.registerAdmin(srv)
	s.adminReady.Set(srv)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() { errs <- relayRun(ctx, relay) })
	wg.Go(func() { errs <- srv.Run(ctx) })
	sub, err := bus.Consume(ctx, cons, s.endpoint, bus.ConsumeOptions{Workers: s.cfg.Workers, Backoff: s.cfg.Backoff,
		Logger: s.log, Tel: s.deps.Tel, Name: s.cfg.Durable})
	if err != nil {
		cancel()
		wg.Wait()
		return fmt.Errorf("provisioner: %w", err)
	}
	var runErr error
	select {
	case <-ctx.Done():
	case <-sub.Done():
		runErr = sub.Err()
	case runErr = <-errs:
	}
	// Stop taking hellos and let in-flight jobs end; their events are in
	// the outbox, which the relay publishes while it still runs.
	stopErr := sub.Stop(context.WithoutCancel(ctx))
	<-sub.Done()
	cancel()
	wg.Wait()
	if runErr != nil {
		return fmt.Errorf("provisioner: %w", runErr)
	}
	return stopErr
}

func relayRun(ctx context.Context, r *outbox.Relay) error {
	err := r.Run(ctx)
	if ctx.Err() != nil {
		// Publish what the last jobs wrote before the relay stopped.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for {
			n, ferr := r.Flush(fctx)
			if ferr != nil || n == 0 {
				break
			}
		}
		return nil
	}
	return err
}

// endpoint is the go-kit endpoint bus.Consume calls per hello.
func (s *Service) endpoint(ctx context.Context, req any) (any, error) {
	env, ok := req.(events.Envelope)
	if !ok {
		return nil, fmt.Errorf("provisioner: request is %T: %w", req, bus.ErrTerminal)
	}
	return nil, s.HandleHello(ctx, env)
}

// HandleHello works on one hello event: it decides with the job store
// whether this is new work, a resumption, a duplicate of running work or
// stale, runs the workflow, and ends the job or hands it back. The error
// is the consume adapter's settle decision: nil acks, *bus.RetryAfterError
// redelivers later, ErrTerminal terminates.
func (s *Service) HandleHello(ctx context.Context, env events.Envelope) error {
	p, err := env.Decode()
	if err != nil {
		return fmt.Errorf("hello %s: %w", env.ID, err) // events.ErrInvalid: terminated
	}
	h, ok := p.(*events.DeviceHello)
	if !ok {
		return fmt.Errorf("hello %s: body is %T: %w", env.ID, p, bus.ErrTerminal)
	}
	u, err := amt.ParseUUID(h.UUID)
	if err != nil || u.IsZero() {
		return fmt.Errorf("hello %s: uuid %q: %w", env.ID, h.UUID, events.ErrInvalid)
	}
	h.UUID = u.String()
	s.received.Add(1)
	owner := s.cfg.Instance + "/" + strconv.FormatInt(s.seq.Add(1), 10)
	job, dec, err := s.store.Acquire(ctx, jobstore.Hello{UUID: h.UUID, SourceIP: h.SourceIP, EventID: env.ID, ReceivedAt: h.ReceivedAt}, owner, s.cfg.Lease)
	if err != nil {
		return fmt.Errorf("hello %s for %s: %w", env.ID, h.UUID, err) // database trouble: redeliver with backoff
	}
	s.count(ctx, s.m.hellos, attribute.String("decision", dec.String()))
	switch dec {
	case jobstore.Stale:
		s.log.DebugContext(ctx, "hello ignored: not newer than the device's last job", "uuid", h.UUID, "job", job.ID, "state", job.State)
		return nil
	case jobstore.Duplicate:
		if job.HelloEventID == env.ID {
			// Our own hello, redelivered while its job's lease lives: the
			// worker may be gone. Look again when the lease can have
			// expired, so a dead replica's job is taken over.
			return &bus.RetryAfterError{After: s.cfg.Lease/2 + time.Second, Err: errors.New("job leased by another worker")}
		}
		s.log.DebugContext(ctx, "hello acknowledged as duplicate: the device's job is running", "uuid", h.UUID, "job", job.ID)
		return nil
	}
	s.inProgress.Add(1)
	defer s.inProgress.Add(-1)
	res := s.runLeased(ctx, job, owner, h)
	return s.settle(ctx, job, owner, h.ReceivedAt, res)
}

// runLeased runs the workflow while a companion renews the lease; losing
// the lease cancels the run.
func (s *Service) runLeased(ctx context.Context, job jobstore.Job, owner string, h *events.DeviceHello) workflow.Result {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(s.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := s.store.Renew(rctx, job.ID, owner, s.cfg.Lease); errors.Is(err, jobstore.ErrLeaseLost) {
					cancel(err)
					return
				}
			}
		}
	}()
	res := s.engine.Run(rctx, job, owner, h)
	close(done)
	if cause := context.Cause(rctx); errors.Is(cause, jobstore.ErrLeaseLost) {
		res = workflow.Result{Retry: true, Err: cause, Outcome: jobstore.Outcome{Code: "LEASE_LOST"}}
	}
	return res
}

// settle ends or hands back the job after a run of the hello received at
// receivedAt.
func (s *Service) settle(ctx context.Context, job jobstore.Job, owner string, receivedAt time.Time, res workflow.Result) error {
	ctx = context.WithoutCancel(ctx) // record the outcome even when shutting down
	if errors.Is(res.Err, jobstore.ErrLeaseLost) {
		s.log.WarnContext(ctx, "job taken over by another worker", "uuid", job.UUID, "job", job.ID)
		return nil
	}
	o := res.Outcome
	if res.Retry {
		// Give up by the job's own tries: a hello's delivery count also
		// grows while it waits in a buffer past AckWait or bounces off a
		// leased job, and a job failed on that count was announced failed
		// and then provisioned on the device's next hello.
		if res.Tries < s.cfg.MaxDeliver {
			if err := s.store.Requeue(ctx, job.ID, owner, o.Code, o.Detail); err != nil {
				return fmt.Errorf("requeue job %d: %w", job.ID, err)
			}
			s.retries.Add(1)
			s.count(ctx, s.m.jobs, attribute.String("outcome", "retry"), attribute.String("code", o.Code))
			if bus.Delivery(ctx) == 0 {
				// Not a consumed hello (no redelivery to ask for): the job
				// resumes on the device's next hello.
				s.log.InfoContext(ctx, "job queued until the device's next hello", "uuid", job.UUID, "job", job.ID, "code", o.Code)
				return nil
			}
			return &bus.RetryAfterError{After: backoffFor(res.Tries, s.cfg.Backoff), Err: res.Err}
		}
		// Out of tries: the transient failure is final.
		o.Hint = errcode.Lookup(errcode.Code(o.Code)).Hint
		o.Detail = fmt.Sprintf("gave up after %d attempts: %s", res.Tries, o.Detail)
	}
	if err := s.store.Finish(ctx, job, owner, o); err != nil {
		if errors.Is(err, jobstore.ErrLeaseLost) {
			return nil
		}
		return fmt.Errorf("finish job %d: %w", job.ID, err)
	}
	if o.Succeeded {
		s.provisioned.Add(1)
		s.count(ctx, s.m.jobs, attribute.String("outcome", "succeeded"), attribute.String("code", ""))
		s.m.provisioned(ctx, receivedAt, time.Now())
		s.log.InfoContext(ctx, "device provisioned", "uuid", job.UUID, "job", job.ID, "attempt", job.Attempt)
	} else {
		s.failed.Add(1)
		s.count(ctx, s.m.jobs, attribute.String("outcome", "failed"), attribute.String("code", o.Code))
		s.log.WarnContext(ctx, "provisioning failed", "uuid", job.UUID, "job", job.ID, "step", o.Step, "code", o.Code, "detail", o.Detail)
	}
	return nil
}

func (s *Service) count(ctx context.Context, c metric.Int64Counter, attrs ...attribute.KeyValue) {
	c.Add(ctx, 1, metric.WithAttributes(attrs...))
}

// backoffFor is the redelivery delay after the job's tries-th run (a run
// that got no try counted, 0, waits like the first).
func backoffFor(tries int, schedule []time.Duration) time.Duration {
	return schedule[min(max(tries, 1)-1, len(schedule)-1)]
}

// EnsureDefaultProfile creates profile name as the default when there is
// no default profile yet (`amtprov dev`).
func EnsureDefaultProfile(ctx context.Context, pool *pgxpool.Pool, name string, settings ProfileSettings) error {
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM profiles WHERE is_default)`).Scan(&exists); err != nil {
		return fmt.Errorf("look for a default profile: %w", err)
	}
	if exists {
		return nil
	}
	_, err := jobstore.New(pool, "").CreateProfile(ctx, jobstore.Profile{Name: name, IsDefault: true, Settings: settings})
	if errors.Is(err, jobstore.ErrExists) {
		return nil
	}
	return err
}
