package sweep_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/amtprov/amtprov/services/discovery/internal/simfleet"
	"github.com/amtprov/amtprov/services/discovery/probe"
	"github.com/amtprov/amtprov/services/discovery/sweep"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testConfig is fast but keeps every politeness mechanism on.
func testConfig() sweep.Config {
	return sweep.Config{
		RMCPPort: simfleet.RMCPPort, HTTPPort: simfleet.HTTPPort, TLSPort: simfleet.TLSPort,
		Rate: 20000, PerDeviceInterval: 20 * time.Millisecond, PingWait: 500 * time.Millisecond,
		ConnectTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, Concurrency: 64,
	}
}

// fakeIdentifier "identifies" the provisioned devices of a fleet by
// address, and counts calls per address.
type fakeIdentifier struct {
	mu    sync.Mutex
	calls map[netip.Addr]int
	by    map[netip.Addr]firmware.Config
}

func (f *fakeIdentifier) Identify(_ context.Context, a netip.Addr, seen sweep.Found) (sweep.Identity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[a]++
	c, ok := f.by[a]
	if !ok || !c.Provisioned {
		return sweep.Identity{}, sweep.ErrNoCredentials
	}
	return sweep.Identity{UUID: c.UUID, AMTVersion: c.AMTVersion, State: "post", Source: "other_console"}, nil
}

func TestAddresses(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		shard, target string
		n             int
		first, last   string
	}{
		{"10.0.0.0/24", "10.0.0.0/16", 255, "10.0.0.1", "10.0.0.255"},
		{"10.0.255.0/24", "10.0.0.0/16", 255, "10.0.255.0", "10.0.255.254"},
		{"10.0.5.0/24", "10.0.0.0/16", 256, "10.0.5.0", "10.0.5.255"},
		{"10.0.0.0/24", "10.0.0.0/24", 254, "10.0.0.1", "10.0.0.254"},
		{"10.0.0.7/32", "10.0.0.7/32", 1, "10.0.0.7", "10.0.0.7"},
		{"10.0.0.6/31", "10.0.0.6/31", 2, "10.0.0.6", "10.0.0.7"},
	}
	for _, tt := range tests {
		got := sweep.Addresses(p(tt.shard), p(tt.target))
		if len(got) != tt.n || got[0].String() != tt.first || got[len(got)-1].String() != tt.last {
			t.Errorf("Addresses(%s, %s): %d from %v to %v, want %d from %s to %s", tt.shard, tt.target, len(got), got[0], got[len(got)-1], tt.n, tt.first, tt.last)
		}
	}
	if got := sweep.Addresses(netip.MustParsePrefix("::/120"), netip.MustParsePrefix("::/120")); got != nil {
		t.Errorf("IPv6 shard gave %d addresses", len(got))
	}
}

// TestSweepFindsFleetExactly: devices scattered over a /20 are found, each
// with its configured version and state, and nothing else is; only AMT
// devices are offered to the identifier, once each.
func TestSweepFindsFleetExactly(t *testing.T) {
	block := netip.MustParsePrefix("127.15.16.0/20")
	fleet, cfgs := simfleet.Start(t, simfleet.Options{Block: block, N: 60, Seed: 1, ProvisionedEvery: 4})
	by := map[netip.Addr]firmware.Config{}
	for _, c := range cfgs {
		by[netip.MustParseAddr(c.IP)] = c
	}
	id := &fakeIdentifier{calls: map[netip.Addr]int{}, by: by}
	res, err := sweep.Sweep(context.Background(), testConfig(), sweep.Addresses(block, block), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Found) != len(cfgs) {
		t.Fatalf("found %d devices, fleet has %d", len(res.Found), len(cfgs))
	}
	for _, f := range res.Found {
		c, ok := by[f.Addr]
		if !ok {
			t.Errorf("false positive at %v", f.Addr)
			continue
		}
		if f.Version != c.AMTVersion {
			t.Errorf("%v: version %q, want %q", f.Addr, f.Version, c.AMTVersion)
		}
		wantState, wantMethod := "in", "http"
		wantPorts := []int{simfleet.RMCPPort, simfleet.HTTPPort, simfleet.TLSPort}
		if c.Provisioned {
			wantState, wantMethod = "post", "wsman"
			if f.Identity == nil || f.Identity.UUID != c.UUID {
				t.Errorf("%v: identity %+v, want uuid %s", f.Addr, f.Identity, c.UUID)
			}
		}
		if f.State != wantState || f.Method != wantMethod {
			t.Errorf("%v: state %q method %q, want %q %q", f.Addr, f.State, f.Method, wantState, wantMethod)
		}
		if !slices.Equal(f.Ports, wantPorts) {
			t.Errorf("%v: ports %v, want %v", f.Addr, f.Ports, wantPorts)
		}
		if f.Pong == nil || f.SeenAt.IsZero() {
			t.Errorf("%v: pong %v seen %v", f.Addr, f.Pong, f.SeenAt)
		}
	}
	for a, n := range id.calls {
		if _, ok := by[a]; !ok || n != 1 {
			t.Errorf("identifier called %d times for %v (in fleet: %v)", n, a, ok)
		}
	}
	if res.Stats.Pongs != len(cfgs) || res.Stats.Pings != int64(len(sweep.Addresses(block, block))) {
		t.Errorf("stats %+v", res.Stats)
	}
	// Each probe at most once per address: one ping, one connection to
	// each open port (the fake identifier opens none).
	for _, c := range cfgs {
		secs, _ := fleet.Probes(c.UUID)
		var rmcp, http, tls int
		for _, sec := range secs {
			rmcp, http, tls = rmcp+sec.RMCP, http+sec.HTTP, tls+sec.TLS
		}
		if rmcp != 1 || http != 1 || tls != 1 {
			t.Errorf("%s probed rmcp %d, http %d, tls %d times; want once each", c.IP, rmcp, http, tls)
		}
	}
	st := fleet.Stats()
	if st.RMCPPings != int64(len(cfgs)) {
		t.Errorf("simulator counted %d pings for %d devices: each address gets one", st.RMCPPings, len(cfgs))
	}
}

// TestSweepRateLimits: with a per-device interval of 500 ms no device sees
// more than two probes in any second (the simulator's own counters), and
// the sweep's packet rate holds.
func TestSweepRateLimits(t *testing.T) {
	block := netip.MustParsePrefix("127.15.64.0/24")
	fleet, cfgs := simfleet.Start(t, simfleet.Options{Block: block, N: 12, Seed: 2, ProvisionedEvery: 3})
	by := map[netip.Addr]firmware.Config{}
	for _, c := range cfgs {
		by[netip.MustParseAddr(c.IP)] = c
	}
	cfg := testConfig()
	cfg.PerDeviceInterval = 500 * time.Millisecond
	cfg.Rate, cfg.Burst = 400, 10
	start := time.Now()
	res, err := sweep.Sweep(context.Background(), cfg, sweep.Addresses(block, block), &fakeIdentifier{calls: map[netip.Addr]int{}, by: by})
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if len(res.Found) != len(cfgs) {
		t.Fatalf("found %d of %d", len(res.Found), len(cfgs))
	}
	packets := float64(res.Stats.Pings + res.Stats.Connects)
	if min := time.Duration((packets - float64(cfg.Burst)) / cfg.Rate * float64(time.Second)); elapsed < min {
		t.Errorf("%v packets in %v: faster than %v/s allows (%v)", packets, elapsed, cfg.Rate, min)
	}
	for _, c := range cfgs {
		n, ok := fleet.MaxProbesPerSecond(c.UUID)
		if !ok || n > 2 || n < 1 {
			t.Errorf("device %s saw %d probes in its busiest second, bound 2", c.IP, n)
		}
	}
}

// hostile runs misbehaving "devices" on the sweep's ports.
type hostile struct {
	t   *testing.T
	wg  sync.WaitGroup
	lns []net.Listener
	pcs []net.PacketConn
}

func (h *hostile) close() {
	for _, l := range h.lns {
		l.Close()
	}
	for _, p := range h.pcs {
		p.Close()
	}
	h.wg.Wait()
}

// tcp answers every connection to a:port with serve.
func (h *hostile) tcp(a string, port int, serve func(net.Conn)) {
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(netip.MustParseAddr(a), uint16(port)).String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.lns = append(h.lns, ln)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				serve(c)
			}()
		}
	}()
}

// udp answers every datagram on a:RMCP port with reply(ping).
func (h *hostile) udp(a string, reply func(ping []byte) [][]byte) {
	pc, err := net.ListenPacket("udp4", netip.AddrPortFrom(netip.MustParseAddr(a), simfleet.RMCPPort).String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.pcs = append(h.pcs, pc)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			for _, r := range reply(append([]byte(nil), buf[:n]...)) {
				_, _ = pc.WriteTo(r, from)
			}
		}
	}()
}

// validPong answers ping as an AMT 16.1 device in setup mode would (§9.2).
func validPong(ping []byte, port uint16) []byte {
	b := []byte{0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x40, ping[9], 0x00, 0x10, 0, 0, 0x01, 0x57, 0, 0, 0xF1, 0x05, 0x01, 0x20, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(b[16:18], port)
	return b
}

func drain(c net.Conn) {
	buf := make([]byte, 512)
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, _ = c.Read(buf)
}

// TestSweepSurvivesHostileDevices: garbage banners, huge headers,
// slow-loris answers, malformed and spoofed pongs neither crash nor stall
// a sweep and give no false positive; a real device among them is found.
func TestSweepSurvivesHostileDevices(t *testing.T) {
	block := netip.MustParsePrefix("127.15.128.0/24")
	_, cfgs := simfleet.Start(t, simfleet.Options{Block: netip.MustParsePrefix("127.15.128.0/28"), N: 1, Seed: 3})
	h := &hostile{t: t}
	defer h.close()
	// TCP-only hostiles (found only with TCPAll).
	h.tcp("127.15.128.100", simfleet.HTTPPort, func(c net.Conn) { drain(c); _, _ = c.Write([]byte("\x00\xff\xfe garbage \x01\r\n\r\n")) })
	h.tcp("127.15.128.101", simfleet.HTTPPort, func(c net.Conn) {
		drain(c)
		_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("A", 1<<20) + "\r\n\r\n"))
	})
	h.tcp("127.15.128.102", simfleet.HTTPPort, func(c net.Conn) { // slow loris: a byte every 100 ms, forever
		drain(c)
		for _, ch := range []byte("HTTP/1.1 303 See Other\r\nServer: Intel(R) Active Management Technology 16.1.25.2124" + strings.Repeat(" ", 200)) {
			if _, err := c.Write([]byte{ch}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond) // the hostile device's pacing, not a wait for a condition
		}
	})
	h.tcp("127.15.128.103", simfleet.HTTPPort, func(c net.Conn) {
		drain(c)
		_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nServer: Intel(R) Active Management Technology 99\r\n\r\n"))
	})
	h.tcp("127.15.128.104", simfleet.TLSPort, func(c net.Conn) { _, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n")); drain(c) })
	h.tcp("127.15.128.105", simfleet.HTTPPort, func(net.Conn) {}) // accepts and hangs up
	// UDP hostiles.
	h.udp("127.15.128.110", func(p []byte) [][]byte { return [][]byte{[]byte("garbage"), make([]byte, 28), make([]byte, 1500)} })
	h.udp("127.15.128.111", func(p []byte) [][]byte { b := validPong(p, simfleet.HTTPPort); b[9] ^= 0xff; return [][]byte{b} }) // wrong tag
	h.udp("127.15.128.112", func(p []byte) [][]byte { b := validPong(p, simfleet.HTTPPort); b[21] = 0; return [][]byte{b} })    // not AMT
	h.udp("127.15.128.113", func(p []byte) [][]byte {                                                                           // pong flood
		out := make([][]byte, 50)
		for i := range out {
			out[i] = validPong(p, simfleet.HTTPPort)
		}
		return out
	})
	// A pong that claims AMT, then a slow-loris banner: found by RMCP only.
	h.tcp("127.15.128.113", simfleet.HTTPPort, func(c net.Conn) {
		drain(c)
		for range 100 {
			if _, err := c.Write([]byte("X")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	cfg := testConfig()
	cfg.TCPAll = true
	cfg.Concurrency = 256
	start := time.Now()
	res, err := sweep.Sweep(context.Background(), cfg, sweep.Addresses(block, block), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("sweep took %v: hostile devices stalled it (read timeout %v)", d, cfg.ReadTimeout)
	}
	got := map[string]sweep.Found{}
	for _, f := range res.Found {
		got[f.Addr.String()] = f
	}
	if len(got) != 2 {
		t.Errorf("found %v, want the simulated device and the pong-only .113", got)
	}
	if f, ok := got[cfgs[0].IP]; !ok || f.Version != cfgs[0].AMTVersion {
		t.Errorf("real device %s: %+v", cfgs[0].IP, f)
	}
	if f, ok := got["127.15.128.113"]; !ok || f.Method != "rmcp" || f.Version != "" || f.State != "post" && f.State != "in" {
		t.Errorf("pong-only device: %+v", f)
	}
	if res.Stats.BadPongs < 4 || res.Stats.BadBanners < 4 {
		t.Errorf("stats %+v: hostile answers not counted", res.Stats)
	}
}

func TestSweepStopsWithContext(t *testing.T) {
	block := netip.MustParsePrefix("127.15.200.0/24")
	cfg := testConfig()
	cfg.Rate, cfg.Burst = 20, 1 // 254 pings would take 12 s
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := sweep.Sweep(ctx, cfg, sweep.Addresses(block, block), nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("returned after %v", d)
	}
}

func TestSweepRejectsBadConfig(t *testing.T) {
	for _, c := range []sweep.Config{{Rate: -1}, {HTTPPort: 70000}, {ReadTimeout: -1}} {
		if _, err := sweep.Sweep(context.Background(), c, nil, nil); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

var _ = probe.MaxHead

// TestSweepGlobalLimiterBinds: the process-wide limiter holds even when
// the sweep's own budget is far higher.
func TestSweepGlobalLimiterBinds(t *testing.T) {
	block := netip.MustParsePrefix("127.15.201.0/24")
	cfg := testConfig()
	cfg.Rate = 1e6
	cfg.Global = newLimiter(500) // burst 50
	cfg.PingWait = 100 * time.Millisecond
	start := time.Now()
	res, err := sweep.Sweep(context.Background(), cfg, sweep.Addresses(block, block), nil)
	if err != nil {
		t.Fatal(err)
	}
	if min := time.Duration(float64(res.Stats.Pings-50) / 500 * float64(time.Second)); time.Since(start) < min {
		t.Errorf("%d pings in %v: the global limit of 500/s allows no less than %v", res.Stats.Pings, time.Since(start), min)
	}
}
