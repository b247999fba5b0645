package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the embedded SQL migrations (goose format), for tools
// that want to list or inspect them.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the directory is embedded above; fs.Sub cannot fail on it
	}
	return sub
}

// migrationLockID is the pg_advisory_lock key guarding Migrate; any fixed
// 64-bit value unlikely to collide with another application's lock.
func migrationLockID() int64 {
	h := fnv.New64a()
	h.Write([]byte("amtprov schema migrations"))
	return int64(h.Sum64())
}

// Migrate applies every pending embedded migration, in order, and logs what
// it applied. It holds a session-level pg_advisory_lock while it works, so
// any number of replicas may call it at the same moment: one migrates, the
// others wait (a blocking lock, not polling) and then find nothing pending.
// Waiting ends with an error when ctx ends. A nil log discards the log.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()

	p, err := goose.NewProvider(goose.DialectPostgres, db, Migrations(),
		goose.WithSessionLocker(advisoryLock{id: migrationLockID()}),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	results, err := p.Up(ctx)
	for _, r := range results {
		if r.Error != nil {
			continue
		}
		log.InfoContext(ctx, "applied migration", "version", r.Source.Version,
			"file", r.Source.Path, "duration", r.Duration)
	}
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("migrate: read schema version: %w", err)
	}
	log.InfoContext(ctx, "database schema up to date", "version", current, "applied", len(results))
	return nil
}

// advisoryLock is a goose SessionLocker that waits in pg_advisory_lock.
// goose's own Postgres locker polls pg_try_advisory_lock every few seconds,
// which would make replicas that start together wait for nothing.
type advisoryLock struct{ id int64 }

func (l advisoryLock) SessionLock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", l.id); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	return nil
}

func (l advisoryLock) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	var released bool
	// Release even when the migration was cancelled: a session lock
	// otherwise lives as long as the pooled connection.
	if err := conn.QueryRowContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", l.id).Scan(&released); err != nil {
		return fmt.Errorf("release migration lock: %w", err)
	}
	if !released {
		return fmt.Errorf("release migration lock: lock %d was not held by this session", l.id)
	}
	return nil
}
