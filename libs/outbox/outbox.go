package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/propagation"

	"github.com/amtprov/amtprov/libs/events"
)

// NotifyChannel is the PostgreSQL LISTEN/NOTIFY channel Add signals on.
const NotifyChannel = "amtprov_outbox"

// MaxDataSize bounds one event body. JetStream's default max payload is 1 MiB,
// and amtprov events are a few hundred bytes; a bigger body is a bug that
// should fail in the writer's transaction, not in the relay.
const MaxDataSize = 256 << 10

// traceContext is the W3C propagator (traceparent, tracestate) used to
// capture the writer's trace into the stored headers. It holds no state.
var traceContext = propagation.TraceContext{}

// insertSQL inserts the event and, in the same statement, queues a NOTIFY
// that PostgreSQL delivers only if the transaction commits (InsertCTE over
// a one-row source). An event with a msg_id already waiting in the outbox is
// not stored twice.
var insertSQL = `WITH ` + InsertCTE("ins", "(VALUES (1)) AS one", 1) + `
SELECT count(*) FROM ins_notify`

// Add stores env in the outbox inside the caller's transaction tx; it is
// published once tx commits and discarded if tx rolls back. The W3C trace
// context of traceCtx (usually the ctx of the work the event reports) is
// stored with it, so the published message continues that trace. Adding an
// event whose ce-id is already waiting in the outbox does nothing.
func Add(ctx context.Context, tx pgx.Tx, env events.Envelope, traceCtx context.Context) error {
	args, err := InsertArgs(env, traceCtx)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, insertSQL, args...); err != nil {
		return fmt.Errorf("outbox: add %s %s: %w", env.Topic, env.ID, err)
	}
	return nil
}

// InsertArgs checks env and renders its outbox columns as Add stores them,
// for a caller that inserts the event inside its own statement (InsertCTE)
// instead of with Add: the values of InsertCTE's parameters, in order
// (topic, headers as JSON with the trace context of traceCtx, data, msg_id).
func InsertArgs(env events.Envelope, traceCtx context.Context) ([]any, error) {
	h := env.Headers()
	if _, err := events.Parse(env.Topic, h, env.Data); err != nil {
		return nil, fmt.Errorf("outbox: add %s: %w", env.Topic, err)
	}
	if len(env.Data) > MaxDataSize {
		return nil, fmt.Errorf("outbox: add %s: %w: body is %d bytes, limit %d", env.Topic, events.ErrInvalid, len(env.Data), MaxDataSize)
	}
	if traceCtx != nil {
		traceContext.Inject(traceCtx, carrier(h))
	}
	hj, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("outbox: add %s: encode headers: %w", env.Topic, err)
	}
	return []any{env.Topic, hj, env.Data, env.ID}, nil
}

// InsertCTE returns two common table expressions that add one outbox row
// per row of from (a CTE name, or any FROM item), with the values
// InsertArgs gives as parameters $first to $first+3, and signal the relay
// like Add. The caller's statement must read the second one (named name+"_notify"), or PostgreSQL does not
// run it; e.g. "SELECT ..., (SELECT count(*) FROM ev_notify) FROM ...".
// The row is inserted only when from has a row, in the caller's statement:
// a condition and the event are one atomic round trip.
func InsertCTE(name, from string, first int) string {
	return fmt.Sprintf(`%[1]s AS (
    INSERT INTO outbox (topic, headers, data, msg_id)
    SELECT $%[3]d::text, $%[4]d::jsonb, $%[5]d::bytea, $%[6]d::text FROM %[2]s
    ON CONFLICT (msg_id) DO NOTHING
    RETURNING id
), %[1]s_notify AS (
    SELECT pg_notify('`+NotifyChannel+`', '') FROM %[1]s
)`, name, from, first, first+1, first+2, first+3)
}

// carrier adapts stored headers to the OpenTelemetry propagator with exact
// (lower-case W3C) keys, as NATS headers are case-sensitive. Get falls back
// to a case-insensitive match, like libs/bus.
type carrier map[string][]string

func (c carrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

func (c carrier) Set(key, value string) { c[key] = []string{value} }

func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
