package hello_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
	"github.com/amtprov/amtprov/tools/amtsim/internal/fleetgen"
	"github.com/amtprov/amtprov/tools/amtsim/internal/hello"
	"github.com/amtprov/amtprov/tools/amtsim/internal/keypool"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type received struct {
	from  netip.Addr
	hello amt.Hello
}

// server is a provisioning server's hello port, as a test sees it.
type server struct {
	ln  net.Listener
	mu  sync.Mutex
	got []received
	err []error
}

func newServer(t *testing.T) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := io.ReadAll(io.LimitReader(c, amt.MaxHelloSize+1))
			c.Close()
			from := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
			h, derr := amt.DecodeHello(b)
			s.mu.Lock()
			if err != nil || derr != nil {
				s.err = append(s.err, err, derr)
			} else {
				s.got = append(s.got, received{from, h})
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return s
}

func (s *server) snapshot() ([]received, []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...), append([]error(nil), s.err...)
}

// waitFor polls until cond holds on what the server received.
func (s *server) waitFor(t *testing.T, what string, cond func([]received) bool) []received {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, errs := s.snapshot()
		if len(errs) > 0 {
			t.Fatalf("server errors: %v", errs)
		}
		if cond(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; got %d hellos", what, len(got))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func devices(t *testing.T, o fleetgen.Options) []*firmware.Device {
	t.Helper()
	if o.Base == (netip.Addr{}) {
		o.Base, o.Range = netip.MustParseAddr("127.10.9.1"), netip.MustParsePrefix("127.10.0.0/16")
	}
	if o.DNSSuffix == "" {
		o.DNSSuffix = "corp.example.com"
	}
	cfgs, err := fleetgen.Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	pool := keypool.New(1)
	out := make([]*firmware.Device, len(cfgs))
	for i, c := range cfgs {
		if out[i], err = firmware.NewDevice(c, firmware.Realism{}, pool); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func start(t *testing.T, cfg hello.Config, devs []*firmware.Device) *hello.Sender {
	t.Helper()
	s, err := hello.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	for i, d := range devs {
		s.Start(ctx, d, netip.MustParseAddr(d.Config().IP), int64(i))
	}
	t.Cleanup(func() { cancel(); s.Wait() })
	return s
}

func byDevice(got []received, u amt.UUID) []received {
	var out []received
	for _, r := range got {
		if r.hello.UUID == u {
			out = append(out, r)
		}
	}
	return out
}

func TestSenderScheduleV3AndV2(t *testing.T) {
	srv := newServer(t)
	devs := devices(t, fleetgen.Options{Count: 4, Seed: 3, LegacyShare: 0.25})
	// 4 hellos per window: at 0, 1, 2 and 3 "minutes", a minute being 20 ms.
	sched := hello.Schedule{Phases: []hello.Phase{{Every: time.Minute, Count: 3}}, Cutoff: time.Hour}
	start(t, hello.Config{Server: srv.ln.Addr().String(), Schedule: sched, TimeScale: 3000, Spread: time.Millisecond}, devs)

	got := srv.waitFor(t, "4 hellos from every device", func(g []received) bool { return len(g) >= 16 })
	for _, d := range devs {
		mine := byDevice(got, d.UUID())
		if len(mine) != 4 {
			t.Fatalf("device %s sent %d hellos, want 4", d.Config().UUID, len(mine))
		}
		cfg := d.Config()
		for i, r := range mine {
			if r.from.String() != cfg.IP {
				t.Fatalf("hello came from %v, want the device's own address %s", r.from, cfg.IP)
			}
			if r.hello.RetryCount != uint32(i) || !r.hello.AdminCredentialsSet {
				t.Fatalf("hello %d: retry %d admin %v", i, r.hello.RetryCount, r.hello.AdminCredentialsSet)
			}
			if cfg.Legacy {
				if r.hello.InterfaceVersion != amt.InterfacePSK || r.hello.PID != cfg.PID {
					t.Fatalf("legacy device sent version %d PID %q", r.hello.InterfaceVersion, r.hello.PID)
				}
			} else if r.hello.InterfaceVersion != amt.InterfacePKI || len(r.hello.RootHashes) != len(d.TrustedRoots()) {
				t.Fatalf("v3 hello with %d hashes, device trusts %d", len(r.hello.RootHashes), len(d.TrustedRoots()))
			}
		}
		// The sink can read a hello before the sender counts it: poll.
		deadline := time.Now().Add(5 * time.Second)
		for d.Counters.HellosSent.Load() < 4 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if n := d.Counters.HellosSent.Load(); n != 4 {
			t.Fatalf("HellosSent = %d, want 4", n)
		}
	}
	var legacy int
	for _, d := range devs {
		if d.Config().Legacy {
			legacy++
		}
	}
	if legacy != 1 {
		t.Fatalf("%d legacy devices, want 1", legacy)
	}

	// The window is closed; a reset opens a new one, starting again at retry 0.
	devs[0].Reset()
	got = srv.waitFor(t, "a new window after Reset", func(g []received) bool { return len(byDevice(g, devs[0].UUID())) >= 8 })
	mine := byDevice(got, devs[0].UUID())
	for i, r := range mine[4:8] {
		if r.hello.RetryCount != uint32(i) {
			t.Fatalf("after reset hello %d has retry %d", i, r.hello.RetryCount)
		}
	}
}

func TestSenderProvisionedDeviceIsSilentUntilReset(t *testing.T) {
	srv := newServer(t)
	devs := devices(t, fleetgen.Options{Count: 2, Seed: 9, ProvisionedShare: 0.5, AdminPassword: "P@ssw0rd!"})
	var prov, setup *firmware.Device
	for _, d := range devs {
		if d.State() == amt.PostProvisioning {
			prov = d
		} else {
			setup = d
		}
	}
	if prov == nil || setup == nil {
		t.Fatal("fleet lacks a provisioned and a setup-mode device")
	}
	sched := hello.Schedule{Phases: []hello.Phase{{Every: time.Minute, Count: 1}}, Cutoff: time.Hour}
	start(t, hello.Config{Server: srv.ln.Addr().String(), Schedule: sched, TimeScale: 3000, Spread: time.Millisecond}, devs)
	srv.waitFor(t, "the setup-mode device's hellos", func(g []received) bool { return len(byDevice(g, setup.UUID())) == 2 })
	got, _ := srv.snapshot()
	if n := len(byDevice(got, prov.UUID())); n != 0 {
		t.Fatalf("provisioned device sent %d hellos", n)
	}
	prov.Reset()
	srv.waitFor(t, "hellos after Reset", func(g []received) bool { return len(byDevice(g, prov.UUID())) == 2 })
}

func TestSenderRetryCountSaturates(t *testing.T) {
	srv := newServer(t)
	devs := devices(t, fleetgen.Options{Count: 1, Seed: 5})
	sched := hello.Schedule{Phases: []hello.Phase{{Every: time.Millisecond, Count: 19}}, Cutoff: time.Hour}
	start(t, hello.Config{Server: srv.ln.Addr().String(), Schedule: sched, TimeScale: 1, Spread: time.Millisecond, Jitter: 0.01}, devs)
	got := srv.waitFor(t, "20 hellos", func(g []received) bool { return len(g) == 20 })
	for i, r := range got {
		if want := uint32(min(i, amt.MaxRetryCount)); r.hello.RetryCount != want {
			t.Fatalf("hello %d retry %d, want %d", i, r.hello.RetryCount, want)
		}
	}
}

func TestSenderKeepsTryingWithoutServer(t *testing.T) {
	// Nothing listens: hellos fail, nothing is counted, the loop keeps going
	// and stops cleanly with ctx (goleak checks).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	devs := devices(t, fleetgen.Options{Count: 1, Seed: 6})
	sched := hello.Schedule{Phases: []hello.Phase{{Every: time.Millisecond, Count: 5}}, Cutoff: time.Hour}
	failures := &countingHandler{}
	s := start(t, hello.Config{Server: addr, Schedule: sched, TimeScale: 1, Spread: time.Millisecond, Logger: slog.New(failures)}, devs)
	deadline := time.Now().Add(10 * time.Second)
	for failures.n.Load() < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d failed hellos logged, want 6", failures.n.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if n := devs[0].Counters.HellosSent.Load(); n != 0 {
		t.Fatalf("HellosSent = %d with no server", n)
	}
	if n := s.Failed(); n < 6 {
		t.Fatalf("Failed = %d, want at least 6", n)
	}
}

// countingHandler counts log records, to see failed hellos happen.
type countingHandler struct{ n atomic.Int64 }

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "hello not delivered" {
		h.n.Add(1)
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func TestNewRejects(t *testing.T) {
	bad := []hello.Config{
		{Server: "no-port"},
		{Server: "127.0.0.1:9971", TimeScale: -1},
		{Server: "127.0.0.1:9971", Jitter: 0.9},
		{Server: "127.0.0.1:9971", Schedule: hello.Schedule{Cutoff: -1}},
	}
	for _, c := range bad {
		if _, err := hello.New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
