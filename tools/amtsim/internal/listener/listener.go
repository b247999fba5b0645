// Package listener puts one simulated device on the network the way AMT
// firmware is: its own address, HTTP on 16992, TLS on 16993 and RMCP on UDP
// 623 (PROTOCOL.md §1). It owns what happens below HTTP: which port is
// open in which state, the setup-mode TLS-PKI client-chain checks (§6.1),
// the RMCP pong (§9.2), per-second probe counts, session counters and the
// network-level faults (unreachable, reset, slow, cert_refused). Everything
// above HTTP is the device's firmware.Device.Handler.
package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
	"github.com/amtprov/amtprov/tools/amtsim/internal/pkicheck"
	"github.com/amtprov/amtprov/tools/amtsim/internal/probes"
	"github.com/amtprov/amtprov/tools/amtsim/internal/rmcp"
)

// Default ports (PROTOCOL.md §1).
const (
	DefaultHTTPPort = 16992
	DefaultTLSPort  = 16993
	DefaultRMCPPort = 623
)

// Limits on what a client can make a device hold.
const (
	maxHeaderBytes    = 16 << 10
	maxResetDrain     = 1 << 20
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 60 * time.Second
	idleTimeout       = 30 * time.Second
)

// ErrCertRefused is the handshake error under the cert_refused fault.
var ErrCertRefused = errors.New("provisioning certificate refused (injected fault)")

// Config is shared by every device of a fleet.
type Config struct {
	HTTPPort, TLSPort, RMCPPort int
	// SlowDelay is how long the slow fault holds a TLS handshake and an RMCP
	// pong. Default 2 s. (The firmware adds its own per-call delay.)
	SlowDelay time.Duration
	Logger    *slog.Logger
}

func (c *Config) defaults() {
	if c.HTTPPort == 0 {
		c.HTTPPort = DefaultHTTPPort
	}
	if c.TLSPort == 0 {
		c.TLSPort = DefaultTLSPort
	}
	if c.RMCPPort == 0 {
		c.RMCPPort = DefaultRMCPPort
	}
	if c.SlowDelay == 0 {
		c.SlowDelay = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Endpoint is one device's sockets.
type Endpoint struct {
	d      *firmware.Device
	addr   netip.Addr
	cfg    Config
	major  int
	minor  int
	Probes probes.Ring

	httpLn, tlsLn net.Listener
	udp           *net.UDPConn
	httpSrv       *http.Server
	tlsSrv        *http.Server

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// Open binds the device's three sockets on addr. Nothing is served until
// Serve.
func Open(ctx context.Context, d *firmware.Device, addr netip.Addr, cfg Config) (*Endpoint, error) {
	cfg.defaults()
	e := &Endpoint{d: d, addr: addr, cfg: cfg, done: make(chan struct{})}
	e.major, e.minor = versionNibbles(d.Config().AMTVersion)
	var lc net.ListenConfig
	var err error
	if e.httpLn, err = lc.Listen(ctx, "tcp", netip.AddrPortFrom(addr, uint16(cfg.HTTPPort)).String()); err != nil {
		return nil, fmt.Errorf("listen http for %s: %w", d.Config().UUID, err)
	}
	if e.tlsLn, err = lc.Listen(ctx, "tcp", netip.AddrPortFrom(addr, uint16(cfg.TLSPort)).String()); err != nil {
		e.httpLn.Close()
		return nil, fmt.Errorf("listen tls for %s: %w", d.Config().UUID, err)
	}
	pc, err := lc.ListenPacket(ctx, "udp", netip.AddrPortFrom(addr, uint16(cfg.RMCPPort)).String())
	if err != nil {
		e.httpLn.Close()
		e.tlsLn.Close()
		return nil, fmt.Errorf("listen rmcp for %s: %w", d.Config().UUID, err)
	}
	e.udp = pc.(*net.UDPConn)
	errLog := slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)
	h := e.handler()
	e.httpSrv = &http.Server{
		Handler: h, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout, IdleTimeout: idleTimeout,
		MaxHeaderBytes: maxHeaderBytes, ConnState: e.connState, ErrorLog: errLog,
	}
	e.tlsSrv = &http.Server{
		Handler: h, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout, IdleTimeout: idleTimeout,
		MaxHeaderBytes: maxHeaderBytes, ConnState: e.connState, ErrorLog: errLog,
		TLSConfig: &tls.Config{GetConfigForClient: e.configForClient},
		// AMT speaks HTTP/1.1 only; a non-nil empty map keeps h2 out of ALPN.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	return e, nil
}

// Addr is the device's address.
func (e *Endpoint) Addr() netip.Addr { return e.addr }

// Serve starts answering on all three sockets.
func (e *Endpoint) Serve() {
	e.wg.Add(3)
	go func() {
		defer e.wg.Done()
		_ = e.httpSrv.Serve(&gate{Listener: e.httpLn, e: e, kind: probes.HTTP})
	}()
	go func() {
		defer e.wg.Done()
		_ = e.tlsSrv.ServeTLS(&gate{Listener: e.tlsLn, e: e, kind: probes.TLS}, "", "")
	}()
	go func() {
		defer e.wg.Done()
		e.serveRMCP()
	}()
}

// Close stops everything and waits for the serving goroutines.
func (e *Endpoint) Close() error {
	var errs []error
	e.closeOnce.Do(func() {
		close(e.done)
		errs = append(errs, e.httpSrv.Close(), e.tlsSrv.Close(), e.udp.Close())
		// Listeners never handed to Serve are closed here; a second close
		// after Serve's is harmless.
		_ = e.httpLn.Close()
		_ = e.tlsLn.Close()
	})
	e.wg.Wait()
	if err := errors.Join(errs...); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close device %s: %w", e.d.Config().UUID, err)
	}
	return nil
}

// gate is where a TCP connection meets the device: it is counted as a
// probe, and refused (RST) when the device is unreachable or the port is
// closed in the device's current state.
type gate struct {
	net.Listener
	e    *Endpoint
	kind probes.Kind
}

func (g *gate) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		g.e.Probes.Add(g.kind, time.Now())
		if g.e.portOpen(g.kind) {
			return c, nil
		}
		abort(c)
	}
}

// portOpen says whether the port accepts connections now.
//
// 16992 is always open; what it answers is the firmware's business. 16993
// is open in setup mode (for TLS-PKI remote configuration, §6.1) and after
// provisioning only when TLS was committed; firmware before 19 has no TLS
// listener in pre-provisioning (§7.3a), and the fleet's releases are all
// older.
func (e *Endpoint) portOpen(k probes.Kind) bool {
	if e.d.HasFault(firmware.FaultUnreachable) {
		return false
	}
	if k != probes.TLS {
		return true
	}
	switch e.d.State() {
	case amt.InProvisioning:
		return true
	case amt.PostProvisioning:
		return e.d.TLSEnabled()
	}
	return false
}

// abort drops a connection with a TCP RST, the closest a loopback address
// can come to a host that is not there, or to a reset mid-exchange.
func abort(c net.Conn) {
	raw := c
	for {
		u, ok := raw.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		raw = u.NetConn()
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = raw.Close()
}

func (e *Endpoint) connState(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		e.d.Counters.SessionOpened()
	case http.StateClosed, http.StateHijacked:
		e.d.Counters.SessionClosed()
	}
}

// handler adds the reset fault in front of the firmware: the request is
// read in full, then the connection is reset without an answer.
func (e *Endpoint) handler() http.Handler {
	fw := e.d.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !e.d.HasFault(firmware.FaultReset) {
			fw.ServeHTTP(w, r)
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxResetDrain))
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				abort(c)
				return
			}
		}
		panic(http.ErrAbortHandler) // closes the connection without a response
	})
}

// cipherSuites are the TLS 1.0-1.2 suites offered: ECDHE first, then the
// RSA key-exchange suites old AMT clients and go-wsman's
// AllowInsecureCipherSuites use (PROTOCOL.md §1 notes).
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA,
}

// configForClient picks the TLS behaviour for one handshake from the
// device's state at that moment.
func (e *Endpoint) configForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	if e.d.HasFault(firmware.FaultCertRefused) {
		e.d.RecordTLSRejection("cert_refused: " + ErrCertRefused.Error())
		return nil, ErrCertRefused
	}
	if e.d.HasFault(firmware.FaultSlow) {
		e.pause()
	}
	cert := e.d.ServerCertificate()
	if cert == nil {
		return nil, fmt.Errorf("device %s has no TLS certificate", e.d.Config().UUID)
	}
	// AMT 12.0 added TLS 1.2 and removed TLS 1.0; no release in the fleet
	// speaks TLS 1.3 (PROTOCOL.md §1 notes). Capping at 1.2 also makes a
	// refused client chain fail the client's own handshake, as with firmware.
	cfg := &tls.Config{
		Certificates: []tls.Certificate{*cert},
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   tls.VersionTLS12,
		CipherSuites: cipherSuites,
		NextProtos:   []string{"http/1.1"},
	}
	if e.major < 12 {
		cfg.MinVersion = tls.VersionTLS10
	}
	if e.d.State() == amt.InProvisioning {
		// Setup mode: demand the provisioning server's chain and judge it
		// by the §6.1 rules; Go's own verification stays off (no ClientCAs).
		cfg.ClientAuth = tls.RequestClientCert
		cfg.VerifyConnection = e.verifySetupChain
	}
	return cfg, nil
}

func (e *Endpoint) verifySetupChain(cs tls.ConnectionState) error {
	c := e.d.Config()
	p := pkicheck.Policy{TrustedRoots: e.d.TrustedRoots(), DNSSuffix: c.DNSSuffix}
	if err := p.Verify(cs.PeerCertificates); err != nil {
		e.d.RecordTLSRejection(err.Error())
		e.cfg.Logger.Debug("setup-mode client chain refused", "uuid", c.UUID, "err", err)
		return err
	}
	return nil
}

// pause holds the caller for SlowDelay, or until the endpoint closes.
func (e *Endpoint) pause() {
	t := time.NewTimer(e.cfg.SlowDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-e.done:
	}
}

// serveRMCP answers presence pings until the socket closes.
func (e *Endpoint) serveRMCP() {
	buf := make([]byte, 256)
	out := make([]byte, 0, rmcp.PongSize)
	for {
		n, from, err := e.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			e.cfg.Logger.Debug("rmcp read", "addr", e.addr, "err", err)
			continue
		}
		e.Probes.Add(probes.RMCP, time.Now())
		if e.d.HasFault(firmware.FaultUnreachable) {
			continue
		}
		ping, err := rmcp.ParsePing(buf[:n])
		if err != nil {
			e.cfg.Logger.Debug("rmcp datagram ignored", "addr", e.addr, "from", from, "err", err)
			continue
		}
		e.d.Counters.RMCPPings.Add(1)
		if e.d.HasFault(firmware.FaultSlow) {
			e.pause()
		}
		out = rmcp.AppendPong(out[:0], e.Pong(ping))
		if _, err := e.udp.WriteToUDPAddrPort(out, from); err != nil && !errors.Is(err, net.ErrClosed) {
			e.cfg.Logger.Debug("rmcp write", "addr", e.addr, "to", from, "err", err)
		}
	}
}

// Pong is what the device answers to ping now: the port a client should
// use (TLS when committed), whether both are open, the version nibbles and
// the provisioning state.
func (e *Endpoint) Pong(ping rmcp.Ping) rmcp.Pong {
	p := rmcp.Pong{Seq: ping.Seq, Tag: ping.Tag, Port: uint16(e.cfg.HTTPPort), Major: e.major, Minor: e.minor, State: int(e.d.State())}
	httpOpen, tlsOpen := e.portOpen(probes.HTTP), e.portOpen(probes.TLS)
	if tlsOpen && e.d.State() == amt.PostProvisioning {
		p.Port = uint16(e.cfg.TLSPort)
	}
	p.BothPorts = httpOpen && tlsOpen
	return p
}

// versionNibbles reads major and minor from "16.1.25.2124".
func versionNibbles(v string) (int, int) {
	parts := strings.SplitN(v, ".", 3)
	major, _ := strconv.Atoi(parts[0])
	minor := 0
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(parts[1])
	}
	return major, minor
}
