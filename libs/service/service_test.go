package service_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/service"
)

func TestShutdownReverseOrder(t *testing.T) {
	l := service.New("t", slog.New(slog.NewTextHandler(io.Discard, nil)))
	var order []string
	for _, n := range []string{"db", "bus", "server"} {
		l.OnShutdown(n, func(context.Context) error { order = append(order, n); return nil })
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ","); got != "server,bus,db" {
		t.Fatalf("shutdown order %s", got)
	}
}

func TestRunnerFailureStopsAll(t *testing.T) {
	l := service.New("t", slog.New(slog.NewTextHandler(io.Discard, nil)))
	stopped := make(chan struct{})
	l.Go("long", func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil })
	boom := errors.New("boom")
	l.Go("fails", func(context.Context) error { return boom })
	closed := false
	l.OnShutdown("x", func(context.Context) error { closed = true; return nil })
	err := l.Run(context.Background())
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want boom", err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("other runner not stopped")
	}
	if !closed {
		t.Fatal("shutdown not run")
	}
}

func TestOpsEndpoints(t *testing.T) {
	l := service.New("t", slog.New(slog.NewTextHandler(io.Discard, nil)))
	var dbUp atomic.Bool
	l.Ready("db", func(context.Context) error {
		if !dbUp.Load() {
			return errors.New("down")
		}
		return nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "m 1\n") })
	addr := l.Serve("ops", ln, l.OpsHandler(metrics, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	get := func(path string) (int, string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				if time.Now().After(deadline) {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(b)
		}
	}
	if c, _ := get("/healthz"); c != 200 {
		t.Fatalf("healthz %d", c)
	}
	if c, b := get("/readyz"); c != 503 || !strings.Contains(b, "db: down") {
		t.Fatalf("readyz while db down: %d %q", c, b)
	}
	dbUp.Store(true)
	if c, _ := get("/readyz"); c != 200 {
		t.Fatalf("readyz %d", c)
	}
	if c, b := get("/metrics"); c != 200 || b != "m 1\n" {
		t.Fatalf("metrics %d %q", c, b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestWaitReady returns once every check passes, and names the failing
// check when they do not pass in time.
func TestWaitReady(t *testing.T) {
	l := service.New("t", slog.New(slog.NewTextHandler(io.Discard, nil)))
	var up atomic.Bool
	l.Ready("db", func(context.Context) error { return nil })
	l.Ready("admin", func(context.Context) error {
		if !up.Load() {
			return errors.New("not subscribed")
		}
		return nil
	})
	if err := l.WaitReady(context.Background(), 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "admin: not subscribed") {
		t.Fatalf("WaitReady with a failing check = %v", err)
	}
	go func() { time.Sleep(50 * time.Millisecond); up.Store(true) }()
	if err := l.WaitReady(context.Background(), 10*time.Second); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
}
