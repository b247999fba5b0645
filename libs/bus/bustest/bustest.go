// Package bustest runs an embedded NATS server with JetStream for tests of
// any package that talks to the bus (STYLE.md "Tests": a real server on a
// random port, never a mock).
package bustest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
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
	s, err := startServer("bustest", t.TempDir())
	if err != nil {
		t.Fatalf("bustest: %v", err)
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

// startServer runs a JetStream server on a random loopback port storing
// under dir, once it accepts connections.
func startServer(name, dir string) (*server.Server, error) {
	s, err := server.NewServer(&server.Options{ServerName: name, Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("new nats server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(startTimeout) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server not ready within %s", startTimeout)
	}
	return s, nil
}

// childEnv names the environment variable that turns a test binary into a
// NATS server process (see ServeIfChild).
const childEnv = "BUSTEST_NATS_SERVER_DIR"

// ServeIfChild must be the first call of TestMain in a package that uses
// RunServerProcess: in the child process started by RunServerProcess it
// runs the embedded server, prints its client URL on stdout, serves until
// its standard input closes (the parent exited) and exits. Elsewhere it
// returns at once.
func ServeIfChild() {
	dir := os.Getenv(childEnv)
	if dir == "" {
		return
	}
	s, err := startServer("bustest-child", dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bustest child:", err)
		os.Exit(2)
	}
	fmt.Println(s.ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	s.Shutdown()
	s.WaitForShutdown()
	os.Exit(0)
}

// RunServerProcess is like RunServer, but the server runs in a child
// process (this test binary re-executed; the package's TestMain must call
// ServeIfChild first). Tests that SIGKILL separate client processes use
// it: nats-server v2.15.2 has occasional internal data races on abruptly
// closed JetStream clients, which the race detector would otherwise report
// against the test that merely hosts the server. The child's own race
// reports are logged with t.Log, not hidden.
func RunServerProcess(t testing.TB) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+t.TempDir())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("bustest: start server process: %v", err)
	}
	urlc := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		urlc <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var url string
	select {
	case url = <-urlc:
	case <-time.After(2 * startTimeout):
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if bytes.Contains(stderr.Bytes(), []byte("DATA RACE")) {
			t.Logf("bustest: the nats-server child process reported a data race inside nats-server:\n%s", stderr.String())
		}
	})
	if !strings.HasPrefix(url, "nats://") {
		t.Fatalf("bustest: server process did not start: %q\n%s", url, stderr.String())
	}
	return url
}
