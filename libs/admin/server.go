package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/kit/endpoint"
	kitnats "github.com/go-kit/kit/transport/nats"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/amtprov/amtprov/libs/telemetry"
)

const scope = "github.com/amtprov/amtprov/libs/admin"

// MaxRequestSize bounds a request body; bigger requests get BAD_REQUEST
// (the NATS server's own max_payload, 1 MiB by default, applies too).
const MaxRequestSize = 1 << 20

// ServerOptions configure a Server; zero values take the defaults.
type ServerOptions struct {
	// Queue is the queue group replicas share: QueueGroup(service) for
	// admin verbs, "certauthority" for amt.v1.ca.sign. Required.
	Queue string
	// Timeout bounds one request's handling (default 30 s).
	Timeout time.Duration
	// MaxInFlight bounds concurrent requests per server (default 64); more
	// wait in the NATS client's buffer.
	MaxInFlight int
	// Log receives internal errors (the caller sees only INTERNAL).
	Log       *slog.Logger
	Telemetry telemetry.Providers
}

// Server answers request/reply subjects with go-kit endpoints over go-kit's
// NATS transport. Register verbs with Handle or HandleEndpoint, then Run (or
// Start and Stop).
type Server struct {
	nc   *nats.Conn
	opts ServerOptions

	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	requests metric.Int64Counter
	latency  metric.Float64Histogram

	mu      sync.Mutex
	routes  map[string]*kitnats.Subscriber
	subs    []*nats.Subscription
	started bool
	serving bool // subscribed and flushed, not stopping (Ready)

	sem      chan struct{}
	inFlight sync.WaitGroup
}

// NewServer returns a server on nc; nothing is subscribed until Start.
func NewServer(nc *nats.Conn, opts ServerOptions) *Server {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 64
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	tel := opts.Telemetry
	if tel.Tracer == nil {
		tel.Tracer = tracenoop.NewTracerProvider()
	}
	if tel.Meter == nil {
		tel.Meter = metricnoop.NewMeterProvider()
	}
	if tel.Propagator == nil {
		tel.Propagator = telemetry.NewPropagator()
	}
	m := tel.Meter.Meter(scope)
	requests, err := m.Int64Counter("amtprov.rpc.requests",
		metric.WithDescription("Request/reply calls served, by subject and reply code (OK or an error code)."),
		metric.WithUnit("{request}"))
	if err != nil {
		requests = metricnoop.Int64Counter{}
	}
	latency, err := m.Float64Histogram("amtprov.rpc.duration",
		metric.WithDescription("Time to serve one request/reply call, by subject."),
		metric.WithUnit("s"))
	if err != nil {
		latency = metricnoop.Float64Histogram{}
	}
	return &Server{
		nc: nc, opts: opts,
		tracer: tel.Tracer.Tracer(scope), prop: tel.Propagator,
		requests: requests, latency: latency,
		routes: map[string]*kitnats.Subscriber{},
		sem:    make(chan struct{}, opts.MaxInFlight),
	}
}

// DecodeFunc turns a request body into the endpoint's request value. Return
// an *Error (usually BAD_REQUEST) for a body the caller got wrong.
type DecodeFunc func(ctx context.Context, body []byte) (any, error)

// Handle registers fn for subject: the body is decoded as JSON into Req (an
// empty body gives the zero Req), and fn's result is the reply's "result".
func Handle[Req, Resp any](s *Server, subject string, fn func(context.Context, Req) (Resp, error)) {
	ep := func(ctx context.Context, req any) (any, error) { return fn(ctx, req.(Req)) }
	s.HandleEndpoint(subject, ep, DecodeJSON[Req])
}

// DecodeJSON decodes a JSON body into a Req; an empty body is the zero Req.
func DecodeJSON[Req any](_ context.Context, body []byte) (any, error) {
	var req Req
	if len(body) == 0 {
		return req, nil
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, Errorf(CodeBadRequest, "request is not valid JSON for this verb: %v", err)
	}
	return req, nil
}

// HandleEndpoint registers a go-kit endpoint for subject with its decoder.
// It panics when called after Start or twice for one subject: both are
// wiring bugs.
func (s *Server) HandleEndpoint(subject string, ep endpoint.Endpoint, dec DecodeFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		panic("admin: HandleEndpoint " + subject + " after Start")
	}
	if _, dup := s.routes[subject]; dup {
		panic("admin: subject " + subject + " registered twice")
	}
	s.routes[subject] = kitnats.NewSubscriber(
		s.withTimeout(ep),
		func(ctx context.Context, msg *nats.Msg) (any, error) {
			if len(msg.Data) > MaxRequestSize {
				return nil, Errorf(CodeBadRequest, "request is %d bytes, limit %d", len(msg.Data), MaxRequestSize)
			}
			return dec(ctx, msg.Data)
		},
		encodeResult,
		kitnats.SubscriberBefore(s.before(subject)),
		kitnats.SubscriberErrorEncoder(s.encodeError),
		kitnats.SubscriberFinalizer(s.finish),
	)
}

func (s *Server) withTimeout(ep endpoint.Endpoint) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
		defer cancel()
		return ep(ctx, req)
	}
}

// call is the per-request state the transport hooks share.
type call struct {
	subject string
	start   time.Time
	span    trace.Span
	code    string // "OK" unless encodeError ran
}

type callKey struct{}

// before continues the caller's trace, starts the server span and carries
// the caller's identity into ctx.
func (s *Server) before(subject string) kitnats.RequestFunc {
	return func(ctx context.Context, msg *nats.Msg) context.Context {
		if msg.Header != nil {
			ctx = s.prop.Extract(ctx, natsCarrier(msg.Header))
			if a := msg.Header.Get(HeaderActor); a != "" {
				ctx = WithActor(ctx, truncate(a, 200))
			}
		}
		ctx, span := s.tracer.Start(ctx, subject, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("messaging.system", "nats"),
				attribute.String("messaging.destination.name", subject),
				attribute.String("rpc.system", "amtprov.admin")))
		return context.WithValue(ctx, callKey{}, &call{subject: subject, start: time.Now(), span: span, code: "OK"})
	}
}

func (s *Server) finish(ctx context.Context, _ *nats.Msg) {
	c, ok := ctx.Value(callKey{}).(*call)
	if !ok {
		return
	}
	attrs := metric.WithAttributes(attribute.String("subject", c.subject), attribute.String("code", c.code))
	s.requests.Add(ctx, 1, attrs)
	s.latency.Record(ctx, time.Since(c.start).Seconds(), metric.WithAttributes(attribute.String("subject", c.subject)))
	c.span.SetAttributes(attribute.String("amtprov.reply.code", c.code))
	c.span.End()
}

// reply is the wire shape of every answer.
type reply struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

func encodeResult(_ context.Context, subject string, nc *nats.Conn, resp any) error {
	b, err := json.Marshal(resp)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	out, err := json.Marshal(reply{Result: b})
	if err != nil {
		return fmt.Errorf("encode reply: %w", err)
	}
	if err := nc.Publish(subject, out); err != nil {
		return fmt.Errorf("publish reply: %w", err)
	}
	return nil
}

// classify is the one place an error becomes what the caller sees: an
// *Error in the chain is passed on; a deadline is TIMEOUT; anything else is
// INTERNAL without its text (it may name internals), and internal is true
// so that it is logged.
func classify(err error) (e *Error, internal bool) {
	if errors.As(err, &e) {
		return &Error{Code: e.Code, Message: e.Message}, false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Errorf(CodeTimeout, "the service did not finish in time"), true
	}
	return Errorf(CodeInternal, "internal error; the service logged the details"), true
}

// encodeError is the server's only error encoder.
func (s *Server) encodeError(ctx context.Context, err error, subject string, nc *nats.Conn) {
	e, internal := classify(err)
	if c, ok := ctx.Value(callKey{}).(*call); ok {
		c.code = e.Code
		if internal {
			c.span.RecordError(err)
			c.span.SetStatus(codes.Error, e.Code)
		}
	}
	if internal {
		s.opts.Log.ErrorContext(ctx, "request failed", "subject", callSubject(ctx), "code", e.Code, "err", err)
	}
	out, merr := json.Marshal(reply{Error: e})
	if merr != nil {
		s.opts.Log.ErrorContext(ctx, "encode error reply", "err", merr)
		return
	}
	if perr := nc.Publish(subject, out); perr != nil {
		s.opts.Log.WarnContext(ctx, "publish error reply", "err", perr)
	}
}

func callSubject(ctx context.Context) string {
	if c, ok := ctx.Value(callKey{}).(*call); ok {
		return c.subject
	}
	return ""
}

// Start subscribes every registered subject in the queue group.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("admin: server already started")
	}
	if s.opts.Queue == "" {
		return errors.New("admin: ServerOptions.Queue is required")
	}
	s.started = true
	for subject, sub := range s.routes {
		serve := sub.ServeMsg(s.nc)
		ns, err := s.nc.QueueSubscribe(subject, s.opts.Queue, func(msg *nats.Msg) {
			s.sem <- struct{}{}
			s.inFlight.Add(1)
			go func() {
				defer func() { <-s.sem; s.inFlight.Done() }()
				serve(msg)
			}()
		})
		if err != nil {
			for _, prev := range s.subs {
				_ = prev.Unsubscribe()
			}
			s.subs = nil
			return fmt.Errorf("admin: subscribe %s in queue %s: %w", subject, s.opts.Queue, err)
		}
		s.subs = append(s.subs, ns)
	}
	// Make sure the server knows the subscriptions before callers are told
	// we are ready.
	if err := s.nc.Flush(); err != nil {
		return fmt.Errorf("admin: flush subscriptions: %w", err)
	}
	s.serving = true
	return nil
}

// errNotServing is Ready's answer before Start and from Stop on.
var errNotServing = errors.New("admin subjects not subscribed")

// ReadyCheck is the readiness of the servers a service runs. A service
// creates its servers inside its Run, after its main registered the check
// (service.Lifecycle.Ready(name, check.Ready)); Run hands them over with Set.
// The zero value is not ready.
type ReadyCheck struct{ srvs atomic.Pointer[[]*Server] }

// Set makes the check follow srvs.
func (c *ReadyCheck) Set(srvs ...*Server) { c.srvs.Store(&srvs) }

// Ready reports nil once every server given to Set is ready.
func (c *ReadyCheck) Ready(ctx context.Context) error {
	p := c.srvs.Load()
	if p == nil {
		return errNotServing
	}
	for _, s := range *p {
		if err := s.Ready(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Ready reports whether the server answers: Start subscribed its subjects
// and Stop has not begun. It suits service.Lifecycle.Ready, so that a
// service's /readyz (and so `amtprov up`'s and `amtprov dev`'s ready lines)
// waits for its admin verbs, not only for its database and bus.
func (s *Server) Ready(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.serving {
		return errNotServing
	}
	return nil
}

// Stop drains the subscriptions (requests already received are answered)
// and waits for in-flight requests, or until ctx ends.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	subs := s.subs
	s.subs, s.serving = nil, false
	s.mu.Unlock()
	var errs []error
	for _, sub := range subs {
		if err := sub.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
			errs = append(errs, fmt.Errorf("drain %s: %w", sub.Subject, err))
		}
	}
	// Drain completes asynchronously; poll until each subscription is gone.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for _, sub := range subs {
		for sub.IsValid() {
			select {
			case <-ctx.Done():
				return errors.Join(append(errs, fmt.Errorf("admin: stop: drain %s: %w", sub.Subject, ctx.Err()))...)
			case <-tick.C:
			}
		}
	}
	done := make(chan struct{})
	go func() { s.inFlight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return errors.Join(append(errs, fmt.Errorf("admin: stop: requests still in flight: %w", ctx.Err()))...)
	}
	return errors.Join(errs...)
}

// Run starts the server, serves until ctx ends, then stops it within 10 s.
// It suits libs/service's Lifecycle.Go.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return s.Stop(sctx)
}

// natsCarrier adapts NATS headers to the OpenTelemetry propagator
// (lower-case keys as the W3C propagator writes them; Get falls back to a
// case-insensitive match).
type natsCarrier nats.Header

func (c natsCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

func (c natsCarrier) Set(key, value string) { c[key] = []string{value} }

func (c natsCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
