package bus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/amtprov/amtprov/libs/events"
)

func TestClassify(t *testing.T) {
	sched := []time.Duration{time.Second, 10 * time.Second, time.Minute}
	boom := errors.New("db down")
	tests := []struct {
		name      string
		err       error
		delivered uint64
		maxDel    int
		want      decision
	}{
		{"success acks", nil, 1, 0, decision{action: actionAck}},
		{"terminal", fmt.Errorf("profile x: %w", ErrTerminal), 1, 0, decision{action: actionTerm}},
		{"invalid event", fmt.Errorf("decode: %w", events.ErrInvalid), 3, 0, decision{action: actionTerm}},
		{"backoff permanent", backoff.Permanent(boom), 1, 0, decision{action: actionTerm}},
		{"wrapped backoff permanent", fmt.Errorf("step: %w", backoff.Permanent(boom)), 1, 0, decision{action: actionTerm}},
		{"retry after", &RetryAfterError{After: 7 * time.Second, Err: boom}, 1, 0, decision{action: actionNak, delay: 7 * time.Second}},
		{"wrapped retry after", fmt.Errorf("lease: %w", &RetryAfterError{After: 3 * time.Second}), 2, 0, decision{action: actionNak, delay: 3 * time.Second}},
		{"negative retry after clamps to zero", &RetryAfterError{After: -time.Second}, 1, 0, decision{action: actionNak}},
		{"terminal wins over retry after", &RetryAfterError{After: time.Second, Err: ErrTerminal}, 1, 0, decision{action: actionTerm}},
		{"first failure", boom, 1, 0, decision{action: actionNak, delay: time.Second}},
		{"second failure", boom, 2, 0, decision{action: actionNak, delay: 10 * time.Second}},
		{"beyond schedule uses last", boom, 9, 0, decision{action: actionNak, delay: time.Minute}},
		{"zero delivered treated as first", boom, 0, 0, decision{action: actionNak, delay: time.Second}},
		{"cancelled handler retries", context.Canceled, 1, 0, decision{action: actionNak, delay: time.Second}},
		{"before the last delivery", boom, 2, 3, decision{action: actionNak, delay: 10 * time.Second}},
		{"last allowed delivery terminates", boom, 3, 3, decision{action: actionTerm, exhausted: true}},
		{"retry after on last delivery terminates", &RetryAfterError{After: time.Second}, 3, 3, decision{action: actionTerm, exhausted: true}},
		{"unlimited deliveries", boom, 1000, -1, decision{action: actionNak, delay: time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err, tt.delivered, tt.maxDel, sched); got != tt.want {
				t.Fatalf("classify(%v, %d, %d) = %+v, want %+v", tt.err, tt.delivered, tt.maxDel, got, tt.want)
			}
		})
	}
}

func TestBackoffForDefaultSchedule(t *testing.T) {
	def := DefaultBackoff()
	if got := backoffFor(1, nil); got != def[0] {
		t.Fatalf("backoffFor(1, nil) = %s, want %s", got, def[0])
	}
	if got := backoffFor(1000, nil); got != def[len(def)-1] {
		t.Fatalf("backoffFor(1000, nil) = %s, want %s", got, def[len(def)-1])
	}
}

func TestRetryAfterErrorUnwraps(t *testing.T) {
	inner := errors.New("inner")
	err := error(&RetryAfterError{After: time.Second, Err: inner})
	if !errors.Is(err, inner) {
		t.Fatal("RetryAfterError does not unwrap to its cause")
	}
	if (&RetryAfterError{After: time.Second}).Error() == "" {
		t.Fatal("empty message")
	}
}
