package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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

// Publisher publishes events to the AMT stream. It is safe for concurrent
// use.
type Publisher struct {
	js         jetstream.JetStream
	source     string
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	published  metric.Int64Counter

	// outcomeOpts caches the counter's attribute set per subject prefix and
	// outcome: building one per publish was a measurable share of the hello
	// listener's CPU (docs/benchmarks.md).
	outcomeOpts sync.Map // prefix + "\x00" + outcome -> metric.AddOption
}

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
	return &Publisher{js: js, source: source, tracer: tel.Tracer.Tracer(scope), propagator: tel.Propagator, published: published}
}

// Publish builds the envelope of payload with events.New (id should be
// derived from the fact reported, so retries are de-duplicated; "" gets a
// random id) and publishes it like PublishEnvelope.
func (p *Publisher) Publish(ctx context.Context, payload events.Payload, id string) error {
	env, err := events.New(p.source, payload, id)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return p.PublishEnvelope(ctx, env)
}

// PublishEnvelope publishes env to its subject with the CloudEvents headers,
// Nats-Msg-Id = ce-id, and the W3C trace context of ctx, inside a producer
// span. It returns once JetStream has stored the event (PubAck); a
// duplicate within the stream's window counts as success. Transient
// failures (no stream leader yet, timeouts) are retried with capped backoff
// until ctx ends.
func (p *Publisher) PublishEnvelope(ctx context.Context, env events.Envelope) error {
	k, ok := events.KindOf(env.Type)
	if !ok || !strings.HasPrefix(env.Topic, k.Prefix+".") || env.ID == "" || env.Source == "" {
		return fmt.Errorf("publish %q on %q: %w: not a well-formed envelope", env.Type, env.Topic, events.ErrInvalid)
	}
	ctx, span := p.tracer.Start(ctx, "send "+k.Prefix,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attrSystem.String("nats"),
			attrDestination.String(env.Topic),
			attrOperationType.String("send"),
			attrMessageID.String(env.ID),
			attrCEType.String(env.Type),
		))
	defer span.End()

	msg := &nats.Msg{Subject: env.Topic, Header: nats.Header(env.Headers()), Data: env.Data}
	p.propagator.Inject(ctx, headerCarrier(msg.Header))

	var ack *jetstream.PubAck
	op := func() error {
		a, err := p.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(events.StreamName))
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
	outcome := "ok"
	switch {
	case err != nil:
		outcome = "error"
		span.RecordError(err)
		span.SetStatus(codes.Error, "publish failed")
	case ack.Duplicate:
		outcome = "duplicate"
	}
	if outcome == "duplicate" {
		// Only when true: growing the span's attribute slice on every
		// publish costs an allocation and a copy.
		span.SetAttributes(attrDuplicate.Bool(true))
	}
	p.published.Add(ctx, 1, p.outcomeOpt(k.Prefix, outcome))
	if err != nil {
		return fmt.Errorf("publish %s %s: %w", env.Topic, env.ID, err)
	}
	return nil
}

// outcomeOpt returns the cached attribute set of the published counter.
func (p *Publisher) outcomeOpt(prefix, outcome string) metric.AddOption {
	key := prefix + "\x00" + outcome
	if opt, ok := p.outcomeOpts.Load(key); ok {
		return opt.(metric.AddOption)
	}
	opt, _ := p.outcomeOpts.LoadOrStore(key, metric.WithAttributeSet(attribute.NewSet(attrSubjectPrefix.String(prefix), attrOutcome.String(outcome))))
	return opt.(metric.AddOption)
}

// transientPublishError reports failures worth retrying while ctx lives:
// the stream has no leader or responder yet, or one attempt timed out.
// Unlike a JetStream API call (transientAPIError), a publish also retries
// "no responders": the stream may be between leaders, and an event must not
// be dropped for it.
func transientPublishError(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		transientAPIError(ctx, err)
}
