package store_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amtprov/amtprov/libs/store"
	"github.com/amtprov/amtprov/libs/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestOpenRejectsMalformedURLWithoutEchoingIt(t *testing.T) {
	for _, u := range []string{
		"postgres://user:s3cret@host:notaport/db",
		"host=x password=s3cret port=abc",
	} {
		_, err := store.Open(context.Background(), u)
		if !errors.Is(err, store.ErrBadURL) {
			t.Fatalf("store.Open(%q) = %v, want store.ErrBadURL", u, err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("error leaks the password: %v", err)
		}
	}
}

func TestOpenRetriesUntilContextEnds(t *testing.T) {
	// Nothing listens on port 1 of loopback: every ping fails at once, so
	// Open must keep retrying until the deadline and then say why.
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := store.Open(ctx, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=1")
	if err == nil {
		t.Fatal("Open succeeded against a closed port")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open error %v does not wrap the context's end", err)
	}
	if time.Since(start) < 500*time.Millisecond {
		t.Fatalf("Open gave up after %v, before its context ended", time.Since(start))
	}
}

func TestConcurrentMigrate(t *testing.T) {
	u := storetest.NewEmpty(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const replicas = 8
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	for i := range replicas {
		wg.Go(func() {
			pool, err := store.Open(ctx, u)
			if err != nil {
				errs[i] = err
				return
			}
			defer pool.Close()
			errs[i] = store.Migrate(ctx, pool, quietLog())
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}

	pool, err := store.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var applied int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM goose_db_version WHERE version_id > 0 AND is_applied").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	files, err := fs.Glob(store.Migrations(), "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if applied != len(files) {
		t.Fatalf("%d migrations recorded, want each of the %d applied exactly once", applied, len(files))
	}
	for _, table := range []string{"devices", "oob_capability", "device_location", "device_identification", "device_provisioning"} {
		var ok bool
		if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok); err != nil || !ok {
			t.Errorf("table %s missing after Migrate (err %v)", table, err)
		}
	}
	// Once more: nothing pending, nothing applied.
	if err := store.Migrate(ctx, pool, quietLog()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
}

func TestMigrateWaitsForTheLockAndHonoursContext(t *testing.T) {
	u := storetest.NewEmpty(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	holder, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", store.MigrationLockID()); err != nil {
		t.Fatal(err)
	}

	pool, err := store.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if err := store.Migrate(short, pool, quietLog()); err == nil {
		t.Fatal("Migrate ran while another session held the migration lock")
	}
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('devices') IS NOT NULL").Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatal("schema changed while another session held the migration lock")
	}

	if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", store.MigrationLockID()); err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx, pool, quietLog()); err != nil {
		t.Fatalf("Migrate after the lock was released: %v", err)
	}
}
