package wsman_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/wsman"
)

// selfSigned makes a certificate and key for cn.
func selfSigned(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{cn},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// tlsDevice is a TLS endpoint that, like setup-mode firmware, accepts only
// the client certificate want (nil: any or none) and answers from fixtures.
func tlsDevice(t *testing.T, maxVersion uint16, want *x509.Certificate) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(&replay{tb: t, routes: fixtureRoutes})
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{selfSigned(t, "IntelAMT-device")},
		MaxVersion:   maxVersion,
		ClientAuth:   tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if want == nil {
				return nil
			}
			if len(cs.PeerCertificates) == 0 || !cs.PeerCertificates[0].Equal(want) {
				return errors.New("provisioning certificate refused")
			}
			return nil
		},
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestSetupTLS(t *testing.T) {
	good := selfSigned(t, "prov.example.com")
	bad := selfSigned(t, "other.example.com")
	for _, version := range []struct {
		name string
		max  uint16
	}{{"TLS 1.2 as AMT", tls.VersionTLS12}, {"TLS 1.3", tls.VersionTLS13}} {
		t.Run(version.name, func(t *testing.T) {
			srv := tlsDevice(t, version.max, good.Leaf)
			ctx := testContext(t)

			var captured *x509.Certificate
			c := newClient(t, hostPort(srv), func(cfg *wsman.Config) {
				cfg.TLS = wsman.SetupTLSConfig(good, func(dev *x509.Certificate) error { captured = dev; return nil })
			})
			if _, err := c.GeneralSettings(ctx); err != nil {
				t.Fatalf("with the trusted chain: %v", err)
			}
			if captured == nil || !captured.Equal(srv.Certificate()) {
				t.Fatal("the device certificate was not handed to the hook")
			}

			refused := newClient(t, hostPort(srv), func(cfg *wsman.Config) { cfg.TLS = wsman.SetupTLSConfig(bad, nil) })
			_, err := refused.GeneralSettings(ctx)
			var te *wsman.TLSError
			if !errors.As(err, &te) || errors.Is(err, wsman.ErrUnreachable) || wsman.Retryable(err) {
				t.Fatalf("with a refused chain: err = %v, want *TLSError", err)
			}

			hookErr := errors.New("not the device we expected")
			vetoed := newClient(t, hostPort(srv), func(cfg *wsman.Config) {
				cfg.TLS = wsman.SetupTLSConfig(good, func(*x509.Certificate) error { return hookErr })
			})
			if _, err := vetoed.GeneralSettings(ctx); !errors.As(err, &te) || !errors.Is(err, hookErr) {
				t.Fatalf("hook refusal: err = %v, want *TLSError wrapping the hook's error", err)
			}
		})
	}
}

func TestPinnedTLS(t *testing.T) {
	srv := tlsDevice(t, tls.VersionTLS12, nil)
	ctx := testContext(t)
	pin := wsman.CertificateSHA256(srv.Certificate().Raw)
	if want := sha256.Sum256(srv.Certificate().Raw); string(pin) != string(want[:]) {
		t.Fatal("CertificateSHA256 is not the SHA-256 of the DER")
	}

	conf, err := wsman.PinnedTLSConfig(pin)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, hostPort(srv), func(cfg *wsman.Config) { cfg.TLS = conf })
	if _, err := c.SetupAndConfiguration(ctx); err != nil {
		t.Fatalf("pinned to the right certificate: %v", err)
	}

	wrong := make([]byte, 32)
	wrong[0] = 1
	conf, err = wsman.PinnedTLSConfig(wrong)
	if err != nil {
		t.Fatal(err)
	}
	c = newClient(t, hostPort(srv), func(cfg *wsman.Config) { cfg.TLS = conf })
	_, err = c.SetupAndConfiguration(ctx)
	var te *wsman.TLSError
	if !errors.As(err, &te) || !errors.Is(err, wsman.ErrPinMismatch) {
		t.Fatalf("pinned to another certificate: err = %v, want *TLSError with ErrPinMismatch", err)
	}

	if _, err := wsman.PinnedTLSConfig(pin[:20]); !errors.Is(err, wsman.ErrInvalidArgument) {
		t.Fatalf("a 20-byte pin: err = %v, want ErrInvalidArgument", err)
	}
}

// TestTLSPeerGoneBeforeCertificate: a port that accepts and hangs up before
// any TLS is an unreachable device, not a TLS refusal.
func TestTLSPeerGoneBeforeCertificate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	c := newClient(t, ln.Addr().String(), func(cfg *wsman.Config) { cfg.TLS = wsman.SetupTLSConfig(selfSigned(t, "prov.example.com"), nil) })
	_, err = c.GeneralSettings(testContext(t))
	var te *wsman.TLSError
	if !errors.Is(err, wsman.ErrUnreachable) || errors.As(err, &te) {
		t.Fatalf("err = %v, want ErrUnreachable and no TLSError", err)
	}
}
