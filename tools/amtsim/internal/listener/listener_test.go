package listener_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
	"github.com/amtprov/amtprov/tools/amtsim/internal/fleetgen"
	"github.com/amtprov/amtprov/tools/amtsim/internal/keypool"
	"github.com/amtprov/amtprov/tools/amtsim/internal/listener"
	"github.com/amtprov/amtprov/tools/amtsim/internal/probes"
	"github.com/amtprov/amtprov/tools/amtsim/internal/rmcp"
	"github.com/amtprov/amtprov/tools/amtsim/internal/testpki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// layouts are the two socket layouts; every behaviour test runs on both.
var layouts = []struct {
	name   string
	shared bool
	cfg    listener.Config
}{
	{"per-device", false, listener.Config{HTTPPort: 26992, TLSPort: 26993, RMCPPort: 26623, SlowDelay: 500 * time.Millisecond}},
	{"shared", true, listener.Config{HTTPPort: 27992, TLSPort: 27993, RMCPPort: 27623, SlowDelay: 500 * time.Millisecond}},
}

// nextHost hands each test device its own loopback address.
var nextHost atomic.Uint32

type rig struct {
	d     *firmware.Device
	e     *listener.Endpoint
	ca    *testpki.CA
	addr  netip.Addr
	ports listener.Config
}

// newRigs starts one device per entry of provisioned, on its own sockets
// or sharing one set, as the layout says.
func newRigs(t *testing.T, shared bool, ports listener.Config, provisioned ...bool) []*rig {
	t.Helper()
	ca := testpki.NewRoot(t, "amtsim test provisioning root")
	var rigs []*rig
	var eps []*listener.Endpoint
	for _, prov := range provisioned {
		n := nextHost.Add(1)
		addr := netip.AddrFrom4([4]byte{127, 20, byte(n >> 8), byte(n)})
		o := fleetgen.Options{
			Count: 1, Seed: int64(n), Base: addr, Range: netip.MustParsePrefix("127.20.0.0/16"),
			DNSSuffix: "corp.example.com", TrustHashes: []amt.RootHash{ca.Hash(amt.HashSHA256)},
		}
		if prov {
			o.ProvisionedShare, o.AdminPassword = 1, "P@ssw0rd!"
		}
		cfgs, err := fleetgen.Generate(o)
		if err != nil {
			t.Fatal(err)
		}
		d, err := firmware.NewDevice(cfgs[0], firmware.Realism{}, keypool.New(1))
		if err != nil {
			t.Fatal(err)
		}
		e := listener.NewEndpoint(d, addr, ports)
		eps = append(eps, e)
		rigs = append(rigs, &rig{d: d, e: e, ca: ca, addr: addr, ports: ports})
	}
	var socks []*listener.Sockets
	if shared {
		s, err := listener.ListenShared(context.Background(), ports, eps)
		if err != nil {
			t.Fatal(err)
		}
		socks = append(socks, s)
	} else {
		for _, e := range eps {
			s, err := listener.ListenDevice(context.Background(), e)
			if err != nil {
				t.Fatal(err)
			}
			socks = append(socks, s)
		}
	}
	for _, s := range socks {
		s.Serve()
	}
	t.Cleanup(func() {
		for _, s := range socks {
			if err := s.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}
	})
	return rigs
}

// eachLayout runs f once per socket layout with one rig per entry of provisioned.
func eachLayout(t *testing.T, f func(t *testing.T, rigs []*rig), provisioned ...bool) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) { f(t, newRigs(t, l.shared, l.cfg, provisioned...)) })
	}
}

func (r *rig) hostport(port int) string { return netip.AddrPortFrom(r.addr, uint16(port)).String() }

// handshake connects to 16993 presenting chain (nil: no client certificate)
// and, if the handshake succeeds, sends GET / and returns the status.
func (r *rig) handshake(t *testing.T, chain *tls.Certificate) (int, error) {
	t.Helper()
	cfg := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}
	if chain != nil {
		cfg.Certificates = []tls.Certificate{*chain}
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(&d, "tcp", r.hostport(r.ports.TLSPort), cfg)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", r.addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestSetupModeTLSChainRules(t *testing.T) { eachLayout(t, testSetupModeTLSChainRules, false) }

func testSetupModeTLSChainRules(t *testing.T, rigs []*rig) {
	r := rigs[0]
	stranger := testpki.NewRoot(t, "not trusted by the device")

	noMark := testpki.Good("prov.example.com")
	noMark.OU, noMark.IntelOID = "", false
	noServerAuth := testpki.Good("prov.example.com")
	noServerAuth.NoServerAuth = true
	forged := testpki.Good("prov.example.com")
	forged.SignedBy = stranger
	expired := testpki.Good("prov.example.com")
	expired.Expired = true

	tests := []struct {
		name string
		ca   *testpki.CA
		leaf *testpki.Leaf
		rule string // "" = accepted
	}{
		{name: "no client certificate", rule: "no_client_cert"},
		{name: "leaf without OID or OU", ca: r.ca, leaf: &noMark, rule: "not_setup_cert"},
		{name: "leaf without serverAuth", ca: r.ca, leaf: &noServerAuth, rule: "no_server_auth"},
		{name: "root not trusted", ca: stranger, leaf: ptr(testpki.Good("prov.example.com")), rule: "untrusted_root"},
		{name: "chain signature broken", ca: r.ca, leaf: &forged, rule: "broken_chain"},
		{name: "expired leaf", ca: r.ca, leaf: &expired, rule: "expired"},
		{name: "domain of another network", ca: r.ca, leaf: ptr(testpki.Good("prov.example.org")), rule: "domain_mismatch"},
		{name: "good chain", ca: r.ca, leaf: ptr(testpki.Good("prov.example.com"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var chain *tls.Certificate
			if tt.leaf != nil {
				c := tt.ca.Issue(t, *tt.leaf)
				chain = &c
			}
			before := len(r.d.TLSRejections())
			status, err := r.handshake(t, chain)
			rej := r.d.TLSRejections()
			if tt.rule == "" {
				if err != nil {
					t.Fatalf("good chain refused: %v (rejections %q)", err, rej[before:])
				}
				if status != http.StatusSeeOther {
					t.Fatalf("GET / over setup-mode TLS: status %d, want 303", status)
				}
				if len(rej) != before {
					t.Fatalf("accepted chain recorded a rejection: %q", rej[before:])
				}
				return
			}
			if err == nil {
				t.Fatalf("handshake succeeded (status %d), want refusal for %s", status, tt.rule)
			}
			if len(rej) != before+1 || !strings.HasPrefix(rej[len(rej)-1], tt.rule+":") {
				t.Fatalf("recorded rejections %q, want one starting %q", rej[before:], tt.rule)
			}
		})
	}
	if n := r.d.Counters.TLSRejections.Load(); n != int64(len(tests)-1) {
		t.Fatalf("TLSRejections counter = %d, want %d", n, len(tests)-1)
	}
}

func ptr[T any](v T) *T { return &v }

func TestCertRefusedFault(t *testing.T) { eachLayout(t, testCertRefusedFault, false) }

func testCertRefusedFault(t *testing.T, rigs []*rig) {
	r := rigs[0]
	good := r.ca.Issue(t, testpki.Good("prov.example.com"))
	r.d.InjectFault(firmware.FaultCertRefused, time.Now().Add(time.Minute))
	if _, err := r.handshake(t, &good); err == nil {
		t.Fatal("handshake succeeded under cert_refused")
	}
	rej := r.d.TLSRejections()
	if len(rej) != 1 || !strings.HasPrefix(rej[0], "cert_refused:") {
		t.Fatalf("rejections %q", rej)
	}
	r.d.InjectFault(firmware.FaultCertRefused, time.Now()) // lift it
	if _, err := r.handshake(t, &good); err != nil {
		t.Fatalf("after the fault: %v", err)
	}
}

func TestProvisionedDeviceTLSWithoutClientChain(t *testing.T) {
	eachLayout(t, testProvisionedDeviceTLSWithoutClientChain, true)
}

func testProvisionedDeviceTLSWithoutClientChain(t *testing.T, rigs []*rig) {
	r := rigs[0]
	if r.d.State() != amt.PostProvisioning || !r.d.TLSEnabled() {
		t.Fatalf("rig device state %v tls %v", r.d.State(), r.d.TLSEnabled())
	}
	status, err := r.handshake(t, nil)
	if err != nil {
		t.Fatalf("post-provisioning TLS handshake: %v", err)
	}
	if status != http.StatusSeeOther {
		t.Fatalf("GET / status %d", status)
	}
	if rej := r.d.TLSRejections(); len(rej) != 0 {
		t.Fatalf("rejections recorded: %q", rej)
	}
}

func ping(t *testing.T, addr string, tag byte, wait time.Duration) (rmcp.Pong, error) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(rmcp.AppendPing(nil, rmcp.Ping{Tag: tag})); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return rmcp.Pong{}, err
	}
	return rmcp.ParsePong(buf[:n])
}

func TestRMCPRoundTrip(t *testing.T) { eachLayout(t, testRMCPRoundTrip, false, true) }

func testRMCPRoundTrip(t *testing.T, rigs []*rig) {
	setup, prov := rigs[0], rigs[1]
	ports := setup.ports
	tests := []struct {
		r    *rig
		want rmcp.Pong
	}{
		{setup, rmcp.Pong{Tag: 7, Port: uint16(ports.HTTPPort), BothPorts: true, State: 1}},
		{prov, rmcp.Pong{Tag: 7, Port: uint16(ports.TLSPort), BothPorts: true, State: 2}},
	}
	for _, tt := range tests {
		got, err := ping(t, tt.r.hostport(ports.RMCPPort), 7, 5*time.Second)
		if err != nil {
			t.Fatalf("ping %v: %v", tt.r.addr, err)
		}
		var major, minor int
		fmt.Sscanf(tt.r.d.Config().AMTVersion, "%d.%d", &major, &minor)
		tt.want.Major, tt.want.Minor = min(major, 15), minor
		if got != tt.want {
			t.Fatalf("pong from %v = %+v, want %+v", tt.r.addr, got, tt.want)
		}
	}
	if n := setup.d.Counters.RMCPPings.Load(); n != 1 {
		t.Fatalf("RMCPPings = %d", n)
	}
	if m := setup.e.Probes.Max(time.Now(), probes.RMCP); m != 1 {
		t.Fatalf("probe ring max = %d", m)
	}
	// Garbage gets no answer.
	c, err := net.Dial("udp", setup.hostport(ports.RMCPPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 64)); err == nil {
		t.Fatalf("answered garbage with %d bytes", n)
	}
}

func TestUnreachableFault(t *testing.T) { eachLayout(t, testUnreachableFault, false) }

func testUnreachableFault(t *testing.T, rigs []*rig) {
	r := rigs[0]
	ports := r.ports
	r.d.InjectFault(firmware.FaultUnreachable, time.Now().Add(time.Minute))
	if _, err := ping(t, r.hostport(ports.RMCPPort), 1, 200*time.Millisecond); err == nil {
		t.Fatal("unreachable device answered a ping")
	}
	resp, err := http.Get("http://" + r.hostport(ports.HTTPPort) + "/")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("unreachable device answered HTTP %d", resp.StatusCode)
	}
	var rmcpN, httpN int
	for _, sec := range r.e.Probes.Seconds(time.Now()) {
		rmcpN += sec.RMCP
		httpN += sec.HTTP
	}
	if rmcpN != 1 || httpN != 1 {
		t.Fatalf("probes counted rmcp %d http %d, want 1 and 1", rmcpN, httpN)
	}
	r.d.InjectFault(firmware.FaultUnreachable, time.Now())
	if _, err := ping(t, r.hostport(ports.RMCPPort), 1, 5*time.Second); err != nil {
		t.Fatalf("after the fault: %v", err)
	}
}

func TestResetFault(t *testing.T) { eachLayout(t, testResetFault, false) }

func testResetFault(t *testing.T, rigs []*rig) {
	r := rigs[0]
	ports := r.ports
	r.d.InjectFault(firmware.FaultReset, time.Now().Add(time.Minute))
	resp, err := http.Post("http://"+r.hostport(ports.HTTPPort)+"/wsman", "application/soap+xml", strings.NewReader("<Envelope/>"))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("reset fault answered %d", resp.StatusCode)
	}
	var ne net.Error
	if !errors.As(err, &ne) && !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "EOF") {
		t.Fatalf("unexpected error kind: %v", err)
	}
}

func TestSlowFaultDelaysPong(t *testing.T) { eachLayout(t, testSlowFaultDelaysPong, false, false) }

func testSlowFaultDelaysPong(t *testing.T, rigs []*rig) {
	r, other := rigs[0], rigs[1]
	ports := r.ports
	r.d.InjectFault(firmware.FaultSlow, time.Now().Add(time.Minute))
	start := time.Now()
	if _, err := ping(t, r.hostport(ports.RMCPPort), 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < ports.SlowDelay {
		t.Fatalf("pong after %v, want at least %v", el, ports.SlowDelay)
	}
	// A slow device does not slow down its neighbours (shared socket).
	c, err := net.Dial("udp", r.hostport(ports.RMCPPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(rmcp.AppendPing(nil, rmcp.Ping{}))
	start = time.Now()
	if _, err := ping(t, other.hostport(ports.RMCPPort), 2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el >= ports.SlowDelay {
		t.Fatalf("neighbour's pong took %v while a slow device was pinged", el)
	}
}

func TestSessionCounters(t *testing.T) { eachLayout(t, testSessionCounters, false) }

func testSessionCounters(t *testing.T, rigs []*rig) {
	// A connection to 16993 (open in setup mode) is one session while it lasts.
	r := rigs[0]
	c, err := net.Dial("tcp", r.hostport(r.ports.TLSPort))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for r.d.Counters.SessionsMaxConcurrent.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("session never counted")
		}
		time.Sleep(time.Millisecond)
	}
	for r.d.Counters.Sessions.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("session never closed")
		}
		time.Sleep(time.Millisecond)
	}
	// The device's FIN comes after the session stopped counting: a client
	// that waits for it (as amtprov's wsman client does before its next
	// connection) never finds its previous session still counted. Here the
	// device hangs up on a request that is not TLS.
	for i := range 50 {
		c, err := net.Dial("tcp", r.hostport(r.ports.TLSPort))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(io.Discard, c)
		c.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection %d: the device did not hang up", i)
		}
		if n := r.d.Counters.Sessions.Load(); n != 0 {
			t.Fatalf("connection %d: %d sessions still counted after the device's FIN", i, n)
		}
	}
}

func TestSharedRefusesUnknownAddress(t *testing.T) {
	l := layouts[1]
	newRigs(t, true, l.cfg, false)
	// 127.20.255.254 belongs to no device: TCP is reset, RMCP unanswered.
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.20.255.254"), uint16(l.cfg.HTTPPort)).String()
	resp, err := http.Get("http://" + addr + "/")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("unknown address answered %d", resp.StatusCode)
	}
	if _, err := ping(t, netip.AddrPortFrom(netip.MustParseAddr("127.20.255.254"), uint16(l.cfg.RMCPPort)).String(), 1, 200*time.Millisecond); err == nil {
		t.Fatal("unknown address answered a ping")
	}
}
