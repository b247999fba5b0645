package admin

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

type actorKey struct{}

// WithActor returns ctx carrying who is acting. Call sends it in the
// Amtprov-Actor header; the server puts the header's value back into the
// handler's ctx, where Actor reads it.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// Actor is who is acting according to ctx, or "unknown".
func Actor(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return "unknown"
}

// Execer runs a statement: a pgx.Tx, *pgx.Conn or *pgxpool.Pool.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Audit appends one row to audit_log: Actor(ctx) did action on subject.
// Write it in the same transaction as what it records (or, for a read,
// before the secret is returned). detail is stored as JSON and must never
// hold a secret; nil means {}. audit_log refuses UPDATE and DELETE, and this
// package offers neither.
func Audit(ctx context.Context, db Execer, action, subject string, detail any) error {
	d := []byte("{}")
	if detail != nil {
		b, err := json.Marshal(detail)
		if err != nil {
			return fmt.Errorf("audit %s on %s: encode detail: %w", action, subject, err)
		}
		d = b
	}
	if _, err := db.Exec(ctx, `INSERT INTO audit_log (actor, action, subject, detail) VALUES ($1, $2, $3, $4)`,
		Actor(ctx), action, subject, d); err != nil {
		return fmt.Errorf("audit %s on %s: %w", action, subject, err)
	}
	return nil
}
