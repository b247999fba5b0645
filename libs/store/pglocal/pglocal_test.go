package pglocal_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amtprov/amtprov/libs/store/pglocal"
)

// TestStartStopRestart initdbs a cluster, checks it answers, that a second
// Start finds it running at the same URL, and that it starts again after a
// stop, on the same port, with its data intact.
func TestStartStopRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("initdb and two server starts take a few seconds")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// Not t.TempDir: its 0700 parent would keep the postgres user out when
	// the tests run as root.
	dir, err := os.MkdirTemp("", "pglocal-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	url, stop, err := pglocal.Start(ctx, dir, log)
	if errors.Is(err, pglocal.ErrNoBinaries) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = stop(context.Background())
		}
	})
	exec(t, ctx, url, "CREATE TABLE marker (v int); INSERT INTO marker VALUES (42)")

	again, _, err := pglocal.Start(ctx, dir, log)
	if err != nil {
		t.Fatalf("second Start on a running cluster: %v", err)
	}
	if again != url {
		t.Fatalf("second Start gave %s, want the running cluster's %s", again, url)
	}

	if err := stop(ctx); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if c, err := pgx.Connect(ctx, url); err == nil {
		c.Close(ctx)
		t.Fatal("cluster still answers after stop")
	}

	first := url
	url, stop, err = pglocal.Start(ctx, dir, log)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if url != first {
		t.Errorf("restart moved the cluster from %s to %s; its port was free", first, url)
	}
	stopped = false
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var v int
	if err := c.QueryRow(ctx, "SELECT v FROM marker").Scan(&v); err != nil || v != 42 {
		t.Fatalf("data after restart: v=%d err=%v", v, err)
	}
	if err := stop(ctx); err != nil {
		t.Fatal(err)
	}
	stopped = true
}

func exec(t *testing.T, ctx context.Context, url, sql string) {
	t.Helper()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatal(err)
	}
}
