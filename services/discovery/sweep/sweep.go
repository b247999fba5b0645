// Package sweep probes a block of IPv4 addresses for Intel AMT, cheapest
// probe first, and reports what it found. It is the scanning core of
// services/discovery: one call to Sweep covers one shard (a /24 or
// smaller) of a scan; the service around it leases shards, publishes
// events and records progress.
//
// Order of probes (ISSUE 5, PROTOCOL.md §9):
//  1. one RMCP presence ping per address on UDP 623 (one datagram; the
//     pong carries version nibbles, provisioning state and open ports);
//  2. for addresses that answered (or every address with Config.TCPAll):
//     a TCP connect to 16993, then 16992 with an HTTP GET / whose Server
//     banner gives the full firmware version. A setup-mode device's TLS
//     port demands the provisioning chain (§6.1), so on 16993 only a
//     post-provisioning device gets a TLS handshake and a GET /;
//  3. for a post-provisioning device (or one whose state is unknown) an
//     Identifier holds credentials for, an authenticated WS-Man
//     identification (UUID, host name, domain,
//     version, SKU, state, control mode, MAC).
//
// Politeness. Every datagram and every TCP connection takes a token from
// the sweep's limiter and, when set, the process-wide one; one address is
// never touched twice within Config.PerDeviceInterval; at most
// Config.Concurrency addresses are probed over TCP at once; every dial,
// read and identification has a deadline; nothing is retried (a lost pong
// or a refused connection is an answer). Each address gets each probe at
// most once per Sweep.
//
// Hostile input. Pongs and banners go through package probe (typed
// errors, size limits); a banner read ends at probe.MaxHead bytes or
// Config.ReadTimeout, whichever comes first, so a slow-loris device costs
// one slot for ReadTimeout and no more. Only a valid pong or a valid AMT
// banner makes an address "found": an open port alone does not.
package sweep

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/amtprov/amtprov/services/discovery/probe"
)

// Defaults of Config.
const (
	DefaultRMCPPort          = 623
	DefaultHTTPPort          = 16992
	DefaultTLSPort           = 16993
	DefaultRate              = 1000 // packets (datagrams + connections) per second
	DefaultConcurrency       = 256
	DefaultPerDeviceInterval = 500 * time.Millisecond
	DefaultPingWait          = 3 * time.Second // MeshCentral collects pongs for 3 s (PROTOCOL.md §9.2)
	DefaultConnectTimeout    = 2 * time.Second
	DefaultReadTimeout       = 3 * time.Second
	DefaultIdentifyTimeout   = 60 * time.Second // includes waiting for an identification slot
)

// Config tunes one sweep. Zero values take the defaults.
type Config struct {
	RMCPPort, HTTPPort, TLSPort int
	// Rate is this sweep's budget in packets per second (ping datagrams and
	// TCP connections); Burst its bucket size (default Rate/10, at least 1).
	Rate  float64
	Burst int
	// Shared, when set, replaces the Rate/Burst limiter: sweeps of one
	// target running at once share its budget.
	Shared *rate.Limiter
	// Global, when set, is a limiter shared by every sweep of the process;
	// each packet takes a token from it too.
	Global *rate.Limiter
	// PerDeviceInterval is the least time between two probes of one address.
	PerDeviceInterval time.Duration
	// Concurrency bounds addresses probed over TCP at once.
	Concurrency int
	// PingWait is how long pongs are collected after the last ping.
	PingWait time.Duration
	// ConnectTimeout bounds a TCP connect; ReadTimeout a whole banner
	// exchange (TLS handshake, request, response head).
	ConnectTimeout, ReadTimeout time.Duration
	// IdentifyTimeout bounds one device's WS-Man identification.
	IdentifyTimeout time.Duration
	// TCPAll probes every address over TCP, not only those that answered
	// the RMCP ping (for networks that drop UDP 623).
	TCPAll bool
}

func (c *Config) defaults() error {
	setInt := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	setDur := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	setInt(&c.RMCPPort, DefaultRMCPPort)
	setInt(&c.HTTPPort, DefaultHTTPPort)
	setInt(&c.TLSPort, DefaultTLSPort)
	setInt(&c.Concurrency, DefaultConcurrency)
	setDur(&c.PerDeviceInterval, DefaultPerDeviceInterval)
	setDur(&c.PingWait, DefaultPingWait)
	setDur(&c.ConnectTimeout, DefaultConnectTimeout)
	setDur(&c.ReadTimeout, DefaultReadTimeout)
	setDur(&c.IdentifyTimeout, DefaultIdentifyTimeout)
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Burst == 0 {
		c.Burst = max(1, int(c.Rate/10))
	}
	for _, p := range []int{c.RMCPPort, c.HTTPPort, c.TLSPort} {
		if p < 1 || p > 65535 {
			return fmt.Errorf("port %d outside 1-65535", p)
		}
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) || c.Burst < 0 || c.Concurrency < 0 {
		return fmt.Errorf("rate %v, burst %d and concurrency %d must be positive", c.Rate, c.Burst, c.Concurrency)
	}
	if c.PerDeviceInterval < 0 || c.PingWait < 0 || c.ConnectTimeout < 0 || c.ReadTimeout < 0 || c.IdentifyTimeout < 0 {
		return errors.New("intervals and timeouts must not be negative")
	}
	return nil
}

// ErrNoCredentials is what an Identifier returns for an address it holds
// no credentials for; the sweep then reports the device unidentified.
var ErrNoCredentials = errors.New("no credentials for this address")

// Identifier identifies a device over authenticated WS-Man. It is declared
// here, by its user; services/discovery implements it with libs/wsman and
// the credentials it holds.
type Identifier interface {
	Identify(ctx context.Context, addr netip.Addr, seen Found) (Identity, error)
}

// Identity is what WS-Man said about a device.
type Identity struct {
	UUID        string
	Hostname    string
	Domain      string
	AMTVersion  string
	SKU         string
	State       string // pre, in, post
	ControlMode string // none, ccm, acm
	MAC         string
	// Source is whose credentials worked: "amtprov" or "other_console".
	Source string
	// TLSCertSHA256 is the hex SHA-256 of the certificate the device
	// presented (empty over plain HTTP).
	TLSCertSHA256 string
}

// Found is one AMT device the sweep saw.
type Found struct {
	Addr  netip.Addr
	Ports []int // open AMT ports: 623 (ponged), 16992, 16993
	// Pong is the RMCP answer, nil when there was none.
	Pong *probe.Pong
	// Version is the best firmware version known: WS-Man, else the banner,
	// else the pong's major.minor when below 15 (the nibble saturates).
	Version string
	State   string // pre, in, post; empty when unknown
	Method  string // rmcp, http or wsman: the strongest probe that answered
	// Identity is set when WS-Man identification succeeded.
	Identity *Identity
	// IdentifyError says why identification failed (never a secret).
	IdentifyError string
	SeenAt        time.Time
}

// Stats counts what a sweep did.
type Stats struct {
	Addresses    int   // addresses in the block
	Pings        int64 // datagrams sent
	Pongs        int   // valid pongs
	BadPongs     int64 // datagrams that were not valid pongs
	Connects     int64 // TCP connections attempted
	BadBanners   int64 // open ports whose answer was not an AMT banner
	Identified   int
	IdentifyErrs int
}

// Result is one sweep's outcome, devices in address order.
type Result struct {
	Found []Found
	Stats Stats
}

// Addresses lists the addresses of shard a sweep probes: all of them,
// except the network and broadcast addresses of target (the block the
// shard was cut from) when target is shorter than /31.
func Addresses(shard, target netip.Prefix) []netip.Addr {
	shard, target = shard.Masked(), target.Masked()
	if !shard.Addr().Is4() || shard.Bits() < 8 {
		return nil
	}
	var skip [2]netip.Addr
	if target.Bits() < 31 {
		skip[0] = target.Addr()
		skip[1] = lastAddr(target)
	}
	n := 1 << (32 - shard.Bits())
	out := make([]netip.Addr, 0, n)
	a := shard.Addr()
	for range n {
		if a != skip[0] && a != skip[1] {
			out = append(out, a)
		}
		a = a.Next()
	}
	return out
}

// lastAddr is the highest address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= uint32(1)<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Sweep probes addrs (IPv4) and returns the AMT devices among them. id may
// be nil (no identification). It returns early with ctx's error when ctx
// ends; devices found until then are not returned.
func Sweep(ctx context.Context, cfg Config, addrs []netip.Addr, id Identifier) (Result, error) {
	if err := cfg.defaults(); err != nil {
		return Result{}, fmt.Errorf("sweep: %w", err)
	}
	s := &sweeper{cfg: cfg, id: id, lim: cfg.Shared, last: make(map[netip.Addr]time.Time, len(addrs))}
	if s.lim == nil {
		s.lim = rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst)
	}
	res := Result{Stats: Stats{Addresses: len(addrs)}}
	pongs, err := s.ping(ctx, addrs, &res.Stats)
	if err != nil {
		return Result{}, err
	}
	res.Stats.Pongs = len(pongs)
	cands := make([]netip.Addr, 0, len(pongs))
	for _, a := range addrs {
		if _, ok := pongs[a]; ok || cfg.TCPAll {
			cands = append(cands, a)
		}
	}
	found := make([]*Found, len(cands))
	sem := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	for i, a := range cands {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return Result{}, fmt.Errorf("sweep: %w", ctx.Err())
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var p *probe.Pong
			if pp, ok := pongs[a]; ok {
				p = &pp
			}
			found[i] = s.device(ctx, a, p)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("sweep: %w", err)
	}
	res.Stats.Connects = s.connects.Load()
	res.Stats.BadBanners = s.badBanners.Load()
	for _, f := range found {
		if f == nil {
			continue
		}
		if f.Identity != nil {
			res.Stats.Identified++
		} else if f.IdentifyError != "" {
			res.Stats.IdentifyErrs++
		}
		res.Found = append(res.Found, *f)
	}
	return res, nil
}

type sweeper struct {
	cfg        Config
	id         Identifier
	lim        *rate.Limiter
	mu         sync.Mutex
	last       map[netip.Addr]time.Time // when each address was last probed
	connects   atomic.Int64
	badBanners atomic.Int64
}

// take waits for a packet token from the sweep's and the global limiter,
// and until addr may be probed again; it then records the probe.
func (s *sweeper) take(ctx context.Context, addr netip.Addr) error {
	s.mu.Lock()
	next := s.last[addr].Add(s.cfg.PerDeviceInterval)
	s.mu.Unlock()
	if d := time.Until(next); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	if err := wait(ctx, s.lim); err != nil {
		return err
	}
	if s.cfg.Global != nil {
		if err := wait(ctx, s.cfg.Global); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.last[addr] = time.Now()
	s.mu.Unlock()
	return nil
}

// wait takes a token; a limiter that sees ctx's deadline come before the
// token counts as the deadline passing.
func wait(ctx context.Context, l *rate.Limiter) error {
	err := l.Wait(ctx)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w: %v", context.DeadlineExceeded, err)
	}
	return err
}

// ping sends one presence ping to every address and collects the valid
// pongs that come back from the addresses pinged, from the RMCP port,
// with this sweep's tag, until PingWait after the last ping.
func (s *sweeper) ping(ctx context.Context, addrs []netip.Addr, st *Stats) (map[netip.Addr]probe.Pong, error) {
	conn, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return nil, fmt.Errorf("sweep: open UDP socket for RMCP pings: %w", err)
	}
	defer conn.Close()
	tag := byte(time.Now().UnixNano()) | 1
	want := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		want[a] = true
	}
	pongs := make(map[netip.Addr]probe.Pong)
	var mu sync.Mutex
	var bad atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, probe.MaxDatagram)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) || isTimeout(err) {
					return
				}
				continue // e.g. a transient ICMP error: keep listening
			}
			a := from.Addr().Unmap()
			p, perr := probe.ParsePong(buf[:n])
			if perr != nil || !want[a] || int(from.Port()) != s.cfg.RMCPPort || p.Tag != tag {
				bad.Add(1)
				continue
			}
			mu.Lock()
			if _, dup := pongs[a]; !dup {
				pongs[a] = p
			}
			mu.Unlock()
		}
	}()
	msg := probe.AppendPing(nil, tag)
	var sendErr error
	for _, a := range addrs {
		if err := s.take(ctx, a); err != nil {
			sendErr = err
			break
		}
		st.Pings++
		// A send error (no route, buffer full) is an unanswered ping: no retry.
		_, _ = conn.WriteToUDPAddrPort(msg, netip.AddrPortFrom(a, uint16(s.cfg.RMCPPort)))
	}
	if sendErr == nil {
		_ = conn.SetReadDeadline(time.Now().Add(s.cfg.PingWait))
		select {
		case <-done:
		case <-ctx.Done():
			sendErr = ctx.Err()
		}
	}
	conn.Close()
	<-done
	st.BadPongs = bad.Load()
	if sendErr != nil {
		return nil, fmt.Errorf("sweep: RMCP pings: %w", sendErr)
	}
	mu.Lock()
	defer mu.Unlock()
	return pongs, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var stateNames = [...]string{"pre", "in", "post"}

// device runs the TCP probes and identification of one address. It
// returns nil when nothing there is AMT.
func (s *sweeper) device(ctx context.Context, a netip.Addr, p *probe.Pong) *Found {
	f := &Found{Addr: a, Pong: p}
	if p != nil {
		f.Ports = append(f.Ports, s.cfg.RMCPPort)
		f.State = stateNames[p.State]
		f.Method = "rmcp"
		if p.Major < 15 {
			f.Version = strconv.Itoa(p.Major) + "." + strconv.Itoa(p.Minor)
		}
	}
	// 16993: without a pong, or when the pong says it is open.
	tlsOpen := false
	if p == nil || p.BothPorts || int(p.Port) == s.cfg.TLSPort {
		banner := p == nil || p.State == 2 // setup mode would demand our provisioning chain
		open, b := s.tcp(ctx, a, s.cfg.TLSPort, true, banner)
		if open {
			tlsOpen = true
			f.Ports = append(f.Ports, s.cfg.TLSPort)
		}
		if b != nil {
			f.Version, f.Method = b.Version, "http"
		}
	}
	// 16992, with a GET / for the banner unless TLS gave it already.
	if p == nil || p.BothPorts || int(p.Port) == s.cfg.HTTPPort {
		open, b := s.tcp(ctx, a, s.cfg.HTTPPort, false, f.Method != "http")
		if open {
			f.Ports = append(f.Ports, s.cfg.HTTPPort)
		}
		if b != nil {
			f.Version, f.Method = b.Version, "http"
		}
	}
	if f.Method == "" || ctx.Err() != nil {
		return nil // no pong, no banner: not AMT, or not ours to say
	}
	f.SeenAt = time.Now().UTC()
	slices.Sort(f.Ports)
	// Only a provisioned device has admin credentials to try (§2.1: setup
	// mode exposes the discovery surface and nothing else; its TLS port
	// demands the provisioning chain), so setup-mode and factory devices are
	// not offered to the identifier.
	provisioned := f.State == "post" || f.State == ""
	if s.id != nil && provisioned && (tlsOpen || slices.Contains(f.Ports, s.cfg.HTTPPort)) {
		s.identify(ctx, f)
	}
	return f
}

func (s *sweeper) identify(ctx context.Context, f *Found) {
	if err := s.take(ctx, f.Addr); err != nil {
		return
	}
	s.connects.Add(1)
	ictx, cancel := context.WithTimeout(ctx, s.cfg.IdentifyTimeout)
	defer cancel()
	idn, err := s.id.Identify(ictx, f.Addr, *f)
	switch {
	case errors.Is(err, ErrNoCredentials):
	case err != nil:
		f.IdentifyError = err.Error()
	default:
		f.Identity = &idn
		f.Method = "wsman"
		if idn.AMTVersion != "" {
			f.Version = idn.AMTVersion
		}
		if idn.State != "" {
			f.State = idn.State
		}
	}
}

// tcp connects to a:port (TLS when useTLS and a banner is wanted) and,
// when banner, sends GET / and parses the response head. open reports a
// completed TCP handshake; b is the banner when the answer was AMT's.
func (s *sweeper) tcp(ctx context.Context, a netip.Addr, port int, useTLS, banner bool) (open bool, b *probe.Banner) {
	if err := s.take(ctx, a); err != nil {
		return false, nil
	}
	s.connects.Add(1)
	d := net.Dialer{Timeout: s.cfg.ConnectTimeout}
	ap := netip.AddrPortFrom(a, uint16(port)).String()
	conn, err := d.DialContext(ctx, "tcp4", ap)
	if err != nil {
		return false, nil
	}
	defer conn.Close()
	if !banner {
		return true, nil
	}
	deadline := time.Now().Add(s.cfg.ReadTimeout)
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	var rw net.Conn = conn
	if useTLS {
		// Only the public banner travels here: no credentials, so the
		// certificate is not checked, and TLS 1.0 is allowed for
		// pre-12.0 firmware (PROTOCOL.md §1 notes).
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS12}) //nolint:gosec // banner only
		if err := tc.HandshakeContext(ctx); err != nil {
			return true, nil
		}
		rw = tc
	}
	if _, err := fmt.Fprintf(rw, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", ap); err != nil {
		return true, nil
	}
	head, err := readHead(rw)
	if err != nil {
		s.badBanners.Add(1)
		return true, nil
	}
	v, err := probe.ParseHead(head)
	if err != nil {
		s.badBanners.Add(1)
		return true, nil
	}
	return true, &v
}

// readHead reads until the end of a response head, probe.MaxHead bytes, or
// the connection's deadline.
func readHead(r net.Conn) ([]byte, error) {
	buf := make([]byte, 0, 1024)
	chunk := make([]byte, 1024)
	for len(buf) < probe.MaxHead {
		n, err := r.Read(chunk[:min(len(chunk), probe.MaxHead-len(buf))])
		buf = append(buf, chunk[:n]...)
		if probe.HeadComplete(buf) {
			return buf, nil
		}
		if err != nil {
			return buf, fmt.Errorf("read response head: %w", err)
		}
	}
	return buf, nil
}
