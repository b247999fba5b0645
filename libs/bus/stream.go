package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

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
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
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
	})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", events.StreamName, err)
	}
	return s, nil
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
