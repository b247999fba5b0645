package bus_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/events"
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestEnsureStreamCreatesAndUpdates(t *testing.T) {
	t.Parallel()
	_, js := bustest.Connect(t) // creates the stream with defaults
	ctx := testCtx(t, 10*time.Second)

	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatalf("stream after bustest.Connect: %v", err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Storage != jetstream.FileStorage || cfg.Duplicates != bus.DefaultDuplicates || cfg.Replicas != 1 ||
		!slices.Equal(cfg.Subjects, events.StreamSubjectList()) || cfg.MaxBytes != -1 || cfg.MaxAge != 0 {
		t.Fatalf("default stream config = %+v", cfg)
	}

	s, err = bus.EnsureStream(ctx, js, bus.StreamConfig{Duplicates: 5 * time.Minute, MaxAge: 24 * time.Hour, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatalf("update stream: %v", err)
	}
	cfg = s.CachedInfo().Config
	if cfg.Duplicates != 5*time.Minute || cfg.MaxAge != 24*time.Hour || cfg.MaxBytes != 1<<30 {
		t.Fatalf("updated stream config = %+v", cfg)
	}
	if _, err := bus.EnsureStream(ctx, js, bus.StreamConfig{Replicas: -1}); err == nil {
		t.Fatal("negative replicas accepted")
	}
}

// TestEnsureStreamUpdatesOnlyWhatDiffers: every replica ensures the stream
// at start-up; an unchanged stream must not get a configuration update
// (nats-server races internally between one and a consumer creation).
func TestEnsureStreamUpdatesOnlyWhatDiffers(t *testing.T) {
	t.Parallel()
	nc, js := bustest.Connect(t)
	ctx := testCtx(t, 10*time.Second)
	updates, err := nc.SubscribeSync("$JS.API.STREAM.UPDATE.>")
	if err != nil {
		t.Fatal(err)
	}
	creates, err := nc.SubscribeSync("$JS.API.STREAM.CREATE.>")
	if err != nil {
		t.Fatal(err)
	}
	count := func(sub *nats.Subscription) int {
		t.Helper()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		n, _, err := sub.Pending()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for range 3 {
		if _, err := bus.EnsureStream(ctx, js, bus.StreamConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	if u, c := count(updates), count(creates); u != 0 || c != 0 {
		t.Fatalf("unchanged stream ensured 3 times: %d updates, %d creates; want none", u, c)
	}
	if _, err := bus.EnsureStream(ctx, js, bus.StreamConfig{MaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if u := count(updates); u != 1 {
		t.Fatalf("changed stream: %d updates, want 1", u)
	}
	s, err := bus.EnsureStream(ctx, js, bus.StreamConfig{MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if u := count(updates); u != 1 || s.CachedInfo().Config.MaxAge != time.Hour {
		t.Fatalf("after the same change again: %d updates (want still 1), MaxAge %s", u, s.CachedInfo().Config.MaxAge)
	}
}

func TestEnsureConsumer(t *testing.T) {
	t.Parallel()
	_, js := bustest.Connect(t)
	ctx := testCtx(t, 10*time.Second)

	tests := []struct {
		name    string
		cfg     bus.ConsumerConfig
		wantErr error
	}{
		{name: "empty durable", cfg: bus.ConsumerConfig{}, wantErr: bus.ErrBadConsumerConfig},
		{name: "dotted durable", cfg: bus.ConsumerConfig{Durable: "a.b"}, wantErr: bus.ErrBadConsumerConfig},
		{name: "backoff longer than deliveries", cfg: bus.ConsumerConfig{Durable: "x", MaxDeliver: 2, BackOff: []time.Duration{time.Second, time.Second}}, wantErr: bus.ErrBadConsumerConfig},
		{name: "defaults", cfg: bus.ConsumerConfig{Durable: "inventory"}},
		{name: "update same durable", cfg: bus.ConsumerConfig{Durable: "inventory", AckWait: 10 * time.Second, MaxDeliver: 5, MaxAckPending: 64}},
		{name: "filtered", cfg: bus.ConsumerConfig{Durable: "prov", FilterSubjects: []string{events.SubjectDeviceHello + ".>"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := bus.EnsureConsumer(ctx, js, tt.cfg)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("EnsureConsumer: %v", err)
			}
			got := c.CachedInfo().Config
			if got.Durable != tt.cfg.Durable || got.AckPolicy != jetstream.AckExplicitPolicy {
				t.Fatalf("consumer config = %+v", got)
			}
			if tt.cfg.AckWait != 0 && got.AckWait != tt.cfg.AckWait {
				t.Errorf("AckWait = %s, want %s", got.AckWait, tt.cfg.AckWait)
			}
			if tt.cfg.MaxAckPending != 0 && got.MaxAckPending != tt.cfg.MaxAckPending {
				t.Errorf("MaxAckPending = %d, want %d", got.MaxAckPending, tt.cfg.MaxAckPending)
			}
			wantFilter := events.StreamSubjects
			if len(tt.cfg.FilterSubjects) > 0 {
				wantFilter = tt.cfg.FilterSubjects[0]
			}
			filters := append([]string{got.FilterSubject}, got.FilterSubjects...)
			if !strings.Contains(strings.Join(filters, " "), wantFilter) {
				t.Errorf("filters = %v, want %s", filters, wantFilter)
			}
		})
	}
}

func TestConnect(t *testing.T) {
	t.Parallel()
	url := bustest.RunServer(t)
	log := slog.New(slog.DiscardHandler)

	t.Run("reaches server", func(t *testing.T) {
		nc, err := bus.Connect(testCtx(t, 10*time.Second), bus.Config{URL: url, Name: "test"}, log)
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		nc.Close()
	})
	t.Run("missing creds file fails at once", func(t *testing.T) {
		start := time.Now()
		_, err := bus.Connect(testCtx(t, 30*time.Second), bus.Config{URL: url, CredsFile: filepath.Join(t.TempDir(), "none.creds")}, log)
		if err == nil || !strings.Contains(err.Error(), "credentials file") {
			t.Fatalf("err = %v, want a credentials file error", err)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("config error was retried")
		}
	})
	t.Run("half TLS config", func(t *testing.T) {
		if _, err := bus.Connect(testCtx(t, 5*time.Second), bus.Config{URL: url, TLSCert: "/etc/hostname"}, log); err == nil {
			t.Fatal("TLSCert without TLSKey accepted")
		}
	})
	t.Run("retries until ctx ends", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := "nats://" + ln.Addr().String()
		ln.Close() // nothing listens there now
		_, err = bus.Connect(testCtx(t, 400*time.Millisecond), bus.Config{URL: dead}, log)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded after retries", err)
		}
	})
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://alice:s3cret@host:4222", "nats://alice:xxxxx@host:4222"},
		{"nats://tok3n@host:4222,nats://h2:4222", "nats://xxxxx@host:4222,nats://h2:4222"},
	}
	for _, tt := range tests {
		if got := bus.RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestRequestSubjectsAreNotStored: the request/reply subjects share the
// amt.v1. prefix with the events but must never be persisted (an admin
// request can carry a PFX password), while a consumer filtered on all of
// amt.v1.> still sees every event.
func TestRequestSubjectsAreNotStored(t *testing.T) {
	t.Parallel()
	nc, js := bustest.Connect(t)
	ctx := testCtx(t, 10*time.Second)
	for _, subj := range []string{events.SubjectCASign, events.SubjectAdmin + ".domain.add"} {
		if err := nc.Publish(subj, []byte(`{"password":"x"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(ctx, events.SubjectDeviceHello+".u1", []byte("{}")); err != nil {
		t.Fatalf("event subject not stored: %v", err)
	}
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want only the event", info.State.Msgs)
	}
	c, err := bus.EnsureConsumer(ctx, js, bus.ConsumerConfig{Durable: "all"})
	if err != nil {
		t.Fatalf("consumer filtered on %s: %v", events.StreamSubjects, err)
	}
	if ci, err := c.Info(ctx); err != nil || ci.NumPending != 1 {
		t.Fatalf("consumer pending = %v, %v", ci, err)
	}
}
