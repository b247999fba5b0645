package wsman_test

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/wsman"
)

// sessionCounter counts a device's open connections the way firmware (and
// amtsim) does: from accept until the device has closed the socket and done
// its bookkeeping. The device is slow to close (closeDelay), as busy
// firmware is, and counts the session a moment longer (bookDelay): a client
// that opens its next connection as soon as it has read an answer with
// "Connection: close", or as soon as the device's FIN arrives, is seen with
// two.
type sessionCounter struct {
	net.Listener
	closeDelay time.Duration
	bookDelay  time.Duration
	open, max  atomic.Int64
	accepted   atomic.Int64
	resumed    atomic.Int64 // TLS handshakes that resumed a session
}

func (l *sessionCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	n := l.open.Add(1)
	for {
		m := l.max.Load()
		if n <= m || l.max.CompareAndSwap(m, n) {
			break
		}
	}
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *sessionCounter
	once sync.Once
}

func (c *countedConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		time.Sleep(c.l.closeDelay) // the firmware finishing the session
		err = c.Conn.Close()
		time.Sleep(c.l.bookDelay) // and freeing its slot
		c.l.open.Add(-1)
	})
	return err
}

// closingChallenges makes d answer every challenge with "Connection:
// close", as AMT does (PROTOCOL.md §8.3).
type closingChallenges struct{ d *digestDevice }

func (c closingChallenges) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.d.ServeHTTP(closeOn401{w}, r)
}

type closeOn401 struct{ http.ResponseWriter }

func (w closeOn401) WriteHeader(status int) {
	if status == http.StatusUnauthorized {
		w.Header().Set("Connection", "close")
	}
	w.ResponseWriter.WriteHeader(status)
}

// sessionDevice starts a digest device on 127.12.1.1 (TLS when tlsOn) that
// closes connections after challenges and counts sessions.
func sessionDevice(t *testing.T, tlsOn bool) (*sessionCounter, string, *tls.Certificate) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.12.1.1:0")
	if err != nil {
		t.Fatal(err)
	}
	counter := &sessionCounter{Listener: ln, closeDelay: 30 * time.Millisecond, bookDelay: 10 * time.Millisecond}
	dd := &digestDevice{realm: testRealm, user: "admin", pass: testPassword, maxUses: 1 << 20,
		next: &replay{tb: t, routes: fixtureRoutes}}
	srv := httptest.NewUnstartedServer(closingChallenges{dd})
	srv.Listener.Close()
	srv.Listener = counter
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	var cert *tls.Certificate
	if tlsOn {
		c := selfSigned(t, "IntelAMT-device")
		cert = &c
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{c}, MaxVersion: tls.VersionTLS12, // as AMT (PROTOCOL.md §1)
			VerifyConnection: func(cs tls.ConnectionState) error {
				if cs.DidResume {
					counter.resumed.Add(1)
				}
				return nil
			}}
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return counter, ln.Addr().String(), cert
}

// TestOneSessionAtATime: a device that hangs up after every digest
// challenge, and is slow to do so, never sees two connections of ours at
// once: not within a client (challenge, then the authenticated retry on a
// new connection), not from one client to the next after Close, not after
// a refused handshake.
func TestOneSessionAtATime(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tlsOn bool
	}{{"http", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			counter, addr, cert := sessionDevice(t, tc.tlsOn)
			ctx := testContext(t)
			var pin []byte
			if cert != nil {
				pin = wsman.CertificateSHA256(cert.Certificate[0])
			}
			newC := func(pin []byte) *wsman.Client {
				return newClient(t, addr, func(c *wsman.Config) {
					c.Username, c.Password = "admin", testPassword
					if pin != nil {
						conf, err := wsman.PinnedTLSConfig(pin)
						if err != nil {
							t.Fatal(err)
						}
						c.TLS = conf
					}
				})
			}
			for i := range 5 {
				if tc.tlsOn && i == 2 {
					// A refused handshake (wrong pin), then the right one.
					wrong := make([]byte, 32)
					wc := newC(wrong)
					_, err := wc.SetupAndConfiguration(ctx)
					wc.Close() // as the workflow does before it opens another client
					var te *wsman.TLSError
					if !errors.As(err, &te) || !errors.Is(err, wsman.ErrPinMismatch) {
						t.Fatalf("wrong pin: %v, want *TLSError with ErrPinMismatch", err)
					}
				}
				c := newC(pin)
				for range 3 {
					if _, err := c.SetupAndConfiguration(ctx); err != nil {
						t.Fatal(err)
					}
				}
				c.Close()
			}
			// Each client: the challenged connection, then one for the rest.
			if got := counter.accepted.Load(); got < 10 {
				t.Fatalf("%d connections accepted, want at least 10 (the device did not hang up after challenges?)", got)
			}
			if got := counter.max.Load(); got != 1 {
				t.Fatalf("the device saw %d of our connections at once, want 1", got)
			}
			// The connection after each challenge resumes the client's TLS
			// session (a full handshake only for each new client).
			if tc.tlsOn && counter.resumed.Load() < 5 {
				t.Fatalf("%d of %d TLS connections resumed a session, want at least 5", counter.resumed.Load(), counter.accepted.Load())
			}
		})
	}
}
