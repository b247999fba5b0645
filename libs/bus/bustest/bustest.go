// Package bustest runs an embedded NATS server with JetStream for tests of
// any package that talks to the bus (STYLE.md "Tests": a real server on a
// random port, never a mock).
package bustest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtprov/amtprov/libs/bus"
)

// startTimeout bounds how long the embedded server may take to listen.
const startTimeout = 10 * time.Second

// RunServer starts an embedded nats-server with JetStream on a random
// loopback port, storing under t.TempDir(), and shuts it down in t.Cleanup.
// It returns the client URL.
func RunServer(t testing.TB) string {
	t.Helper()
	s := newServer(t)
	return s.ClientURL()
}

// Server is like RunServer but returns the server itself, for tests that
// restart it or read its state.
func Server(t testing.TB) *server.Server {
	t.Helper()
	return newServer(t)
}

func newServer(t testing.TB) *server.Server {
	t.Helper()
	opts := &server.Options{
		ServerName: "bustest",
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoLog:      true,
		NoSigs:     true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("bustest: new nats server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(startTimeout) {
		s.Shutdown()
		t.Fatalf("bustest: nats server not ready within %s", startTimeout)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect starts a server (RunServer), connects to it, and creates the AMT
// stream with the default configuration. The connection is closed in
// t.Cleanup before the server shuts down.
func Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return ConnectTo(t, RunServer(t))
}

// ConnectTo connects to url and ensures the AMT stream; the connection is
// closed in t.Cleanup.
func ConnectTo(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("bustest: connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("bustest: jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if _, err := bus.EnsureStream(ctx, js, bus.StreamConfig{}); err != nil {
		t.Fatalf("bustest: %v", err)
	}
	return nc, js
}
