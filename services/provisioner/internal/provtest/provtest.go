// Package provtest holds what the provisioner's tests share: a development
// provisioning domain (root and leaf as PROTOCOL.md §6.2 describes them), an
// in-process device-certificate signer standing in for certauthority, a
// keyring, and a simulated fleet on the provisioner's test addresses.
package provtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/services/provisioner/internal/workflow"
	"github.com/amtprov/amtprov/tools/amtsim"
)

var intelOID = asn1.ObjectIdentifier{2, 16, 840, 1, 113741, 1, 2, 3}

// LeafOptions shape a provisioning leaf; the zero value is a good one.
type LeafOptions struct {
	NoServerAuth bool
	NoSetupMark  bool // neither OID nor OU
}

// NewDomain makes a root and a provisioning leaf for suffix.
func NewDomain(tb testing.TB, name, suffix string, o LeafOptions) workflow.Domain {
	tb.Helper()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	root := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(5, 0, 0),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, root, root, &rootKey.PublicKey, rootKey)
	if err != nil {
		tb.Fatal(err)
	}
	rootCert, _ := x509.ParseCertificate(rootDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: suffix},
		DNSNames: []string{suffix}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	if !o.NoServerAuth {
		leaf.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		leaf.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if !o.NoSetupMark {
		leaf.Subject.OrganizationalUnit = []string{"Intel(R) Client Setup Certificate"}
		leaf.UnknownExtKeyUsage = []asn1.ObjectIdentifier{intelOID}
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, rootCert, &leafKey.PublicKey, rootKey)
	if err != nil {
		tb.Fatal(err)
	}
	s256 := sha256.Sum256(rootDER)
	s1 := sha1.Sum(rootDER)
	return workflow.Domain{Name: name, Suffix: suffix, RootSHA256: hex.EncodeToString(s256[:]), RootSHA1: hex.EncodeToString(s1[:]),
		Chain: tls.Certificate{Certificate: [][]byte{leafDER, rootDER}, PrivateKey: leafKey}}
}

// RootHash is the domain's root as a device trusts it.
func RootHash(tb testing.TB, d workflow.Domain) amt.RootHash {
	tb.Helper()
	h, err := amt.ParseRootHash("sha256:" + d.RootSHA256)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// Domains is a fixed workflow.DomainSource.
type Domains []workflow.Domain

// Domains implements workflow.DomainSource.
func (d Domains) Domains(context.Context) ([]workflow.Domain, error) { return d, nil }

// Signer signs device certificates with an in-process CA and counts them.
type Signer struct {
	key  crypto.Signer
	cert *x509.Certificate
	mu   sync.Mutex
	n    int
}

// NewSigner makes the organisation CA.
func NewSigner(tb testing.TB) *Signer {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test org CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(5, 0, 0),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &Signer{key: key, cert: c}
}

// Issued is how many certificates the signer issued.
func (s *Signer) Issued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// SignDeviceCert implements workflow.Signer (PKCS#1 or SPKI public keys).
func (s *Signer) SignDeviceCert(_ context.Context, r workflow.CertRequest) (workflow.Cert, error) {
	var pub any
	if k, err := x509.ParsePKCS1PublicKey(r.PublicKey); err == nil {
		pub = k
	} else if k, err := x509.ParsePKIXPublicKey(r.PublicKey); err == nil {
		pub = k
	} else {
		return workflow.Cert{}, fmt.Errorf("test signer: public key of %s does not parse", r.UUID)
	}
	if k, ok := pub.(*rsa.PublicKey); ok && k.N.BitLen() < 2048 {
		return workflow.Cert{}, fmt.Errorf("test signer: key too small")
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: r.FQDN}, DNSNames: []string{r.FQDN},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(0, 0, r.ValidityDays),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.cert, pub, s.key)
	if err != nil {
		return workflow.Cert{}, fmt.Errorf("test signer: %w", err)
	}
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	return workflow.Cert{DER: der}, nil
}

// Keyring is a fresh single-key keyring.
func Keyring(tb testing.TB) *secrets.Keyring {
	tb.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		tb.Fatal(err)
	}
	kr, err := secrets.NewKeyring("test1", map[string][]byte{"test1": k})
	if err != nil {
		tb.Fatal(err)
	}
	return kr
}

// Ports of the simulated devices in provisioner tests (its own range,
// 127.13.0.0/16, wave-2 contract "Ports"). Below the kernel's ephemeral
// range (32768-60999): a device's outgoing hello from its own address may
// otherwise hold the very port its listener is about to bind (CI,
// 2026-11-26: "bind: address already in use").
const (
	HTTPPort = 24992
	TLSPort  = 24993
	RMCPPort = 24623
)

// FleetOptions are amtsim options for n devices at 127.13.<third>.1 on,
// trusting domains' roots, sending hellos to server.
func FleetOptions(tb testing.TB, n int, third byte, server string, trust ...workflow.Domain) amtsim.Options {
	tb.Helper()
	o := amtsim.Options{
		Devices: n, Seed: int64(third) + 1,
		Base:     netip.AddrFrom4([4]byte{127, 13, third, 1}),
		Range:    netip.MustParsePrefix("127.13.0.0/16"),
		HTTPPort: HTTPPort, TLSPort: TLSPort, RMCPPort: RMCPPort,
		ProvisionServer: server,
		TimeScale:       600,
	}
	for _, d := range trust {
		o.TrustHashes = append(o.TrustHashes, RootHash(tb, d))
	}
	return o
}

// StartFleet starts a fleet and closes it when the test ends.
func StartFleet(tb testing.TB, o amtsim.Options) *amtsim.Fleet {
	tb.Helper()
	f, err := amtsim.Start(context.Background(), o)
	if err != nil {
		tb.Fatalf("start simulator: %v", err)
	}
	tb.Cleanup(func() {
		if err := f.Close(); err != nil {
			tb.Errorf("close simulator: %v", err)
		}
	})
	return f
}
