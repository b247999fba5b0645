package batch_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/amtprov/amtprov/services/inventory/internal/batch"
)

var errBad = errors.New("refused")

type recorder struct {
	mu      sync.Mutex
	batches [][]int
}

func (r *recorder) flush(_ context.Context, items []int) error {
	r.mu.Lock()
	r.batches = append(r.batches, slices.Clone(items))
	r.mu.Unlock()
	if slices.Contains(items, 7) {
		return errBad
	}
	return nil
}

func run(t *testing.T, b *batch.Batcher[int]) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Run(ctx, context.Background())
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func TestBatcher(t *testing.T) {
	defer goleak.VerifyNone(t)

	t.Run("bounded batches, a refused item fails alone", func(t *testing.T) {
		var r recorder
		b := batch.New(4, 50*time.Millisecond, 2, r.flush, func(err error) bool { return errors.Is(err, errBad) })
		run(t, b)
		results := make([]error, 20)
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() { results[i] = b.Submit(context.Background(), i) })
		}
		wg.Wait()
		for i, err := range results {
			if (i == 7) != errors.Is(err, errBad) {
				t.Errorf("item %d: %v", i, err)
			}
		}
		written := map[int]int{}
		for _, bt := range r.batches {
			if len(bt) > 4 {
				t.Errorf("batch of %d items exceeds the size 4", len(bt))
			}
			if !slices.Contains(bt, 7) {
				for _, v := range bt {
					written[v]++
				}
			}
		}
		for i := range 20 {
			if want := map[bool]int{true: 0, false: 1}[i == 7]; written[i] != want {
				t.Errorf("item %d written %d times, want %d", i, written[i], want)
			}
		}
	})

	t.Run("a lone item is flushed after the wait", func(t *testing.T) {
		var r recorder
		b := batch.New(100, 10*time.Millisecond, 1, r.flush, nil)
		run(t, b)
		if err := b.Submit(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		if len(r.batches) != 1 || len(r.batches[0]) != 1 {
			t.Fatalf("batches %v", r.batches)
		}
	})

	t.Run("without split a refused batch fails whole", func(t *testing.T) {
		var r recorder
		b := batch.New(2, time.Second, 1, r.flush, nil)
		run(t, b)
		var wg sync.WaitGroup
		var errs [2]error
		for i, v := range []int{6, 7} {
			wg.Go(func() { errs[i] = b.Submit(context.Background(), v) })
		}
		wg.Wait()
		if !errors.Is(errs[0], errBad) || !errors.Is(errs[1], errBad) {
			t.Fatalf("errors %v", errs)
		}
	})

	t.Run("submit honours its context and a stopped batcher", func(t *testing.T) {
		var r recorder
		b := batch.New(2, time.Second, 1, r.flush, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if err := b.Submit(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Submit with nobody running: %v", err)
		}
		rctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); b.Run(rctx, context.Background()) }()
		stop()
		<-done
		if err := b.Submit(context.Background(), 1); !errors.Is(err, batch.ErrStopped) {
			t.Fatalf("Submit after Run returned: %v", err)
		}
	})
}
