// Package listener puts simulated devices on the network the way AMT
// firmware is: each on its own address, HTTP on 16992, TLS on 16993 and
// RMCP on UDP 623 (PROTOCOL.md §1). It owns what happens below HTTP: which
// port is open in which state, the setup-mode TLS-PKI client-chain checks
// (§6.1), the RMCP pong (§9.2), per-second probe counts, session counters
// and the network-level faults (unreachable, reset, slow, cert_refused).
// Everything above HTTP is the device's firmware.Device.Handler.
//
// An Endpoint is one device's behaviour. Sockets serve endpoints, in one of
// two layouts that look the same from the network:
//   - ListenDevice binds three sockets on the device's own address;
//   - ListenShared binds three sockets for a whole fleet on the wildcard
//     address, restricted to the loopback interface, and hands each
//     connection or datagram to the endpoint owning its destination address
//     (replies leave from that address). 10,000 devices then need 3 file
//     descriptors instead of 30,000, for hosts whose open-file limit cannot
//     be raised.
package listener

import (
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

// WithDefaults fills in the default ports, delay and logger.
func (c Config) WithDefaults() Config {
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
	return c
}

// Endpoint is one device as the network sees it.
type Endpoint struct {
	d      *firmware.Device
	addr   netip.Addr
	cfg    Config
	major  int
	minor  int
	fw     http.Handler
	Probes probes.Ring
}

// NewEndpoint describes device d at addr.
func NewEndpoint(d *firmware.Device, addr netip.Addr, cfg Config) *Endpoint {
	cfg = cfg.WithDefaults()
	e := &Endpoint{d: d, addr: addr.Unmap(), cfg: cfg, fw: d.Handler()}
	e.major, e.minor = versionNibbles(d.Config().AMTVersion)
	return e
}

// Addr is the device's address.
func (e *Endpoint) Addr() netip.Addr { return e.addr }

// Device is the device behind the endpoint.
func (e *Endpoint) Device() *firmware.Device { return e.d }

// portOpen says whether a port accepts connections now.
//
// 16992 is open unless TLS was committed with AcceptNonSecureConnections
// false (firmware.Device.PlainPortOpen, §7.6). 16993 is open in setup mode
// (for TLS-PKI remote configuration, §6.1) and after provisioning only when
// TLS was committed; firmware before 19 has no TLS listener in
// pre-provisioning (§7.3a), and the fleet's releases are all older.
func (e *Endpoint) portOpen(k probes.Kind) bool {
	if e.d.HasFault(firmware.FaultUnreachable) {
		return false
	}
	if k != probes.TLS {
		return e.d.PlainPortOpen()
	}
	switch e.d.State() {
	case amt.InProvisioning:
		return true
	case amt.PostProvisioning:
		return e.d.TLSEnabled()
	}
	return false
}

// ServeHTTP adds the reset fault in front of the firmware: the request is
// read in full, then the connection is reset without an answer.
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !e.d.HasFault(firmware.FaultReset) {
		e.fw.ServeHTTP(w, r)
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

// tlsConfig picks the TLS behaviour for one handshake from the device's
// state at that moment. done ends a slow-fault pause early.
func (e *Endpoint) tlsConfig(done <-chan struct{}) (*tls.Config, error) {
	if e.d.HasFault(firmware.FaultCertRefused) {
		e.d.RecordTLSRejection("cert_refused: " + ErrCertRefused.Error())
		return nil, ErrCertRefused
	}
	if e.d.HasFault(firmware.FaultSlow) {
		e.pause(done)
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

// pause holds the caller for SlowDelay, or until done.
func (e *Endpoint) pause(done <-chan struct{}) {
	t := time.NewTimer(e.cfg.SlowDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-done:
	}
}

// answerPing handles one datagram: it counts it, and returns the pong to
// send (appended to out), whether to hold it back by SlowDelay first, or
// ok false to stay silent (garbage, or the device is unreachable).
func (e *Endpoint) answerPing(b, out []byte) (pong []byte, slow, ok bool) {
	e.Probes.Add(probes.RMCP, time.Now())
	if e.d.HasFault(firmware.FaultUnreachable) {
		return nil, false, false
	}
	ping, err := rmcp.ParsePing(b)
	if err != nil {
		e.cfg.Logger.Debug("rmcp datagram ignored", "addr", e.addr, "err", err)
		return nil, false, false
	}
	e.d.Counters.RMCPPings.Add(1)
	return rmcp.AppendPong(out, e.Pong(ping)), e.d.HasFault(firmware.FaultSlow), true
}

// Pong is what the device answers to ping now: the port a client should
// use (TLS when committed), whether both are open, the version nibbles and
// the provisioning state.
func (e *Endpoint) Pong(ping rmcp.Ping) rmcp.Pong {
	p := rmcp.Pong{Seq: ping.Seq, Tag: ping.Tag, Port: uint16(e.cfg.HTTPPort), Major: e.major, Minor: e.minor, State: int(e.d.State())}
	httpOpen, tlsOpen := e.portOpen(probes.HTTP), e.portOpen(probes.TLS)
	if tlsOpen && (e.d.State() == amt.PostProvisioning || !httpOpen) {
		p.Port = uint16(e.cfg.TLSPort)
	}
	p.BothPorts = httpOpen && tlsOpen
	return p
}

// abort drops a connection with a TCP RST, the closest a loopback address
// can come to a host that is not there, or to a reset mid-exchange.
func abort(c net.Conn) {
	raw := c
	for {
		if sc, ok := raw.(interface{ endSession() }); ok {
			sc.endSession()
		}
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
