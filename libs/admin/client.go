package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// DefaultTimeout bounds Call when ctx has no earlier deadline: generous, as
// admin verbs such as creating a dev domain take seconds. It is also what
// ends a Call whose connection closes while it waits for the reply (nats.go
// does not close a ChanSubscribe channel then).
const DefaultTimeout = 30 * time.Second

// Call sends req as JSON to subject and decodes the reply's result into
// resp (a pointer; nil to ignore it). The W3C trace context of ctx and the
// actor from WithActor travel in headers. Every failure is an *Error:
// the service's own (NOT_FOUND, BAD_REQUEST, service codes), UNAVAILABLE when
// nothing answers the subject, TIMEOUT when no reply arrives in time, and
// INTERNAL for a reply that cannot be read.
func Call(ctx context.Context, nc *nats.Conn, subject string, req, resp any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	body := []byte{}
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("encode request for %s: %v", subject, err), cause: err}
		}
		body = b
	}
	msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
	propagation.TraceContext{}.Inject(ctx, natsCarrier(msg.Header))
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		msg.Header.Set(HeaderActor, a)
	}
	r, err := roundTrip(ctx, nc, msg)
	if err != nil {
		return err
	}
	if r.Error != nil {
		if r.Error.Code == "" {
			r.Error.Code = CodeInternal
		}
		return r.Error
	}
	if r.Result == nil {
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("reply to %s has neither result nor error", subject)}
	}
	if resp != nil {
		if err := json.Unmarshal(r.Result, resp); err != nil {
			return &Error{Code: CodeInternal, Message: fmt.Sprintf("decode result of %s: %v", subject, err), cause: err}
		}
	}
	return nil
}

// roundTrip publishes msg with a private reply inbox and returns the first
// reply in this package's shape. Other messages on the inbox are skipped: a
// JetStream stream whose subjects cover the request subject (a
// misconfiguration; the AMT stream lists event subjects only) stores the
// request and answers with a PubAck before the service answers, and a plain
// Request would take that PubAck for the reply.
func roundTrip(ctx context.Context, nc *nats.Conn, msg *nats.Msg) (reply, error) {
	inbox := nc.NewInbox()
	// A small channel of our own: SubscribeSync would allocate the
	// connection's default pending channel (65,536 entries, 512 KiB) per
	// call, a fifth of all the bytes a provisioning run allocated (one CA
	// sign per device). An inbox gets at most the reply and a stray PubAck.
	ch := make(chan *nats.Msg, 4)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return reply{}, &Error{Code: CodeUnavailable, Message: fmt.Sprintf("request %s: subscribe reply inbox: %v", msg.Subject, err), cause: err}
	}
	defer func() { _ = sub.Unsubscribe() }()
	msg.Reply = inbox
	if err := nc.PublishMsg(msg); err != nil {
		return reply{}, &Error{Code: CodeUnavailable, Message: fmt.Sprintf("request %s: %v", msg.Subject, err), cause: err}
	}
	for {
		var out *nats.Msg
		select {
		case out = <-ch:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err == nil && out.Header.Get("Status") == "503" && len(out.Data) == 0 {
			err = nats.ErrNoResponders
		}
		if errors.Is(err, nats.ErrNoResponders) {
			return reply{}, &Error{Code: CodeUnavailable, Message: fmt.Sprintf("no service answers %s (is it running and connected to this NATS?)", msg.Subject), cause: err}
		}
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
				return reply{}, &Error{Code: CodeTimeout, Message: fmt.Sprintf("no reply to %s in time", msg.Subject), cause: err}
			}
			return reply{}, &Error{Code: CodeUnavailable, Message: fmt.Sprintf("request %s: %v", msg.Subject, err), cause: err}
		}
		var r reply
		if err := json.Unmarshal(out.Data, &r); err != nil {
			return reply{}, &Error{Code: CodeInternal, Message: fmt.Sprintf("reply to %s is not valid JSON", msg.Subject), cause: err}
		}
		if r.Result == nil && r.Error == nil {
			continue // not ours: a JetStream PubAck ({"stream":..,"seq":..}) or similar
		}
		return r, nil
	}
}
