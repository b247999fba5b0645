package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/events"
)

// drainTimeout bounds how long Run waits, after its ctx ends, for in-flight
// events to be written and acknowledged (inside the usual 30 s grace period
// of a container stop). Whatever is not done by then is redelivered.
const drainTimeout = 20 * time.Second

// Run consumes the AMT stream through the durable consumer cfg.Durable
// (filter amt.v1.>, shared by every replica) until ctx ends, then stops
// pulling, lets the events in flight be written and acknowledged, and
// returns. It returns early with an error if the subscription ends on its
// own (connection closed, consumer deleted). Run may be called once.
func (s *Service) Run(ctx context.Context) error {
	if s.js == nil {
		return errors.New("inventory: run: no JetStream context")
	}
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("inventory: run: already running or ran")
	}
	cons, err := bus.EnsureConsumer(ctx, s.js, bus.ConsumerConfig{
		Durable:        s.cfg.Durable,
		FilterSubjects: []string{events.StreamSubjects},
		// Room for a few replicas, each holding up to Workers messages in
		// its pull buffer and Workers in its handlers.
		MaxAckPending: 8 * s.cfg.Workers,
		AckWait:       s.cfg.AckWait,
	})
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}

	// The batcher outlives ctx: it must write what the draining handlers
	// still hand it, so it stops only after the subscription has drained.
	bctx, stopBatcher := context.WithCancel(context.WithoutCancel(ctx))
	batcherDone := make(chan struct{})
	go func() {
		defer close(batcherDone)
		s.batches.Run(bctx, context.WithoutCancel(ctx))
	}()
	defer func() {
		stopBatcher()
		<-batcherDone
	}()

	sub, err := bus.Consume(ctx, cons, MakeEndpoints(s).Ingest, bus.ConsumeOptions{
		Workers: s.cfg.Workers,
		Logger:  s.log,
		Tel:     s.tel,
		Name:    s.cfg.Durable,
	})
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	s.log.InfoContext(ctx, "inventory consuming", "durable", s.cfg.Durable, "workers", s.cfg.Workers,
		"batch_size", s.cfg.BatchSize, "batch_wait", s.cfg.BatchWait)

	ended := false
	select {
	case <-ctx.Done():
	case <-sub.Done():
		ended = true
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
	defer cancel()
	stopErr := sub.Stop(stopCtx)
	if err := sub.Err(); err != nil {
		return fmt.Errorf("inventory: subscription ended: %w", err)
	}
	if ended && ctx.Err() == nil {
		// Nobody asked us to stop: the connection was closed or the
		// consumer went away. Fail, so that the process restarts.
		return errors.New("inventory: subscription ended on its own (connection closed?)")
	}
	if stopErr != nil {
		return fmt.Errorf("inventory: %w", stopErr)
	}
	s.log.InfoContext(ctx, "inventory stopped", "durable", s.cfg.Durable)
	return nil
}
