package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrBadURL is returned by Open for a connection string pgx cannot parse.
var ErrBadURL = errors.New("open database: malformed connection string (not shown, it may hold a password); " +
	"want postgres://user[:password]@host:port/db?sslmode=... or key=value pairs")

// pingTimeout bounds one connection attempt, so that a black-holed address
// is retried instead of hanging until ctx ends.
const pingTimeout = 5 * time.Second

// Open creates a pgx pool for url (a postgres:// URL or key=value DSN) and
// pings the server, retrying with capped exponential backoff until it answers
// or ctx ends: PostgreSQL often starts after the services that need it
// (compose, Kubernetes), and a service should wait for it rather than crash.
// A malformed url fails at once.
func Open(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn's parse errors can echo the string, and redacting a password
		// from a malformed string is guesswork, so the string is never shown.
		return nil, ErrBadURL
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	b := backoff.WithContext(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(3*time.Second),
		backoff.WithMaxElapsedTime(0), // until ctx ends
	), ctx)
	var last error
	err = backoff.Retry(func() error {
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		defer cancel()
		last = pool.Ping(pctx)
		return last
	}, b)
	if err != nil {
		pool.Close()
		if last == nil {
			last = err
		}
		return nil, fmt.Errorf("open database %s:%d/%s: ping: %w (gave up: %w)",
			cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, last, ctx.Err())
	}
	return pool, nil
}
