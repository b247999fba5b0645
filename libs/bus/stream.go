package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtprov/amtprov/libs/events"
)

// StreamConfig tunes the AMT stream. Zero values take the defaults.
type StreamConfig struct {
	Replicas   int           // default 1; 3 on a NATS cluster
	Duplicates time.Duration // de-duplication window for Nats-Msg-Id; default 2m
	MaxAge     time.Duration // 0 keeps events forever
	MaxBytes   int64         // 0 means no size limit
}

// Stream defaults.
const (
	DefaultReplicas   = 1
	DefaultDuplicates = 2 * time.Minute
)

// EnsureStream creates the AMT stream (events.StreamName, subjects
// events.StreamSubjectList(), file storage, limits retention so every consumer
// sees every event) or updates it to cfg.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	if cfg.Replicas == 0 {
		cfg.Replicas = DefaultReplicas
	}
	if cfg.Duplicates == 0 {
		cfg.Duplicates = DefaultDuplicates
	}
	if cfg.Replicas < 0 || cfg.Duplicates < 0 || cfg.MaxAge < 0 || cfg.MaxBytes < 0 {
		return nil, fmt.Errorf("ensure stream %s: negative setting in %+v", events.StreamName, cfg)
	}
	maxBytes := cfg.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1 // JetStream's "unlimited"
	}
	want := jetstream.StreamConfig{
		Name:        events.StreamName,
		Description: "amtprov events (libs/events, docs/asyncapi.yaml)",
		Subjects:    events.StreamSubjectList(),
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.Duplicates,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    maxBytes,
		MaxMsgs:     -1,
	}
	// Every replica of every service ensures the stream at start-up. An
	// update only when the stream differs: besides sparing the cluster a
	// configuration change per process start, nats-server v2.15.2 races
	// internally between a stream update and a consumer being created on
	// that stream (race detector, CI 2026-11-26), which starting replicas
	// otherwise trigger all the time.
	var s jetstream.Stream
	op := func() error {
		var err error
		s, err = ensureStreamOnce(ctx, js, want)
		if err != nil && !transientAPIError(ctx, err) {
			return backoff.Permanent(err)
		}
		return err
	}
	// A stream without a leader (a NATS node restarting, a cluster still
	// forming) answers nothing for a while: retry, so that a service
	// started meanwhile waits instead of exiting.
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = ensureRetryMax
	err := backoff.Retry(op, backoff.WithContext(b, ctx))
	var perm *backoff.PermanentError
	if errors.As(err, &perm) {
		err = perm.Err
	}
	if errors.Is(err, nats.ErrNoResponders) {
		err = fmt.Errorf("%w (is JetStream enabled on the NATS server?)", err)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ensureRetryMax bounds EnsureStream's retries when ctx has no earlier
// deadline.
const ensureRetryMax = 2 * time.Minute

// transientAPIError reports JetStream API failures worth retrying while
// ctx lives: no answer in time, no responder, or the server saying it is
// temporarily unavailable (no leader).
func transientAPIError(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return false // a server without JetStream is a configuration error: say so at once
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code == 503 {
		return true
	}
	// No responders for the JetStream API means no JetStream on the
	// server: not transient.
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrConnectionReconnecting)
}

// ensureStreamOnce creates or updates the stream to want, or leaves it
// alone when it already has want's settings.
func ensureStreamOnce(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (jetstream.Stream, error) {
	for attempt := 0; ; attempt++ {
		s, err := js.Stream(ctx, events.StreamName)
		switch {
		case err == nil:
			if sameStreamConfig(s.CachedInfo().Config, want) {
				return s, nil
			}
			s, err = js.UpdateStream(ctx, want)
			if err != nil {
				return nil, fmt.Errorf("ensure stream %s: update: %w", events.StreamName, err)
			}
			return s, nil
		case errors.Is(err, jetstream.ErrStreamNotFound):
			s, err = js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt == 0 {
				continue // another process created it meanwhile: compare with that one
			}
			if err != nil {
				return nil, fmt.Errorf("ensure stream %s: create: %w", events.StreamName, err)
			}
			return s, nil
		default:
			return nil, fmt.Errorf("ensure stream %s: %w", events.StreamName, err)
		}
	}
}

// sameStreamConfig reports whether have already has every setting of want
// that EnsureStream manages (the server fills in the rest).
func sameStreamConfig(have, want jetstream.StreamConfig) bool {
	if len(have.Subjects) != len(want.Subjects) {
		return false
	}
	subjects := make(map[string]bool, len(have.Subjects))
	for _, s := range have.Subjects {
		subjects[s] = true
	}
	for _, s := range want.Subjects {
		if !subjects[s] {
			return false
		}
	}
	return have.Description == want.Description && have.Storage == want.Storage &&
		have.Retention == want.Retention && have.Discard == want.Discard &&
		have.Replicas == want.Replicas && have.Duplicates == want.Duplicates &&
		have.MaxAge == want.MaxAge && have.MaxBytes == want.MaxBytes && have.MaxMsgs == want.MaxMsgs
}

// ConsumerConfig describes a durable pull consumer on the AMT stream.
// Zero values take JetStream's defaults (AckWait 30s, unlimited deliveries,
// 1000 pending acks).
type ConsumerConfig struct {
	Durable        string          // required; also the consumer's name
	FilterSubjects []string        // default: every event (events.StreamSubjects)
	AckWait        time.Duration   // redelivery after this long without an ack or InProgress
	MaxDeliver     int             // deliveries before JetStream gives up on a message; 0 = unlimited
	BackOff        []time.Duration // server-side redelivery delays after AckWait expiries; needs MaxDeliver > len(BackOff)
	MaxAckPending  int             // messages delivered but not yet acked, across all replicas
}

// ErrBadConsumerConfig marks a consumer configuration rejected before
// reaching the server.
var ErrBadConsumerConfig = errors.New("bad consumer config")

// EnsureConsumer creates the durable pull consumer (explicit acks, deliver
// all) on the AMT stream or updates it to cfg. Every replica of a service
// calls it with the same cfg and shares the consumer.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig) (jetstream.Consumer, error) {
	if cfg.Durable == "" || strings.ContainsAny(cfg.Durable, ".*> \t\r\n") {
		return nil, fmt.Errorf("ensure consumer: %w: durable name %q must be non-empty without '.', '*', '>' or spaces", ErrBadConsumerConfig, cfg.Durable)
	}
	if cfg.AckWait < 0 || cfg.MaxAckPending < 0 {
		return nil, fmt.Errorf("ensure consumer %s: %w: negative AckWait or MaxAckPending", cfg.Durable, ErrBadConsumerConfig)
	}
	if len(cfg.BackOff) > 0 && cfg.MaxDeliver > 0 && cfg.MaxDeliver <= len(cfg.BackOff) {
		return nil, fmt.Errorf("ensure consumer %s: %w: MaxDeliver %d must exceed len(BackOff) %d", cfg.Durable, ErrBadConsumerConfig, cfg.MaxDeliver, len(cfg.BackOff))
	}
	filters := cfg.FilterSubjects
	if len(filters) == 0 {
		filters = []string{events.StreamSubjects}
	}
	maxDeliver := cfg.MaxDeliver
	if maxDeliver == 0 {
		maxDeliver = -1
	}
	c, err := js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable:        cfg.Durable,
		Name:           cfg.Durable,
		FilterSubjects: filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        cfg.AckWait,
		MaxDeliver:     maxDeliver,
		BackOff:        cfg.BackOff,
		MaxAckPending:  cfg.MaxAckPending,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s on %s: %w", cfg.Durable, events.StreamName, err)
	}
	return c, nil
}
