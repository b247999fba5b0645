package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/telemetry"
)

// instrumentation scope of the spans and metrics of this package.
const scope = "github.com/amtprov/amtprov/libs/bus"

// Span and metric attribute keys (OpenTelemetry messaging conventions where
// one exists).
const (
	attrSystem        = attribute.Key("messaging.system")
	attrDestination   = attribute.Key("messaging.destination.name")
	attrOperationType = attribute.Key("messaging.operation.type")
	attrMessageID     = attribute.Key("messaging.message.id")
	attrConsumerGroup = attribute.Key("messaging.consumer.group.name")
	attrDeliveryCount = attribute.Key("messaging.nats.delivery_count")
	attrDuplicate     = attribute.Key("messaging.nats.duplicate")
	attrCEType        = attribute.Key("cloudevents.event_type")
	attrSubjectPrefix = attribute.Key("subject_prefix")
	attrOutcome       = attribute.Key("outcome")
	attrConsumer      = attribute.Key("consumer")
	attrState         = attribute.Key("state")
)

// publishRetryMax caps the in-process retries of one publish when the
// caller's ctx has no earlier deadline; de-duplication by Nats-Msg-Id makes
// retrying safe.
const publishRetryMax = 30 * time.Second

// publishAttemptTimeout bounds one publish attempt when the caller's ctx has
// no deadline (jetstream's default API timeout).
const publishAttemptTimeout = 5 * time.Second

// Publisher publishes events to the AMT stream. It is safe for concurrent
// use.
type Publisher struct {
	nc         *nats.Conn
	source     string
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	published  metric.Int64Counter

	// outcomeOpts holds the counter's attribute set per subject prefix and
	// outcome, built once for every event kind and only read after: building
	// one per publish was a measurable share of the hello listener's CPU
	// (docs/benchmarks.md).
	outcomeOpts map[string]*[numOutcomes]metric.AddOption
}

// Outcomes of a publish, as the published counter labels them.
const (
	outcomeOK = iota
	outcomeDuplicate
	outcomeError
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "duplicate", "error"}

// NewPublisher returns a publisher whose events carry ce-source source
// (e.g. "/hello-listener/host-1").
func NewPublisher(js jetstream.JetStream, source string, tel telemetry.Providers) *Publisher {
	tel = withDefaults(tel)
	m := tel.Meter.Meter(scope)
	published, err := m.Int64Counter("amtprov.bus.published",
		metric.WithDescription("Events published to JetStream, by subject prefix and outcome (ok, duplicate, error)."),
		metric.WithUnit("{message}"))
	if err != nil {
		published = noopCounter()
	}
	p := &Publisher{nc: js.Conn(), source: source, tracer: tel.Tracer.Tracer(scope), propagator: tel.Propagator, published: published,
		outcomeOpts: map[string]*[numOutcomes]metric.AddOption{}}
	for _, k := range events.Kinds() {
		var opts [numOutcomes]metric.AddOption
		for o, name := range outcomeNames {
			opts[o] = metric.WithAttributeSet(attribute.NewSet(attrSubjectPrefix.String(k.Prefix), attrOutcome.String(name)))
		}
		p.outcomeOpts[k.Prefix] = &opts
	}
	return p
}

// Publish builds the envelope of payload with events.New (id should be
// derived from the fact reported, so retries are de-duplicated; "" gets a
// random id) and publishes it like PublishEnvelope.
func (p *Publisher) Publish(ctx context.Context, payload events.Payload, id string, opts ...PublishOption) error {
	env, err := events.New(p.source, payload, id)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	var o publishOptions
	for _, opt := range opts {
		opt(&o)
	}
	return p.publishEnvelope(ctx, env, o)
}

// PublishOption changes one publish.
type PublishOption func(*publishOptions)

type publishOptions struct {
	inCallerSpan bool
}

// InCallerSpan makes the span already in ctx stand for the send: no producer
// span is started and that span's context travels in the headers. The
// caller starts its span with SendAttributes among its attributes. For a
// caller whose span exists only to send one event (the hello listener's span
// per hello), a second span doubled the tracing cost of the hot path for no
// information.
func InCallerSpan() PublishOption { return func(o *publishOptions) { o.inCallerSpan = true } }

// SendAttributes appends the messaging attributes of a send of the event
// (topic, ce-id, ce-type) to attrs: what the producer span of a publish
// carries, for a caller that publishes InCallerSpan.
func SendAttributes(attrs []attribute.KeyValue, topic, id, ceType string) []attribute.KeyValue {
	return append(attrs,
		attrSystem.String("nats"),
		attrDestination.String(topic),
		attrOperationType.String("send"),
		attrMessageID.String(id),
		attrCEType.String(ceType),
	)
}

// PublishEnvelope publishes env to its subject with the CloudEvents headers,
// Nats-Msg-Id = ce-id, and the W3C trace context of ctx, inside a producer
// span. It returns once JetStream has stored the event (PubAck); a
// duplicate within the stream's window counts as success. Transient
// failures (no stream leader yet, timeouts) are retried with capped backoff
// until ctx ends.
func (p *Publisher) PublishEnvelope(ctx context.Context, env events.Envelope) error {
	return p.publishEnvelope(ctx, env, publishOptions{})
}

func (p *Publisher) publishEnvelope(ctx context.Context, env events.Envelope, o publishOptions) error {
	k, ok := events.KindOf(env.Type)
	if !ok || !strings.HasPrefix(env.Topic, k.Prefix+".") || env.ID == "" || env.Source == "" {
		return fmt.Errorf("publish %q on %q: %w: not a well-formed envelope", env.Type, env.Topic, events.ErrInvalid)
	}
	var span trace.Span
	if o.inCallerSpan {
		span = trace.SpanFromContext(ctx)
	} else {
		var attrs [5]attribute.KeyValue
		ctx, span = p.tracer.Start(ctx, "send "+k.Prefix, trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(SendAttributes(attrs[:0], env.Topic, env.ID, env.Type)...))
		defer span.End()
	}

	msg := &nats.Msg{Subject: env.Topic, Header: nats.Header(env.Headers()), Data: env.Data}
	p.propagator.Inject(ctx, headerCarrier(msg.Header))

	msg.Header[jetstream.ExpectedStreamHeader] = expectStream
	var ack pubAck
	op := func() error {
		a, err := p.request(ctx, msg)
		if err != nil {
			if transientPublishError(ctx, err) {
				return err
			}
			return backoff.Permanent(err)
		}
		ack = a
		return nil
	}
	// The first attempt runs inline: almost every publish succeeds at once,
	// and the backoff machinery costs allocations on the hot path.
	err := op()
	var perm *backoff.PermanentError
	if err != nil && !errors.As(err, &perm) {
		b := backoff.NewExponentialBackOff()
		b.InitialInterval = 50 * time.Millisecond
		b.MaxInterval = 2 * time.Second
		b.MaxElapsedTime = publishRetryMax
		err = backoff.Retry(op, backoff.WithContext(b, ctx))
	}
	if errors.As(err, &perm) {
		err = perm.Err
	}
	outcome := outcomeOK
	switch {
	case err != nil:
		outcome = outcomeError
		span.RecordError(err)
		span.SetStatus(codes.Error, "publish failed")
	case ack.duplicate:
		outcome = outcomeDuplicate
		// Only when true: growing the span's attribute slice on every
		// publish costs an allocation and a copy.
		span.SetAttributes(attrDuplicate.Bool(true))
	}
	p.published.Add(ctx, 1, p.outcomeOpts[k.Prefix][outcome]) // every kind's prefix is in the map (NewPublisher)
	if err != nil {
		return fmt.Errorf("publish %s %s: %w", env.Topic, env.ID, err)
	}
	return nil
}

// expectStream is the Nats-Expected-Stream value of every publish: the
// server refuses an event whose subject some other stream captured.
var expectStream = []string{events.StreamName}

// pubAck is what a publish needs of JetStream's PubAck.
type pubAck struct {
	seq       uint64
	duplicate bool
}

// request is jetstream.PublishMsg for this package's one case (the
// expected-stream header already set, retries done by the caller), without
// its option handling and its reflective decoding of every PubAck: those
// were ≈ 5 µs of a hello's publish (docs/benchmarks.md).
func (p *Publisher) request(ctx context.Context, msg *nats.Msg) (pubAck, error) {
	if _, ok := ctx.Deadline(); !ok {
		// Like jetstream.PublishMsg: an attempt without a deadline would
		// wait forever for a PubAck lost in a leader change.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, publishAttemptTimeout)
		defer cancel()
	}
	resp, err := p.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return pubAck{}, jetstream.ErrNoStreamResponse
		}
		return pubAck{}, err
	}
	return parsePubAck(resp.Data)
}

// pubAckPrefix starts the PubAck nats-server 2.15 writes for the AMT stream
// without a JetStream domain: {"stream":"AMT","seq":N} with
// ,"duplicate": true before the brace for a duplicate.
var pubAckPrefix = []byte(`{"stream":"` + events.StreamName + `","seq":`)

// parsePubAck reads a PubAck. The server's fixed layout is read directly;
// anything else (a domain, an error, another server's spacing) goes through
// encoding/json, with jetstream.PublishMsg's errors.
func parsePubAck(data []byte) (pubAck, error) {
	if rest, ok := bytes.CutPrefix(data, pubAckPrefix); ok {
		i := 0
		var seq uint64
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' && i < 20 {
			seq = seq*10 + uint64(rest[i]-'0')
			i++
		}
		if i > 0 && i < 20 && (rest[0] != '0' || i == 1) { // JSON has no leading zeros
			switch string(rest[i:]) {
			case "}":
				return pubAck{seq: seq}, nil
			case `,"duplicate": true}`, `,"duplicate":true}`:
				return pubAck{seq: seq, duplicate: true}, nil
			}
		}
	}
	var r struct {
		Error *jetstream.APIError `json:"error,omitempty"`
		jetstream.PubAck
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return pubAck{}, jetstream.ErrInvalidJSAck
	}
	if r.Error != nil {
		return pubAck{}, fmt.Errorf("nats: %w", r.Error)
	}
	if r.Stream == "" {
		return pubAck{}, jetstream.ErrInvalidJSAck
	}
	return pubAck{seq: r.Sequence, duplicate: r.Duplicate}, nil
}

// transientPublishError reports failures worth retrying while ctx lives:
// the stream has no leader or responder yet, or one attempt timed out.
// Unlike a JetStream API call (transientAPIError), a publish also retries
// "no responders" (which request reports as jetstream.ErrNoStreamResponse):
// the stream may be between leaders, and an event must not be dropped for it.
func transientPublishError(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	return errors.Is(err, jetstream.ErrNoStreamResponse) || transientAPIError(ctx, err)
}
