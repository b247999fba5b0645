package inventory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/inventory/internal/record"
)

// TestRefusedUpdateFailsAlone: an update the database refuses (here a state
// outside the CHECK constraint, which no handler produces) is isolated by
// splitting its batch; it alone fails, as invalid (so it is terminated), and
// every other update of the batch is written.
func TestRefusedUpdateFailsAlone(t *testing.T) {
	pool := storetest.New(t)
	tel, _ := telemetry.NewForTest("inventory")
	s, err := New(Config{BatchSize: 16, BatchWait: 50 * time.Millisecond}, pool, nil, tel, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.batches.Run(ctx, context.Background()) }()
	t.Cleanup(func() { cancel(); <-done })

	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		u := record.Seen(fmt.Sprintf("%08x-0000-4000-8000-000000000000", i+1), t0)
		state := "in"
		if i == 5 {
			state = "bogus"
		}
		u.State = &record.State{Mark: record.Mark{At: t0, EventID: fmt.Sprint(i)}, State: state}
		wg.Go(func() { errs[i] = s.batches.Submit(context.Background(), pending{update: u}) })
	}
	wg.Wait()
	for i, err := range errs {
		if i == 5 {
			if !errors.Is(err, events.ErrInvalid) {
				t.Errorf("refused update: %v, want events.ErrInvalid", err)
			}
		} else if err != nil {
			t.Errorf("update %d: %v", i, err)
		}
	}
	var written int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM oob_capability").Scan(&written); err != nil {
		t.Fatal(err)
	}
	if written != n-1 {
		t.Fatalf("%d capability rows, want %d", written, n-1)
	}
}
