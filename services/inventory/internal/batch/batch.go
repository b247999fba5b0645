// Package batch groups items submitted by many goroutines into batches and
// hands each batch to one flush function, so that many messages share one
// database transaction while each submitter still learns whether its own
// item was written (and acknowledges its message only then).
package batch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrStopped is returned by Submit after the batcher has stopped.
var ErrStopped = errors.New("batcher stopped")

// Flush writes one batch. It returns nil when every item is durably written,
// or an error that applies to the whole batch.
type Flush[T any] func(ctx context.Context, items []T) error

// Batcher collects up to Size items, or what arrived within Wait of the
// first one, and flushes them together. When a batch fails with an error
// that Split says is about the data (not the database being away), the batch
// is split in halves and each half flushed again, so that one bad item fails
// alone instead of taking its batch with it.
type Batcher[T any] struct {
	size     int
	wait     time.Duration
	flushers int
	flush    Flush[T]
	split    func(error) bool
	in       chan req[T]
	done     chan struct{}
}

type req[T any] struct {
	item  T
	reply chan error // buffered (1): the batcher never blocks on a submitter
}

// New returns a batcher; start it with Run. Up to flushers batches are
// flushed at once (a full batch does not wait for the previous one to
// commit); split reports whether a failed batch of several items should be
// retried in halves (nil: never).
func New[T any](size int, wait time.Duration, flushers int, flush Flush[T], split func(error) bool) *Batcher[T] {
	if size < 1 {
		size = 1
	}
	if flushers < 1 {
		flushers = 1
	}
	if split == nil {
		split = func(error) bool { return false }
	}
	return &Batcher[T]{size: size, wait: wait, flushers: flushers, flush: flush, split: split,
		in: make(chan req[T]), done: make(chan struct{})}
}

// Submit hands item to the batcher and waits until the batch holding it has
// been flushed, returning the flush result for that item. It returns early
// with ctx's error when ctx ends (the item may still be written: writers
// must be idempotent), and ErrStopped once Run has returned.
func (b *Batcher[T]) Submit(ctx context.Context, item T) error {
	r := req[T]{item: item, reply: make(chan error, 1)}
	select {
	case b.in <- r:
	case <-ctx.Done():
		return fmt.Errorf("submit to batch: %w", ctx.Err())
	case <-b.done:
		return ErrStopped
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("wait for batch: %w", ctx.Err())
	}
}

// Run collects and flushes batches until ctx ends. Flushes run with
// flushCtx, which should outlive ctx long enough to finish the batches in
// hand: Run returns only when every batch it has taken is flushed.
func (b *Batcher[T]) Run(ctx, flushCtx context.Context) {
	defer close(b.done)
	slots := make(chan struct{}, b.flushers)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		// Wait for a free flusher before taking items: while every flusher
		// is busy, submitters queue and the next batch fills up.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		batch := make([]req[T], 0, b.size)
		select {
		case r := <-b.in:
			batch = append(batch, r)
		case <-ctx.Done():
			<-slots
			return
		}
		timer.Reset(b.wait)
	fill:
		for len(batch) < b.size {
			select {
			case r := <-b.in:
				batch = append(batch, r)
			case <-timer.C:
				break fill
			case <-ctx.Done():
				break fill
			}
		}
		timer.Stop()
		wg.Go(func() {
			defer func() { <-slots }()
			b.flushAll(flushCtx, batch)
		})
	}
}

func (b *Batcher[T]) flushAll(ctx context.Context, reqs []req[T]) {
	items := make([]T, len(reqs))
	for i, r := range reqs {
		items[i] = r.item
	}
	err := b.flush(ctx, items)
	if err != nil && len(reqs) > 1 && b.split(err) {
		mid := len(reqs) / 2
		b.flushAll(ctx, reqs[:mid])
		b.flushAll(ctx, reqs[mid:])
		return
	}
	for _, r := range reqs {
		r.reply <- err
	}
}
