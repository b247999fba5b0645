package admin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/telemetry"
)

func TestMain(m *testing.M) {
	storetest.Main(m)
	if err := goleak.Find(); err != nil {
		panic(fmt.Sprintf("goroutine leak: %v", err))
	}
}

type echoReq struct {
	Name string `json:"name"`
}

type echoResp struct {
	Hello string `json:"hello"`
	Actor string `json:"actor"`
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// start runs srv until the test ends.
func start(t *testing.T, srv *admin.Server) {
	t.Helper()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
}

var (
	subjEcho   = admin.Subject(admin.AreaDomain, "echo")
	subjFail   = admin.Subject(admin.AreaDomain, "fail")
	subjBroken = admin.Subject(admin.AreaDomain, "broken")
	subjSlow   = admin.Subject(admin.AreaDomain, "slow")
	subjNil    = admin.Subject(admin.AreaDomain, "nil")
)

func newServer(t *testing.T, nc *nats.Conn, log *slog.Logger, tel telemetry.Providers) *admin.Server {
	t.Helper()
	srv := admin.NewServer(nc, admin.ServerOptions{Queue: admin.QueueGroup("test"), Timeout: 2 * time.Second, Log: log, Telemetry: tel})
	admin.Handle(srv, subjEcho, func(ctx context.Context, r echoReq) (echoResp, error) {
		return echoResp{Hello: r.Name, Actor: admin.Actor(ctx)}, nil
	})
	admin.Handle(srv, subjFail, func(ctx context.Context, r echoReq) (echoResp, error) {
		return echoResp{}, fmt.Errorf("look up %s: %w", r.Name, admin.Errorf(admin.CodeNotFound, "no domain %q", r.Name))
	})
	admin.Handle(srv, subjBroken, func(ctx context.Context, r echoReq) (echoResp, error) {
		return echoResp{}, errors.New("connect to db password=hunter2 failed")
	})
	admin.Handle(srv, subjSlow, func(ctx context.Context, r echoReq) (echoResp, error) {
		<-ctx.Done()
		return echoResp{}, fmt.Errorf("wait: %w", ctx.Err())
	})
	admin.Handle(srv, subjNil, func(ctx context.Context, r echoReq) (*echoResp, error) { return nil, nil })
	return srv
}

func TestCall(t *testing.T) {
	url := bustest.RunServer(t)
	var logBuf syncBuffer
	srv := newServer(t, connect(t, url), slog.New(slog.NewTextHandler(&logBuf, nil)), telemetry.Providers{})
	start(t, srv)
	nc := connect(t, url)
	ctx := admin.WithActor(context.Background(), "alice@host1")

	t.Run("result and actor", func(t *testing.T) {
		var resp echoResp
		if err := admin.Call(ctx, nc, subjEcho, echoReq{Name: "corp.example.com"}, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Hello != "corp.example.com" || resp.Actor != "alice@host1" {
			t.Fatalf("resp = %+v", resp)
		}
	})
	t.Run("nil result", func(t *testing.T) {
		var resp *echoResp
		if err := admin.Call(ctx, nc, subjNil, nil, &resp); err != nil || resp != nil {
			t.Fatalf("Call = %v, resp %v; want nil, nil", err, resp)
		}
	})

	tests := []struct {
		name     string
		subject  string
		timeout  time.Duration
		wantCode string
		wantMsg  string
	}{
		{"service error passes through wrapped", subjFail, 0, admin.CodeNotFound, `no domain "x"`},
		{"internal error hides its text", subjBroken, 0, admin.CodeInternal, "internal error"},
		{"server-side timeout", subjSlow, 0, admin.CodeTimeout, "did not finish"},
		{"client-side timeout", subjSlow, 50 * time.Millisecond, admin.CodeTimeout, "no reply"},
		{"nobody answers", admin.Subject(admin.AreaScan, "nobody"), 0, admin.CodeUnavailable, "no service answers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cctx := ctx
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				cctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			err := admin.Call(cctx, nc, tc.subject, echoReq{Name: "x"}, new(echoResp))
			var e *admin.Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want *admin.Error", err, err)
			}
			if e.Code != tc.wantCode || !strings.Contains(e.Message, tc.wantMsg) {
				t.Fatalf("err = %v, want code %s and message containing %q", e, tc.wantCode, tc.wantMsg)
			}
			if !errors.Is(err, &admin.Error{Code: tc.wantCode}) {
				t.Fatalf("errors.Is by code failed for %v", err)
			}
			if strings.Contains(e.Message, "hunter2") {
				t.Fatal("internal error text reached the caller")
			}
		})
	}
	if !strings.Contains(logBuf.String(), "hunter2") {
		// The service log is where the detail goes (this test's secret is fake).
		t.Error("internal error was not logged on the server")
	}

	t.Run("malformed request", func(t *testing.T) {
		msg, err := nc.Request(subjEcho, []byte(`{"name": 5`), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(msg.Data, []byte(`"code":"BAD_REQUEST"`)) {
			t.Fatalf("reply %s, want BAD_REQUEST", msg.Data)
		}
	})
	t.Run("oversized request", func(t *testing.T) {
		big := echoReq{Name: strings.Repeat("a", admin.MaxRequestSize)}
		err := admin.Call(ctx, nc, subjEcho, big, nil)
		if c := admin.CodeOf(err); c != admin.CodeBadRequest && c != admin.CodeUnavailable {
			// UNAVAILABLE: the NATS server's own max_payload refused it first.
			t.Fatalf("err = %v, want BAD_REQUEST or UNAVAILABLE", err)
		}
	})
}

func TestTraceContinues(t *testing.T) {
	url := bustest.RunServer(t)
	tel, rec := telemetry.NewForTest("admin-test")
	start(t, newServer(t, connect(t, url), nil, tel))
	ctx, span := tel.Tracer.Tracer("cli").Start(context.Background(), "cli")
	if err := admin.Call(ctx, connect(t, url), subjEcho, echoReq{}, nil); err != nil {
		t.Fatal(err)
	}
	span.End()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, s := range rec.Ended() {
			if s.Name() == subjEcho && s.SpanKind() == trace.SpanKindServer {
				if s.SpanContext().TraceID() != span.SpanContext().TraceID() {
					t.Fatalf("server span in trace %s, want %s", s.SpanContext().TraceID(), span.SpanContext().TraceID())
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no server span recorded")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestQueueGroupSharesLoad(t *testing.T) {
	url := bustest.RunServer(t)
	var counts [2]atomic.Int64
	for i := range counts {
		srv := admin.NewServer(connect(t, url), admin.ServerOptions{Queue: admin.QueueGroup("test")})
		admin.Handle(srv, subjEcho, func(ctx context.Context, r echoReq) (echoResp, error) {
			counts[i].Add(1)
			return echoResp{Hello: r.Name}, nil
		})
		start(t, srv)
	}
	nc := connect(t, url)
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp echoResp
			if err := admin.Call(context.Background(), nc, subjEcho, echoReq{Name: fmt.Sprint(i)}, &resp); err != nil || resp.Hello != fmt.Sprint(i) {
				t.Errorf("call %d: %v %+v", i, err, resp)
			}
		}()
	}
	wg.Wait()
	a, b := counts[0].Load(), counts[1].Load()
	if a+b != n || a == 0 || b == 0 {
		t.Fatalf("replicas served %d and %d of %d requests; want all, shared", a, b, n)
	}
}

func TestStopAnswersInFlight(t *testing.T) {
	url := bustest.RunServer(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	srv := admin.NewServer(connect(t, url), admin.ServerOptions{Queue: "q"})
	admin.Handle(srv, subjEcho, func(ctx context.Context, r echoReq) (echoResp, error) {
		close(entered)
		<-release
		return echoResp{Hello: "done"}, nil
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	nc := connect(t, url)
	got := make(chan error, 1)
	go func() {
		var resp echoResp
		err := admin.Call(context.Background(), nc, subjEcho, echoReq{}, &resp)
		if err == nil && resp.Hello != "done" {
			err = fmt.Errorf("resp %+v", resp)
		}
		got <- err
	}()
	<-entered
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped <- srv.Stop(ctx)
	}()
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-got; err != nil {
		t.Fatalf("in-flight call: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := admin.Call(context.Background(), nc, subjEcho, echoReq{}, nil); admin.CodeOf(err) != admin.CodeUnavailable {
		t.Fatalf("call after Stop = %v, want UNAVAILABLE", err)
	}
}

func TestAuditAppendOnly(t *testing.T) {
	pool := storetest.New(t)
	ctx := admin.WithActor(context.Background(), "bob@ops")
	if err := admin.Audit(ctx, pool, "device.credentials.read", "939b524b-13d4-1d18-e487-1c697a6b7a2b", map[string]any{"version": 2}); err != nil {
		t.Fatal(err)
	}
	var actor, action, detail string
	if err := pool.QueryRow(ctx, `SELECT actor, action, detail::text FROM audit_log`).Scan(&actor, &action, &detail); err != nil {
		t.Fatal(err)
	}
	if actor != "bob@ops" || action != "device.credentials.read" || detail != `{"version": 2}` {
		t.Fatalf("row = %s %s %s", actor, action, detail)
	}
	for _, stmt := range []string{`UPDATE audit_log SET actor = 'x'`, `DELETE FROM audit_log`, `TRUNCATE audit_log`} {
		if _, err := pool.Exec(ctx, stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: err = %v, want append-only refusal", stmt, err)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the server's handler goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A JetStream stream whose subjects cover a request subject stores the
// request and answers it with a PubAck before the service does (the AMT
// stream did this until it listed event subjects only). Call must skip the
// PubAck and return the service's reply.
func TestCallIgnoresJetStreamAck(t *testing.T) {
	nc := connect(t, bustest.RunServer(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CAPTURE", Subjects: []string{subjEcho}, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	srv := admin.NewServer(nc, admin.ServerOptions{Queue: "q"})
	admin.Handle(srv, subjEcho, func(ctx context.Context, r echoReq) (echoResp, error) {
		// Answer only after the stream stored the request, so its PubAck
		// reaches the inbox first.
		for {
			info, err := stream.Info(ctx)
			if err != nil {
				return echoResp{}, err
			}
			if info.State.Msgs > 0 {
				return echoResp{Hello: r.Name}, nil
			}
			select {
			case <-ctx.Done():
				return echoResp{}, ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
	})
	start(t, srv)
	var resp echoResp
	if err := admin.Call(ctx, nc, subjEcho, echoReq{Name: "x"}, &resp); err != nil || resp.Hello != "x" {
		t.Fatalf("Call = %v, %+v", err, resp)
	}
}

// A Call without a deadline on a closed connection fails at once
// (UNAVAILABLE) instead of waiting for a reply that cannot come.
func TestCallOnClosedConnection(t *testing.T) {
	nc := connect(t, bustest.RunServer(t))
	nc.Close()
	errc := make(chan error, 1)
	go func() { errc <- admin.Call(context.Background(), nc, subjEcho, echoReq{Name: "x"}, nil) }()
	select {
	case err := <-errc:
		if admin.CodeOf(err) != admin.CodeUnavailable {
			t.Fatalf("Call = %v, want UNAVAILABLE", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Call on a closed connection did not return within 5 s")
	}
}

// TestServerReady: a server is ready from Start (its subjects answer) until
// Stop begins, and not before or after.
func TestServerReady(t *testing.T) {
	url := bustest.RunServer(t)
	srv := admin.NewServer(connect(t, url), admin.ServerOptions{Queue: "q"})
	admin.Handle(srv, subjEcho, func(ctx context.Context, r echoReq) (echoResp, error) { return echoResp{Hello: r.Name}, nil })
	ctx := context.Background()
	if err := srv.Ready(ctx); err == nil {
		t.Fatal("ready before Start")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Ready(ctx); err != nil {
		t.Fatalf("not ready after Start: %v", err)
	}
	// Ready means a caller is answered now.
	if err := admin.Call(ctx, connect(t, url), subjEcho, echoReq{Name: "x"}, nil); err != nil {
		t.Fatalf("call once ready: %v", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := srv.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Ready(ctx); err == nil {
		t.Fatal("ready after Stop")
	}
}
