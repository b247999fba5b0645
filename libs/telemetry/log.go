package telemetry

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys added by the logger.
const (
	LogKeyService = "service"
	LogKeyTraceID = "trace_id"
	LogKeySpanID  = "span_id"
)

// redactedKeys are attribute names whose value is never written, whatever
// the caller passes: a last line of defence for "no secret in logs"
// (ARCHITECTURE.md "Security"). Compared case-insensitively.
var redactedKeys = [...]string{"password", "passwd", "pps", "mebx_password", "secret", "private_key", "token", "creds"}

const redacted = "[REDACTED]"

// NewLogger returns a JSON logger for service writing to w at level and
// above. Records logged with a context (InfoContext, ErrorContext, ...)
// carry trace_id and span_id of the span in that context, so a log line can
// be found from a trace and back. Attributes named like a secret (password,
// pps, secret, ...) are replaced by "[REDACTED]".
//
// trace_id and span_id are added to the record like any other attribute, so
// after WithGroup they appear inside the group.
func NewLogger(w io.Writer, service string, level slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: redact})
	return slog.New(traceHandler{h}).With(LogKeyService, service)
}

func redact(_ []string, a slog.Attr) slog.Attr {
	for _, k := range redactedKeys {
		if strings.EqualFold(a.Key, k) {
			return slog.String(a.Key, redacted)
		}
	}
	return a
}

// traceHandler adds the span context of the record's ctx.
type traceHandler struct{ next slog.Handler }

func (h traceHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String(LogKeyTraceID, sc.TraceID().String()), slog.String(LogKeySpanID, sc.SpanID().String()))
	}
	return h.next.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.next.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.next.WithGroup(name)}
}
