package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

func TestTransientAPIError(t *testing.T) {
	live := context.Background()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"request timed out", live, fmt.Errorf("stream info: %w", context.DeadlineExceeded), true},
		{"nats timeout", live, nats.ErrTimeout, true},
		{"no responders: no JetStream", live, nats.ErrNoResponders, false},
		{"no leader (503)", live, &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		{"reconnecting", live, nats.ErrConnectionReconnecting, true},
		{"caller gave up", done, context.DeadlineExceeded, false},
		{"jetstream not enabled", live, jetstream.ErrJetStreamNotEnabled, false},
		{"jetstream not enabled for account", live, jetstream.ErrJetStreamNotEnabledForAccount, false},
		{"bad config (400)", live, &jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use"}, false},
		{"other", live, errors.New("permissions violation"), false},
	}
	for _, tt := range tests {
		if got := transientAPIError(tt.ctx, tt.err); got != tt.want {
			t.Errorf("%s: transientAPIError(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

// TestEnsureStreamFailsFastWithoutJetStream: a server without JetStream is
// a configuration error, reported at once rather than retried.
func TestEnsureStreamFailsFastWithoutJetStream(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err = EnsureStream(ctx, js, StreamConfig{})
	if err == nil {
		t.Fatal("EnsureStream succeeded without JetStream")
	}
	if !strings.Contains(err.Error(), "JetStream enabled") {
		t.Errorf("error does not point at JetStream: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("EnsureStream took %s to fail without JetStream (retried a configuration error): %v", took, err)
	}
}
