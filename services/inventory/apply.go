package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/services/inventory/internal/pgstore"
	"github.com/amtprov/amtprov/services/inventory/internal/record"
)

const (
	// writeRetryFor bounds in-process retries of a batch the database could
	// not take; after that the messages go back to JetStream.
	writeRetryFor = 3 * time.Second
	// maxLinks caps the links from a batch span to its messages' spans.
	maxLinks = 128
)

// Apply applies one event: it looks up the handler for the event's type,
// derives the update, and waits until the batch holding it is committed.
// The error is nil when the event is durably applied or deliberately
// ignored; it wraps events.ErrInvalid when the event can never be applied
// (terminate it), and is anything else when it may succeed later.
func (s *Service) Apply(ctx context.Context, env events.Envelope) error {
	if mh, ok := s.multi[env.Type]; ok {
		return s.applyMany(ctx, env, mh)
	}
	h, ok := s.handlers[env.Type]
	if !ok {
		s.count(ctx, env.Type, "ignored")
		return nil
	}
	p, err := env.Decode()
	if err != nil {
		s.count(ctx, env.Type, "invalid")
		return err
	}
	u, err := h(env, p)
	if err != nil {
		s.count(ctx, env.Type, "invalid")
		return err
	}
	if u == nil {
		s.count(ctx, env.Type, "ignored")
		return nil
	}
	if err := s.batches.Submit(ctx, pending{update: *u, span: trace.SpanContextFromContext(ctx)}); err != nil {
		s.count(ctx, env.Type, "failed")
		return fmt.Errorf("apply %s %s: %w", env.Type, env.ID, err)
	}
	// The event's own trace (the consumer span) shows when its rows were
	// committed; the batch span links back to it.
	trace.SpanFromContext(ctx).AddEvent("inventory rows committed")
	s.count(ctx, env.Type, "applied")
	return nil
}

// maxManyPerTx bounds the devices one transaction of applyMany writes.
const maxManyPerTx = 2000

// applyMany applies an event about many devices in transactions of its own,
// outside the batcher, with the batch writer's retries. Replaying it is
// harmless: every group it sets keeps the newest mark.
func (s *Service) applyMany(ctx context.Context, env events.Envelope, h multiHandler) error {
	p, err := env.Decode()
	if err != nil {
		s.count(ctx, env.Type, "invalid")
		return err
	}
	us, err := h(env, p)
	if err != nil {
		s.count(ctx, env.Type, "invalid")
		return err
	}
	if len(us) == 0 {
		s.count(ctx, env.Type, "ignored")
		return nil
	}
	span := trace.SpanContextFromContext(ctx)
	for start := 0; start < len(us); start += maxManyPerTx {
		chunk := us[start:min(start+maxManyPerTx, len(us))]
		items := make([]pending, len(chunk))
		for i, u := range chunk {
			items[i] = pending{update: u, span: span}
		}
		if err := s.writeBatch(ctx, items); err != nil {
			s.count(ctx, env.Type, "failed")
			return fmt.Errorf("apply %s %s: %w", env.Type, env.ID, err)
		}
	}
	s.count(ctx, env.Type, "applied")
	return nil
}

// Outcomes of one event, the values of the "outcome" metric attribute.
var outcomes = []string{"applied", "ignored", "invalid", "failed"}

// eventAttrs precomputes the attribute sets of the events counter: building
// them per event cost several percent of ingest CPU.
func eventAttrs() map[[2]string]metric.AddOption {
	m := make(map[[2]string]metric.AddOption)
	for _, k := range events.Kinds() {
		for _, o := range outcomes {
			m[[2]string{k.Type, o}] = metric.WithAttributeSet(attribute.NewSet(attribute.String("type", k.Type), attribute.String("outcome", o)))
		}
	}
	return m
}

func (s *Service) count(ctx context.Context, typ, outcome string) {
	opt, ok := s.m.eventAttrs[[2]string{typ, outcome}]
	if !ok {
		opt = metric.WithAttributes(attribute.String("type", typ), attribute.String("outcome", outcome))
	}
	s.m.events.Add(ctx, 1, opt)
}

// errRefused marks a batch the database refused for its content: retrying
// cannot help, splitting may isolate the culprit.
var errRefused = errors.New("database refused the update")

func splitBatch(err error) bool { return errors.Is(err, errRefused) }

// writeBatch is the batcher's flush: one transaction for the whole batch,
// retried briefly while the database is unreachable.
func (s *Service) writeBatch(ctx context.Context, items []pending) error {
	links := make([]trace.Link, 0, min(len(items), maxLinks))
	for _, it := range items {
		if it.span.IsValid() && len(links) < maxLinks {
			links = append(links, trace.Link{SpanContext: it.span})
		}
	}
	ctx, span := s.tracer.Start(ctx, "inventory.write_batch", trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int("inventory.batch.size", len(items))))
	defer span.End()
	start := time.Now()

	updates := make([]record.Update, len(items))
	for i, it := range items {
		updates[i] = it.update
	}
	b := backoff.WithContext(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(50*time.Millisecond),
		backoff.WithMaxInterval(time.Second),
		backoff.WithMaxElapsedTime(writeRetryFor),
	), ctx)
	err := backoff.Retry(func() error {
		err := s.repo.Apply(ctx, updates)
		switch {
		case err == nil || pgstore.Retryable(err):
			return err
		case pgstore.Refused(err):
			return backoff.Permanent(fmt.Errorf("%w: %w", errRefused, err))
		}
		// Neither transient nor about the data (a bug, a schema mismatch
		// during a rolling upgrade): JetStream redelivers later.
		return backoff.Permanent(err)
	}, b)
	var perm *backoff.PermanentError
	if errors.As(err, &perm) {
		err = perm.Err
	}

	s.m.batchSize.Record(ctx, int64(len(items)))
	s.m.batchDur.Record(ctx, time.Since(start).Seconds())
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "write batch")
		s.log.WarnContext(ctx, "inventory batch not written", "size", len(items), "err", err)
		if errors.Is(err, errRefused) && len(items) == 1 {
			// One event the database will never take: terminate it.
			return fmt.Errorf("%w: %w", events.ErrInvalid, err)
		}
	}
	return err
}
