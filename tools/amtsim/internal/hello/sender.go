package hello

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
)

// Config is shared by every device of a fleet.
type Config struct {
	// Server is the provisioning server's host:port.
	Server   string
	Schedule Schedule
	// TimeScale divides every firmware delay: 60 makes a minute a second.
	TimeScale float64
	// Spread is the real-time window over which devices send their first
	// hello (machines do not power on at the same instant). Zero means the
	// first interval of the schedule, scaled.
	Spread time.Duration
	// Jitter is the fraction (0-0.5) by which each later interval varies per
	// device, so a fleet does not stay in lock step. Default 0.1.
	Jitter float64
	// MaxDials bounds concurrent hello connections for the whole fleet.
	// Default 128.
	MaxDials int
	// DialTimeout bounds connect and write of one hello. Default 5 s.
	DialTimeout time.Duration
	Logger      *slog.Logger
}

// Sender runs the hello loops of a fleet's devices.
type Sender struct {
	cfg    Config
	sem    chan struct{}
	wg     sync.WaitGroup
	failed atomic.Int64
}

// Failed counts hellos that could not be delivered (no server listening,
// timeouts), fleet-wide.
func (s *Sender) Failed() int64 { return s.failed.Load() }

// New checks cfg and fills in defaults.
func New(cfg Config) (*Sender, error) {
	if _, _, err := net.SplitHostPort(cfg.Server); err != nil {
		return nil, fmt.Errorf("hello sender: provisioning server %q: %w", cfg.Server, err)
	}
	if len(cfg.Schedule.Phases) == 0 && cfg.Schedule.Cutoff == 0 {
		cfg.Schedule = DefaultSchedule()
	}
	if err := cfg.Schedule.Validate(); err != nil {
		return nil, fmt.Errorf("hello sender: %w", err)
	}
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 1
	}
	if cfg.TimeScale < 0 {
		return nil, fmt.Errorf("hello sender: time scale %v must be positive", cfg.TimeScale)
	}
	if cfg.Jitter == 0 {
		cfg.Jitter = 0.1
	}
	if cfg.Jitter < 0 || cfg.Jitter > 0.5 {
		return nil, fmt.Errorf("hello sender: jitter %v outside 0-0.5", cfg.Jitter)
	}
	if cfg.Spread == 0 {
		if first, ok := cfg.Schedule.Offset(1); ok {
			cfg.Spread = time.Duration(float64(first) / cfg.TimeScale)
		}
	}
	if cfg.MaxDials <= 0 {
		cfg.MaxDials = 128
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sender{cfg: cfg, sem: make(chan struct{}, cfg.MaxDials)}, nil
}

// Start runs d's hello loop until ctx ends: while d is in setup mode it
// sends hellos from the address from; when d leaves setup mode it stops,
// and a return to setup mode (firmware.Device.Reset) opens a new window.
func (s *Sender) Start(ctx context.Context, d *firmware.Device, from netip.Addr, seed int64) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		l := &loop{s: s, d: d, from: from, rng: rand.New(rand.NewPCG(uint64(seed), 0x6865_6c6c_6f))}
		l.run(ctx)
	}()
}

// Wait blocks until every loop started has returned (after ctx ended).
func (s *Sender) Wait() { s.wg.Wait() }

type loop struct {
	s    *Sender
	d    *firmware.Device
	from netip.Addr
	rng  *rand.Rand
}

func (l *loop) run(ctx context.Context) {
	for {
		// Take the channel before reading the state, so a change between the
		// two is not missed.
		changed := l.d.Changed()
		if l.d.State() == amt.InProvisioning {
			if !l.window(ctx) {
				return
			}
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// window sends the hellos of one setup window. It returns false when ctx
// ended, true when the device left setup mode or the window closed and a
// later state change reopened it.
func (l *loop) window(ctx context.Context) bool {
	cfg := &l.s.cfg
	start := time.Now()
	if cfg.Spread > 0 {
		start = start.Add(time.Duration(l.rng.Int64N(int64(cfg.Spread))))
	}
	for n := 0; ; n++ {
		off, ok := cfg.Schedule.Offset(n)
		if !ok {
			break
		}
		due := start.Add(l.scale(off, n))
		for {
			changed := l.d.Changed()
			if l.d.State() != amt.InProvisioning {
				return true
			}
			wait := time.Until(due)
			if wait <= 0 {
				break
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-changed:
				t.Stop()
			case <-ctx.Done():
				t.Stop()
				return false
			}
		}
		if err := l.send(ctx, n); err != nil {
			if ctx.Err() != nil {
				return false
			}
			l.s.failed.Add(1)
			l.s.cfg.Logger.Debug("hello not delivered", "uuid", l.d.Config().UUID, "from", l.from, "retry", n, "err", err)
		}
	}
	// The window is closed: stay quiet until the device changes state
	// (a reset re-opens the window, PROTOCOL.md §3 "re-opening").
	select {
	case <-l.d.Changed():
		return true
	case <-ctx.Done():
		return false
	}
}

// scale turns a firmware-time offset into real time, with jitter on all
// but the first hello.
func (l *loop) scale(off time.Duration, n int) time.Duration {
	d := float64(off) / l.s.cfg.TimeScale
	if n > 0 && l.s.cfg.Jitter > 0 {
		d *= 1 + l.s.cfg.Jitter*(2*l.rng.Float64()-1)
	}
	return time.Duration(d)
}

// Hello is the hello d sends with retry count n (saturating at 14, the
// largest value the IRG documents): v3 with its trusted root hashes, or v2
// with its PID for a legacy device.
func Hello(d *firmware.Device, n int) amt.Hello {
	cfg := d.Config()
	retry := uint32(min(n, amt.MaxRetryCount))
	h := amt.Hello{AdminCredentialsSet: true, InterfaceVersion: amt.InterfacePKI, RetryCount: retry, UUID: d.UUID()}
	if cfg.Legacy {
		h.InterfaceVersion, h.PID = amt.InterfacePSK, cfg.PID
		return h
	}
	h.RootHashes = d.TrustedRoots()
	return h
}

var errNoSlot = errors.New("no dial slot before the hello was due")

func (l *loop) send(ctx context.Context, n int) error {
	payload, err := Hello(l.d, n).MarshalBinary()
	if err != nil {
		return fmt.Errorf("encode hello: %w", err)
	}
	select {
	case l.s.sem <- struct{}{}:
	case <-ctx.Done():
		return errNoSlot
	}
	defer func() { <-l.s.sem }()
	dctx, cancel := context.WithTimeout(ctx, l.s.cfg.DialTimeout)
	defer cancel()
	dialer := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(l.from, 0))}
	conn, err := dialer.DialContext(dctx, "tcp", l.s.cfg.Server)
	if err != nil {
		return fmt.Errorf("dial %s from %s: %w", l.s.cfg.Server, l.from, err)
	}
	defer conn.Close()
	if dl, ok := dctx.Deadline(); ok {
		_ = conn.SetWriteDeadline(dl)
	}
	if _, err := conn.Write(payload); err != nil {
		return fmt.Errorf("write hello to %s: %w", l.s.cfg.Server, err)
	}
	// Firmware writes and closes; the server answers nothing (§4.1).
	if err := conn.Close(); err != nil {
		return fmt.Errorf("close hello connection: %w", err)
	}
	l.d.Counters.HellosSent.Add(1)
	return nil
}
