package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/service"
	"github.com/amtprov/amtprov/libs/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestRunServesAndStops starts the whole binary's wiring against an
// embedded NATS and a fresh database, checks readiness and the API, and
// that a signal (ctx) shuts it down cleanly.
func TestRunServesAndStops(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	natsURL := bustest.RunServer(t)
	dbURL := storetest.NewEmpty(t) // run migrates it itself
	addr := freeAddr(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--api-addr", addr, "--database-url", dbURL, "--nats", natsURL, "--log-level", "warn"})
	}()

	get := func(path string) (int, string, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _, err := get("/readyz"); err == nil && code == http.StatusOK {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run returned before ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("not ready within 30s")
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	if code, body, err := get("/v1/devices"); err != nil || code != http.StatusOK || !strings.Contains(body, `"devices":[]`) {
		t.Fatalf("GET /v1/devices: %d %s %v", code, body, err)
	}
	if code, body, err := get("/metrics"); err != nil || code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after the signal: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30s of the signal")
	}
}

func TestRunUsageErrors(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	for _, args := range [][]string{
		{"--no-such-flag"},
		{}, // no database URL
		{"--database-url", "postgres://x/y", "--log-level", "loud"},
	} {
		if err := run(context.Background(), args); !errors.Is(err, service.ErrUsage) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
}
