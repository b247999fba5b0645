package wsmanconformance_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/wsman"
	"github.com/amtprov/amtprov/tools/amtsim"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
)

// Addresses and ports of this package's simulated fleets: 127.12.0.0/16 is
// used by no other package's tests; the ports are off the defaults so a
// shared-socket fleet elsewhere cannot collide.
const (
	httpPort = 25992
	tlsPort  = 25993
	rmcpPort = 25623
)

// fleetOptions is a quiet fleet of n devices at 127.12.<third>.1 and up:
// one hello to a closed port, then none for an hour.
func fleetOptions(n int, third byte) amtsim.Options {
	return amtsim.Options{
		Devices: n, Seed: 12,
		Base:     netip.AddrFrom4([4]byte{127, 12, third, 1}),
		Range:    netip.MustParsePrefix("127.12.0.0/16"),
		HTTPPort: httpPort, TLSPort: tlsPort, RMCPPort: rmcpPort,
		ProvisionServer: "127.0.0.1:1",
		HelloSchedule:   amtsim.HelloSchedule{Phases: []amtsim.HelloPhase{{Every: time.Hour, Count: 1}}, Cutoff: 24 * time.Hour},
		HelloSpread:     time.Millisecond,
	}
}

func startFleet(t *testing.T, o amtsim.Options) *amtsim.Fleet {
	t.Helper()
	f, err := amtsim.Start(context.Background(), o)
	if err != nil {
		t.Fatalf("start simulated fleet: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("close fleet: %v", err)
		}
	})
	return f
}

func deviceAddr(d *firmware.Device, port int) string {
	return net.JoinHostPort(d.Config().IP, fmt.Sprint(port))
}

func newClient(t *testing.T, cfg wsman.Config) *wsman.Client {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	c, err := wsman.New(cfg)
	if err != nil {
		t.Fatalf("wsman.New(%s): %v", cfg.Address, err)
	}
	t.Cleanup(c.Close)
	return c
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ca is a throwaway certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, cn string) *ca {
	t.Helper()
	key := newECKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"amtprov wsman conformance"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create CA %s: %v", cn, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca{cert: c, key: key}
}

// hash is the root's fingerprint as a device stores it (PROTOCOL.md §4.4).
func (c *ca) hash() amt.RootHash { return amt.HashCertificate(amt.HashSHA256, c.cert.Raw) }

// oidIntelSetup is the AMT remote-configuration EKU (PROTOCOL.md §6.1 3a).
var oidIntelSetup = asn1.ObjectIdentifier{2, 16, 840, 1, 113741, 1, 2, 3}

// provisioningChain issues a provisioning certificate for domain as
// PROTOCOL.md §6.2 describes it and returns leaf + root as a TLS client
// certificate.
func (c *ca) provisioningChain(t *testing.T, domain string) tls.Certificate {
	t.Helper()
	key := newECKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: domain, OrganizationalUnit: []string{"Intel(R) Client Setup Certificate"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{oidIntelSetup},
		BasicConstraintsValid: true,
		DNSNames:              []string{domain},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatalf("issue provisioning certificate: %v", err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, c.cert.Raw}, PrivateKey: key, Leaf: leaf}
}

// deviceCertificate signs a TLS server certificate for a key pair the
// device generated (PROTOCOL.md §6.3 step 5: CN IntelAMT-..., serverAuth).
func (c *ca) deviceCertificate(t *testing.T, pub *rsa.PublicKey, cn string) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"amtprov"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		t.Fatalf("issue device certificate: %v", err)
	}
	return der
}

// rsaPublicKey reads AMT_PublicPrivateKeyPair.DERKey: PKCS#1 as recorded
// firmware sends it, or SubjectPublicKeyInfo as PROTOCOL.md §6.3 says.
func rsaPublicKey(t *testing.T, der []byte) *rsa.PublicKey {
	t.Helper()
	if k, err := x509.ParsePKCS1PublicKey(der); err == nil {
		return k
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatalf("DERKey is neither PKCS#1 nor SubjectPublicKeyInfo: %v", err)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		t.Fatalf("DERKey is a %T, want RSA", k)
	}
	return pub
}

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
