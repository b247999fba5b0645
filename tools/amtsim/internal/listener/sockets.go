package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/amtprov/amtprov/tools/amtsim/firmware"
	"github.com/amtprov/amtprov/tools/amtsim/internal/probes"
)

// Limits on what a client can make a device hold.
const (
	maxHeaderBytes    = 16 << 10
	maxResetDrain     = 1 << 20
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 60 * time.Second
	idleTimeout       = 30 * time.Second
	maxDatagram       = 256
	sharedUDPBuffer   = 4 << 20
)

// Sockets are bound listeners serving one or many endpoints.
type Sockets struct {
	cfg    Config
	lookup func(netip.Addr) *Endpoint
	shared bool

	httpLn, tlsLn net.Listener
	udp           *ipv4.PacketConn
	httpSrv       *http.Server
	tlsSrv        *http.Server

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// ListenDevice binds ep's three sockets on its own address.
func ListenDevice(ctx context.Context, ep *Endpoint) (*Sockets, error) {
	s, err := bind(ctx, ep.addr, ep.cfg, func(netip.Addr) *Endpoint { return ep }, false)
	if err != nil {
		return nil, fmt.Errorf("listen for device %s at %s: %w", ep.d.Config().UUID, ep.addr, err)
	}
	return s, nil
}

// ListenShared binds one set of sockets for all of eps on the wildcard
// address of the loopback interface (SO_BINDTODEVICE lo: nothing outside
// the host reaches them) and dispatches by destination address. Traffic to
// a loopback address that is no device's is refused like a closed port.
func ListenShared(ctx context.Context, cfg Config, eps []*Endpoint) (*Sockets, error) {
	cfg = cfg.WithDefaults()
	table := make(map[netip.Addr]*Endpoint, len(eps))
	for _, ep := range eps {
		if _, dup := table[ep.addr]; dup {
			return nil, fmt.Errorf("listen shared: two devices at %s", ep.addr)
		}
		table[ep.addr] = ep
	}
	s, err := bind(ctx, netip.IPv4Unspecified(), cfg, func(a netip.Addr) *Endpoint { return table[a.Unmap()] }, true)
	if err != nil {
		return nil, fmt.Errorf("listen shared for %d devices: %w", len(eps), err)
	}
	return s, nil
}

func bind(ctx context.Context, addr netip.Addr, cfg Config, lookup func(netip.Addr) *Endpoint, shared bool) (*Sockets, error) {
	cfg = cfg.WithDefaults()
	s := &Sockets{cfg: cfg, lookup: lookup, shared: shared, done: make(chan struct{})}
	lc := net.ListenConfig{}
	if shared {
		lc.Control = bindToLoopback
	}
	var err error
	if s.httpLn, err = lc.Listen(ctx, "tcp4", netip.AddrPortFrom(addr, uint16(cfg.HTTPPort)).String()); err != nil {
		return nil, fmt.Errorf("http port: %w", err)
	}
	if s.tlsLn, err = lc.Listen(ctx, "tcp4", netip.AddrPortFrom(addr, uint16(cfg.TLSPort)).String()); err != nil {
		s.httpLn.Close()
		return nil, fmt.Errorf("tls port: %w", err)
	}
	pc, err := lc.ListenPacket(ctx, "udp4", netip.AddrPortFrom(addr, uint16(cfg.RMCPPort)).String())
	if err != nil {
		s.httpLn.Close()
		s.tlsLn.Close()
		return nil, fmt.Errorf("rmcp port: %w", err)
	}
	s.udp = ipv4.NewPacketConn(pc)
	if shared {
		// One socket takes every device's pings: a scan sweeping the fleet
		// would overflow the default receive buffer (about 270 datagrams).
		if uc, ok := pc.(*net.UDPConn); ok {
			_ = uc.SetReadBuffer(sharedUDPBuffer)
		}
		if err := s.udp.SetControlMessage(ipv4.FlagDst, true); err != nil {
			s.httpLn.Close()
			s.tlsLn.Close()
			pc.Close()
			return nil, fmt.Errorf("rmcp port: ask for destination addresses: %w", err)
		}
	}
	errLog := slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)
	s.httpSrv = &http.Server{
		Handler: http.HandlerFunc(s.serveHTTP), ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes, ErrorLog: errLog,
		ConnContext: s.connContext,
	}
	s.tlsSrv = &http.Server{
		Handler: http.HandlerFunc(s.serveHTTP), ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes, ErrorLog: errLog,
		ConnContext: s.connContext,
		TLSConfig:   &tls.Config{GetConfigForClient: s.tlsConfig},
		// AMT speaks HTTP/1.1 only; a non-nil empty map keeps h2 out of ALPN.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	return s, nil
}

// Serve starts answering.
func (s *Sockets) Serve() {
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		_ = s.httpSrv.Serve(&gate{Listener: s.httpLn, s: s, kind: probes.HTTP})
	}()
	go func() {
		defer s.wg.Done()
		_ = s.tlsSrv.ServeTLS(&gate{Listener: s.tlsLn, s: s, kind: probes.TLS}, "", "")
	}()
	go func() {
		defer s.wg.Done()
		s.serveRMCP()
	}()
}

// Close stops everything and waits for the serving goroutines.
func (s *Sockets) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		close(s.done)
		errs = append(errs, s.httpSrv.Close(), s.tlsSrv.Close(), s.udp.Close())
		// Listeners never handed to Serve are closed here; closing again
		// after Serve's close is harmless.
		_ = s.httpLn.Close()
		_ = s.tlsLn.Close()
	})
	s.wg.Wait()
	if err := errors.Join(errs...); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close sockets: %w", err)
	}
	return nil
}

func localAddr(c net.Conn) netip.Addr {
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// gate is where a TCP connection meets a device: it is counted as a probe,
// and refused (RST) when the device is unreachable, the port is closed in
// the device's current state, or no device has that address.
type gate struct {
	net.Listener
	s    *Sockets
	kind probes.Kind
}

func (g *gate) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ep := g.s.lookup(localAddr(c))
		if ep != nil {
			ep.Probes.Add(g.kind, time.Now())
			if ep.portOpen(g.kind) {
				ep.d.Counters.SessionOpened()
				return &sessionConn{Conn: c, counters: &ep.d.Counters}, nil
			}
		}
		abort(c)
	}
}

type ctxKey struct{}

func (s *Sockets) connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, ctxKey{}, s.lookup(localAddr(c)))
}

func (s *Sockets) serveHTTP(w http.ResponseWriter, r *http.Request) {
	ep, _ := r.Context().Value(ctxKey{}).(*Endpoint)
	if ep == nil { // the gate let nothing else through
		panic(http.ErrAbortHandler)
	}
	ep.ServeHTTP(w, r)
}

// sessionConn counts one session on its device from accept to close. The
// count drops before the socket is closed, so a client that has seen the
// device's FIN can never find its previous session still counted (counting
// from net/http's ConnState dropped it only after the server's close
// bookkeeping, behind a lock every device on the socket shares: a client
// that waited for the FIN was still seen as a second session under load).
type sessionConn struct {
	net.Conn
	counters *firmware.Counters
	once     sync.Once
}

// endSession drops the count once; abort calls it before a reset too.
func (c *sessionConn) endSession() { c.once.Do(c.counters.SessionClosed) }

func (c *sessionConn) Close() error {
	c.endSession()
	return c.Conn.Close()
}

// NetConn is the accepted TCP connection (abort resets it).
func (c *sessionConn) NetConn() net.Conn { return c.Conn }

func (s *Sockets) tlsConfig(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	ep := s.lookup(localAddr(hello.Conn))
	if ep == nil {
		return nil, errors.New("no device at this address")
	}
	return ep.tlsConfig(s.done)
}

// serveRMCP answers presence pings until the socket closes.
func (s *Sockets) serveRMCP() {
	buf := make([]byte, maxDatagram)
	out := make([]byte, 0, 64)
	for {
		n, cm, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.cfg.Logger.Debug("rmcp read", "err", err)
			continue
		}
		var dst netip.Addr
		var reply *ipv4.ControlMessage
		if s.shared {
			if cm == nil {
				continue
			}
			d, ok := netip.AddrFromSlice(cm.Dst)
			if !ok {
				continue
			}
			dst = d.Unmap()
			reply = &ipv4.ControlMessage{Src: cm.Dst}
		}
		ep := s.lookup(dst)
		if ep == nil {
			continue
		}
		pong, slow, ok := ep.answerPing(buf[:n], out[:0])
		if !ok {
			continue
		}
		if !slow {
			s.sendPong(ep, pong, reply, from)
			continue
		}
		// A slow device must not hold up the others sharing the socket.
		pong = append([]byte(nil), pong...)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ep.pause(s.done)
			s.sendPong(ep, pong, reply, from)
		}()
	}
}

func (s *Sockets) sendPong(ep *Endpoint, pong []byte, reply *ipv4.ControlMessage, to net.Addr) {
	if _, err := s.udp.WriteTo(pong, reply, to); err != nil && !errors.Is(err, net.ErrClosed) {
		s.cfg.Logger.Debug("rmcp write", "addr", ep.addr, "to", to, "err", err)
	}
}
