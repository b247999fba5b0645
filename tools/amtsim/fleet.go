package amtsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
	"github.com/amtprov/amtprov/tools/amtsim/internal/control"
	"github.com/amtprov/amtprov/tools/amtsim/internal/fleetgen"
	"github.com/amtprov/amtprov/tools/amtsim/internal/hello"
	"github.com/amtprov/amtprov/tools/amtsim/internal/keypool"
	"github.com/amtprov/amtprov/tools/amtsim/internal/listener"
	"github.com/amtprov/amtprov/tools/amtsim/internal/probes"
)

// HelloSchedule is when a device in setup mode sends hellos (PROTOCOL.md §3).
type HelloSchedule = hello.Schedule

// HelloPhase is one run of hellos at a fixed interval.
type HelloPhase = hello.Phase

// ProbeSecond is one second of a device's probe counts.
type ProbeSecond = probes.Second

// DefaultHelloSchedule is the firmware schedule: 1/min for 5 min, every
// 5 min for an hour, hourly, window closing at 24 h.
func DefaultHelloSchedule() HelloSchedule { return hello.DefaultSchedule() }

// Defaults of Options.
const (
	DefaultBase            = "127.10.0.1"
	DefaultRange           = "127.10.0.0/16"
	DefaultProvisionServer = "127.0.0.1:9971"
	DefaultDNSSuffix       = "corp.example.com"
	DefaultAdminUser       = "admin"
)

// FaultSpec puts a fault on a seeded share of the fleet at start.
type FaultSpec struct {
	Kind  firmware.FaultKind
	Share float64
	For   time.Duration // zero: for the whole run
}

// Options configure a fleet. Zero values take the documented defaults.
type Options struct {
	Devices int
	Seed    int64
	// Base is the first device's address (default 127.10.0.1); devices take
	// consecutive addresses inside Range (default 127.10.0.0/16). On Linux
	// all of 127.0.0.0/8 is local: no setup needed.
	Base  netip.Addr
	Range netip.Prefix
	// ProvisionServer is where hellos go (default 127.0.0.1:9971).
	ProvisionServer string
	// TrustHashes are added to every device's firmware default roots.
	TrustHashes []amt.RootHash
	// DNSSuffix is every device's domain (default corp.example.com).
	DNSSuffix string
	// LegacyShare of devices run pre-11 firmware and send v2 (PSK) hellos.
	LegacyShare float64
	// ProvisionedShare of devices start activated by another console with
	// AdminUser (default admin) / AdminPassword and TLS on.
	ProvisionedShare float64
	AdminUser        string
	AdminPassword    string
	// TimeScale divides hello intervals (default 1): 60 turns minutes into
	// seconds.
	TimeScale float64
	// Latency is the mean added to each WS-Man call, drawn per call from a
	// seeded log-normal distribution. Zero: none.
	Latency     time.Duration
	KeyGenDelay time.Duration
	CommitDelay time.Duration
	// Ports; defaults 16992, 16993, 623 (623 needs root). Tests may move them.
	HTTPPort, TLSPort, RMCPPort int
	// HelloSchedule defaults to DefaultHelloSchedule.
	HelloSchedule HelloSchedule
	// HelloSpread is the real-time window over which first hellos are spread
	// (default: 1 ms per device, at most the schedule's first interval).
	HelloSpread time.Duration
	// SlowDelay is the connection-level delay of the slow fault (default 2 s).
	SlowDelay time.Duration
	// Faults are applied to seeded shares of the fleet at start.
	Faults []FaultSpec
	// Sockets chooses the socket layout (default LayoutAuto).
	Sockets SocketLayout
	// Configs, when set, are the devices (a loaded fleet file); Devices,
	// Seed, Base and the shares are then not used.
	Configs []firmware.Config
	Logger  *slog.Logger
}

func (o *Options) defaults() error {
	if o.Base == (netip.Addr{}) {
		o.Base = netip.MustParseAddr(DefaultBase)
	}
	if o.Range == (netip.Prefix{}) {
		o.Range = netip.MustParsePrefix(DefaultRange)
	}
	if o.ProvisionServer == "" {
		o.ProvisionServer = DefaultProvisionServer
	}
	if o.DNSSuffix == "" {
		o.DNSSuffix = DefaultDNSSuffix
	}
	if o.AdminUser == "" {
		o.AdminUser = DefaultAdminUser
	}
	if o.TimeScale == 0 {
		o.TimeScale = 1
	}
	if o.TimeScale < 0 || math.IsNaN(o.TimeScale) || math.IsInf(o.TimeScale, 0) {
		return fmt.Errorf("time scale %v must be a positive number", o.TimeScale)
	}
	for _, p := range []int{o.HTTPPort, o.TLSPort, o.RMCPPort} {
		if p < 0 || p > 65535 {
			return fmt.Errorf("port %d outside 1-65535", p)
		}
	}
	if o.HTTPPort != 0 && o.HTTPPort == o.TLSPort {
		return fmt.Errorf("HTTP and TLS ports are both %d", o.HTTPPort)
	}
	if o.Latency < 0 || o.KeyGenDelay < 0 || o.CommitDelay < 0 || o.SlowDelay < 0 {
		return errors.New("latency and delays must not be negative")
	}
	if len(o.HelloSchedule.Phases) == 0 && o.HelloSchedule.Cutoff == 0 {
		o.HelloSchedule = hello.DefaultSchedule()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch o.Sockets {
	case LayoutAuto, LayoutPerDevice, LayoutShared:
	default:
		return fmt.Errorf("socket layout %q: want %q or %q", o.Sockets, LayoutPerDevice, LayoutShared)
	}
	for _, f := range o.Faults {
		if !KnownFault(f.Kind) {
			return fmt.Errorf("fault %q: unknown kind", f.Kind)
		}
		if f.Share < 0 || f.Share > 1 || math.IsNaN(f.Share) || f.For < 0 {
			return fmt.Errorf("fault %s: share %v or duration %v out of range", f.Kind, f.Share, f.For)
		}
	}
	return nil
}

// faultKinds are the faults the control API and --faults accept.
var faultKinds = []firmware.FaultKind{
	firmware.FaultReset, firmware.FaultReboot, firmware.FaultUnreachable, firmware.FaultSlow,
	firmware.FaultWrongPassword, firmware.FaultCertRefused, firmware.FaultTransient5xx,
}

// KnownFault reports whether k is a fault kind the simulator implements.
func KnownFault(k firmware.FaultKind) bool { return slices.Contains(faultKinds, k) }

// forever stands for "the whole run" in fault durations.
const forever = 100 * 365 * 24 * time.Hour

type member struct {
	d  *firmware.Device
	ep *listener.Endpoint
}

// SocketLayout says how device sockets are bound.
type SocketLayout string

// Socket layouts. Both look the same from the network: every device answers
// on its own address.
const (
	// LayoutAuto binds per device when the open-file limit allows (three
	// descriptors a device), else shares.
	LayoutAuto SocketLayout = ""
	// LayoutPerDevice binds three sockets on each device's address.
	LayoutPerDevice SocketLayout = "per-device"
	// LayoutShared binds three sockets for the whole fleet on the wildcard
	// address of the loopback interface and dispatches by destination.
	LayoutShared SocketLayout = "shared"
)

// Fleet is a running simulated fleet.
type Fleet struct {
	opts    Options
	layout  SocketLayout
	sockets []*listener.Sockets
	members []member
	byUUID  map[string]*member
	sender  *hello.Sender
	cancel  context.CancelFunc
	started time.Time
	startIn time.Duration

	closeOnce sync.Once
	closeErr  error
}

// Start makes the fleet and returns once every device listens on its
// address. Close stops it.
func Start(ctx context.Context, opts Options) (*Fleet, error) {
	began := time.Now()
	if err := opts.defaults(); err != nil {
		return nil, fmt.Errorf("start fleet: %w", err)
	}
	cfgs := opts.Configs
	if cfgs == nil {
		var err error
		cfgs, err = fleetgen.Generate(fleetgen.Options{
			Count: opts.Devices, Seed: opts.Seed, Base: opts.Base, Range: opts.Range,
			DNSSuffix: opts.DNSSuffix, TrustHashes: opts.TrustHashes,
			LegacyShare: opts.LegacyShare, ProvisionedShare: opts.ProvisionedShare,
			AdminUser: opts.AdminUser, AdminPassword: opts.AdminPassword,
		})
		if err != nil {
			return nil, fmt.Errorf("start fleet: %w", err)
		}
	}
	layout, err := chooseLayout(opts.Sockets, len(cfgs))
	if err != nil {
		return nil, fmt.Errorf("start fleet of %d devices: %w", len(cfgs), err)
	}
	sender, err := hello.New(hello.Config{
		Server: opts.ProvisionServer, Schedule: opts.HelloSchedule, TimeScale: opts.TimeScale,
		Spread: helloSpread(opts, len(cfgs)), Logger: opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("start fleet: %w", err)
	}
	f := &Fleet{opts: opts, layout: layout, members: make([]member, 0, len(cfgs)), byUUID: make(map[string]*member, len(cfgs)), sender: sender}
	keys := keypool.New(8)
	lcfg := listener.Config{HTTPPort: opts.HTTPPort, TLSPort: opts.TLSPort, RMCPPort: opts.RMCPPort, SlowDelay: opts.SlowDelay, Logger: opts.Logger}
	for i, c := range cfgs {
		addr, err := netip.ParseAddr(c.IP)
		if err != nil {
			f.closeEndpoints()
			return nil, fmt.Errorf("start fleet: device %d (%s) address %q: %w", i, c.UUID, c.IP, err)
		}
		d, err := firmware.NewDevice(c, opts.realism(c.Seed), keys)
		if err != nil {
			f.closeEndpoints()
			return nil, fmt.Errorf("start fleet: device %d: %w", i, err)
		}
		key := strings.ToLower(c.UUID)
		if _, dup := f.byUUID[key]; dup {
			f.closeEndpoints()
			return nil, fmt.Errorf("start fleet: device %d: duplicate uuid %s", i, c.UUID)
		}
		ep := listener.NewEndpoint(d, addr, lcfg)
		if layout == LayoutPerDevice {
			s, err := listener.ListenDevice(ctx, ep)
			if err != nil {
				f.closeEndpoints()
				return nil, fmt.Errorf("start fleet: device %d: %w", i, err)
			}
			f.sockets = append(f.sockets, s)
		}
		f.members = append(f.members, member{d: d, ep: ep})
		f.byUUID[key] = &f.members[len(f.members)-1]
	}
	if layout == LayoutShared {
		eps := make([]*listener.Endpoint, len(f.members))
		for i, m := range f.members {
			eps[i] = m.ep
		}
		s, err := listener.ListenShared(ctx, lcfg, eps)
		if err != nil {
			return nil, fmt.Errorf("start fleet: %w", err)
		}
		f.sockets = append(f.sockets, s)
	}
	f.applyFaults(time.Now())
	for _, s := range f.sockets {
		s.Serve()
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f.cancel = cancel
	for i, m := range f.members {
		sender.Start(runCtx, m.d, m.ep.Addr(), m.d.Config().Seed^int64(i))
	}
	f.started = time.Now()
	f.startIn = f.started.Sub(began)
	opts.Logger.Info("amtsim fleet listening", "devices", len(f.members), "sockets", string(layout), "start", f.startIn)
	return f, nil
}

// chooseLayout settles LayoutAuto: per-device sockets when the open-file
// limit can be raised to three descriptors a device (plus slack for hello
// dials and clients), shared sockets otherwise.
func chooseLayout(want SocketLayout, devices int) (SocketLayout, error) {
	need := uint64(3*devices + 1024)
	switch want {
	case LayoutShared:
		return LayoutShared, raiseFDLimit(1024 + 256)
	case LayoutPerDevice:
		return LayoutPerDevice, raiseFDLimit(need)
	}
	if err := raiseFDLimit(need); err != nil {
		return LayoutShared, nil
	}
	return LayoutPerDevice, nil
}

// Layout is the socket layout in use.
func (f *Fleet) Layout() SocketLayout { return f.layout }

// helloSpread is the window for first hellos: as set, else a millisecond
// per device (a boot storm of about 1,000 hellos a second, and hellos at
// once for a small development fleet), at most the schedule's first
// interval.
func helloSpread(o Options, devices int) time.Duration {
	if o.HelloSpread > 0 {
		return o.HelloSpread
	}
	spread := time.Duration(max(devices, 1)) * time.Millisecond
	if first, ok := o.HelloSchedule.Offset(1); ok {
		spread = min(spread, time.Duration(float64(first)/o.TimeScale))
	}
	return max(spread, time.Millisecond)
}

// realism draws per-call latency from a seeded log-normal distribution
// with mean o.Latency (sigma 0.4), so most calls sit near the mean and a
// few are two or three times slower, as on a busy network.
func (o *Options) realism(seed int64) firmware.Realism {
	r := firmware.Realism{KeyGenDelay: o.KeyGenDelay, CommitDelay: o.CommitDelay}
	if o.Latency <= 0 {
		return r
	}
	const sigma = 0.4
	mean := float64(o.Latency)
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6c6174))
	r.Latency = func() time.Duration {
		mu.Lock()
		z := rng.NormFloat64()
		mu.Unlock()
		return time.Duration(mean * math.Exp(sigma*z-sigma*sigma/2))
	}
	return r
}

// applyFaults puts each FaultSpec on an exact, seeded share of devices.
func (f *Fleet) applyFaults(now time.Time) {
	for i, spec := range f.opts.Faults {
		n := int(math.Round(spec.Share * float64(len(f.members))))
		dur := spec.For
		if dur == 0 {
			dur = forever
		}
		perm := rand.New(rand.NewPCG(uint64(f.opts.Seed), uint64(i)+0xfa17)).Perm(len(f.members))
		for _, j := range perm[:n] {
			f.members[j].d.InjectFault(spec.Kind, now.Add(dur))
		}
	}
}

func (f *Fleet) closeEndpoints() error {
	var errs []error
	for _, s := range f.sockets {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// Close stops the hello senders and every listener, and waits for all of
// the fleet's goroutines.
func (f *Fleet) Close() error {
	f.closeOnce.Do(func() {
		f.cancel()
		f.sender.Wait()
		if err := f.closeEndpoints(); err != nil {
			f.closeErr = fmt.Errorf("close fleet: %w", err)
		}
	})
	return f.closeErr
}

// Devices returns the fleet's devices in address order.
func (f *Fleet) Devices() []*firmware.Device {
	out := make([]*firmware.Device, len(f.members))
	for i, m := range f.members {
		out[i] = m.d
	}
	return out
}

// Device finds a device by UUID (canonical text form, any case).
func (f *Fleet) Device(uuid string) (*firmware.Device, bool) {
	m, ok := f.byUUID[strings.ToLower(uuid)]
	if !ok {
		return nil, false
	}
	return m.d, true
}

// Probes returns a device's probe counts of the last minute, per second.
func (f *Fleet) Probes(uuid string) ([]ProbeSecond, bool) {
	m, ok := f.byUUID[strings.ToLower(uuid)]
	if !ok {
		return nil, false
	}
	return m.ep.Probes.Seconds(time.Now()), true
}

// MaxProbesPerSecond is the busiest second of the last minute for a device,
// over RMCP pings and TCP connections together.
func (f *Fleet) MaxProbesPerSecond(uuid string) (int, bool) {
	m, ok := f.byUUID[strings.ToLower(uuid)]
	if !ok {
		return 0, false
	}
	return m.ep.Probes.Max(time.Now()), true
}

// InjectFault makes kind active on a device for the duration d.
func (f *Fleet) InjectFault(uuid string, kind firmware.FaultKind, d time.Duration) error {
	if !KnownFault(kind) {
		return fmt.Errorf("inject fault %q: unknown kind", kind)
	}
	if d <= 0 {
		return fmt.Errorf("inject fault %s: duration %v must be positive", kind, d)
	}
	dev, ok := f.Device(uuid)
	if !ok {
		return fmt.Errorf("inject fault %s on %s: %w", kind, uuid, ErrNoDevice)
	}
	dev.InjectFault(kind, time.Now().Add(d))
	return nil
}

// ErrNoDevice is returned for a UUID the fleet does not have.
var ErrNoDevice = errors.New("no such device")

// Stats is the fleet's ground truth in numbers.
type Stats struct {
	Devices               int            `json:"devices"`
	States                map[string]int `json:"states"`
	HellosSent            int64          `json:"hellos_sent"`
	HelloFailures         int64          `json:"hello_failures"`
	RMCPPings             int64          `json:"rmcp_pings"`
	HTTPProbes            int64          `json:"http_probes"`
	WSManCalls            int64          `json:"wsman_calls"`
	TLSRejections         int64          `json:"tls_rejections"`
	SessionsOpen          int64          `json:"sessions_open"`
	SessionsMaxConcurrent int64          `json:"sessions_max_concurrent"`
	// MaxProbesPerSecond is the busiest second any one device saw in the
	// last minute (RMCP pings and TCP connections together).
	MaxProbesPerSecond int     `json:"max_probes_per_second"`
	StartSeconds       float64 `json:"start_seconds"`
	UptimeSeconds      float64 `json:"uptime_seconds"`
}

// Stats sums the devices' counters.
func (f *Fleet) Stats() Stats {
	now := time.Now()
	s := Stats{
		Devices:       len(f.members),
		HelloFailures: f.sender.Failed(),
		States:        map[string]int{"pre": 0, "in": 0, "post": 0},
		StartSeconds:  f.startIn.Seconds(),
		UptimeSeconds: time.Since(f.started).Seconds(),
	}
	for _, m := range f.members {
		c := &m.d.Counters
		s.States[m.d.State().String()]++
		s.HellosSent += c.HellosSent.Load()
		s.RMCPPings += c.RMCPPings.Load()
		s.HTTPProbes += c.HTTPProbes.Load()
		s.WSManCalls += c.WSManCalls.Load()
		s.TLSRejections += c.TLSRejections.Load()
		s.SessionsOpen += c.Sessions.Load()
		s.SessionsMaxConcurrent = max(s.SessionsMaxConcurrent, c.SessionsMaxConcurrent.Load())
		s.MaxProbesPerSecond = max(s.MaxProbesPerSecond, m.ep.Probes.Max(now))
	}
	return s
}

// ControlHandler serves the control API of INTERFACES.md "Simulator".
func (f *Fleet) ControlHandler() http.Handler {
	return control.New(control.Source{
		Devices:     f.Devices,
		Device:      f.Device,
		Probes:      func(u string) (any, bool) { return f.Probes(u) },
		Stats:       func() any { return f.Stats() },
		InjectFault: f.InjectFault,
		KnownFault:  KnownFault,
	})
}

// fleetFile is the JSON a fleet is saved as.
type fleetFile struct {
	Format  string            `json:"format"`
	Devices []firmware.Config `json:"devices"`
}

const (
	fleetFormat     = "amtsim-fleet/1"
	maxFleetFileLen = 256 << 20
)

// Save writes the fleet's device identities (as configured, including the
// simulated secrets: MEBx and admin passwords) to path, mode 0600.
func (f *Fleet) Save(path string) error {
	ff := fleetFile{Format: fleetFormat, Devices: make([]firmware.Config, len(f.members))}
	for i, m := range f.members {
		ff.Devices[i] = m.d.Config()
	}
	b, err := json.MarshalIndent(ff, "", " ")
	if err != nil {
		return fmt.Errorf("save fleet: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".amtsim-fleet-*")
	if err != nil {
		return fmt.Errorf("save fleet to %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save fleet to %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save fleet to %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save fleet to %s: %w", path, err)
	}
	return nil
}

// ReadFleetFile reads the device identities of a saved fleet.
func ReadFleetFile(path string) ([]firmware.Config, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read fleet file: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxFleetFileLen+1))
	if err != nil {
		return nil, fmt.Errorf("read fleet file %s: %w", path, err)
	}
	if len(b) > maxFleetFileLen {
		return nil, fmt.Errorf("read fleet file %s: larger than %d bytes", path, maxFleetFileLen)
	}
	var ff fleetFile
	if err := json.Unmarshal(b, &ff); err != nil {
		return nil, fmt.Errorf("read fleet file %s: %w", path, err)
	}
	if ff.Format != fleetFormat {
		return nil, fmt.Errorf("read fleet file %s: format %q, want %q", path, ff.Format, fleetFormat)
	}
	if ff.Devices == nil {
		ff.Devices = []firmware.Config{}
	}
	return ff.Devices, nil
}

// Load starts the fleet saved at path; opts gives everything but the
// devices (ports, provisioning server, time scale, faults...).
func Load(ctx context.Context, path string, opts Options) (*Fleet, error) {
	cfgs, err := ReadFleetFile(path)
	if err != nil {
		return nil, err
	}
	opts.Configs = cfgs
	return Start(ctx, opts)
}

// ParseFaults reads the --faults flag: comma-separated KIND=SHARE[@DURATION],
// e.g. "slow=0.05,reset=0.01@10m". Without a duration the fault lasts the
// whole run.
func ParseFaults(spec string) ([]FaultSpec, error) {
	var out []FaultSpec
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		kind, rest, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("fault %q: want KIND=SHARE[@DURATION]", item)
		}
		share, dur, hasDur := strings.Cut(rest, "@")
		fs := FaultSpec{Kind: firmware.FaultKind(kind)}
		if !KnownFault(fs.Kind) {
			return nil, fmt.Errorf("fault %q: unknown kind %q", item, kind)
		}
		v, err := strconv.ParseFloat(share, 64)
		if err != nil || v < 0 || v > 1 {
			return nil, fmt.Errorf("fault %q: share %q must be a number from 0 to 1", item, share)
		}
		fs.Share = v
		if hasDur {
			d, err := time.ParseDuration(dur)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("fault %q: duration %q must be positive (e.g. 10m)", item, dur)
			}
			fs.For = d
		}
		out = append(out, fs)
	}
	return out, nil
}
