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

// DefaultTimeout bounds Call when ctx has no earlier deadline.
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
	out, err := nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			return &Error{Code: CodeUnavailable, Message: fmt.Sprintf("no service answers %s (is it running and connected to this NATS?)", subject), cause: err}
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
			return &Error{Code: CodeTimeout, Message: fmt.Sprintf("no reply to %s in time", subject), cause: err}
		default:
			return &Error{Code: CodeUnavailable, Message: fmt.Sprintf("request %s: %v", subject, err), cause: err}
		}
	}
	var r reply
	if err := json.Unmarshal(out.Data, &r); err != nil {
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("reply to %s is not valid JSON", subject), cause: err}
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
