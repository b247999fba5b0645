// Package testpki makes throwaway certificate authorities and provisioning
// certificate chains for the simulator's tests, good and deliberately bad
// ones (PROTOCOL.md §6.2 describes what a good one looks like).
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/tools/amtsim/internal/pkicheck"
)

// CA is a self-signed root with its key.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewRoot makes a root CA named cn.
func NewRoot(tb testing.TB, cn string) *CA {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"amtsim test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return &CA{Cert: create(tb, tmpl, tmpl, &key.PublicKey, key), Key: key}
}

// Hash is the root's fingerprint as a device stores it.
func (ca *CA) Hash(alg amt.HashAlg) amt.RootHash { return amt.HashCertificate(alg, ca.Cert.Raw) }

// Leaf says what the provisioning certificate looks like.
type Leaf struct {
	CN       string
	DNSNames []string
	OU       string // e.g. pkicheck.SetupOU
	IntelOID bool   // put 2.16.840.1.113741.1.2.3 in the EKU
	// NoServerAuth leaves serverAuth out of the EKU.
	NoServerAuth bool
	// Expired makes the leaf's validity end an hour ago.
	Expired bool
	// Intermediate issues the leaf from an intermediate CA under the root.
	Intermediate bool
	// SignedBy, when set, signs the leaf with this CA's key while still
	// naming (and sending) ca as issuer: a chain that does not verify.
	SignedBy *CA
}

// Good is the usual provisioning leaf for domain: OID, OU, serverAuth, CN
// and SAN equal to domain.
func Good(domain string) Leaf {
	return Leaf{CN: domain, DNSNames: []string{domain}, OU: pkicheck.SetupOU, IntelOID: true}
}

// Issue makes a chain leaf[, intermediate], root and returns it as a TLS
// client certificate.
func (ca *CA) Issue(tb testing.TB, l Leaf) tls.Certificate {
	tb.Helper()
	issuer, issuerKey := ca.Cert, ca.Key
	var chain [][]byte
	if l.Intermediate {
		ikey := newKey(tb)
		itmpl := &x509.Certificate{
			SerialNumber:          serial(tb),
			Subject:               pkix.Name{CommonName: ca.Cert.Subject.CommonName + " Intermediate"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().AddDate(5, 0, 0),
			KeyUsage:              x509.KeyUsageCertSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		inter := create(tb, itmpl, ca.Cert, &ikey.PublicKey, ca.Key)
		issuer, issuerKey = inter, ikey
		chain = append(chain, inter.Raw)
	}
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber: serial(tb),
		Subject:      pkix.Name{CommonName: l.CN, Organization: []string{"amtsim test"}},
		DNSNames:     l.DNSNames,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	if l.OU != "" {
		tmpl.Subject.OrganizationalUnit = []string{l.OU}
	}
	if !l.NoServerAuth {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if l.IntelOID {
		tmpl.UnknownExtKeyUsage = append(tmpl.UnknownExtKeyUsage, pkicheck.OIDIntelSetup)
	}
	if l.Expired {
		tmpl.NotBefore = time.Now().AddDate(-1, 0, 0)
		tmpl.NotAfter = time.Now().Add(-time.Hour)
	}
	parent, signer := issuer, issuerKey
	if l.SignedBy != nil {
		// Name the real issuer but sign with another key: x509 insists the
		// parent's public key matches the signer, so hand it a look-alike.
		signer = l.SignedBy.Key
		parent = &x509.Certificate{
			Subject:      issuer.Subject,
			RawSubject:   issuer.RawSubject,
			SubjectKeyId: issuer.SubjectKeyId,
			PublicKey:    &signer.PublicKey,
		}
	}
	leaf := create(tb, tmpl, parent, &key.PublicKey, signer)
	certs := append([][]byte{leaf.Raw}, chain...)
	certs = append(certs, ca.Cert.Raw)
	return tls.Certificate{Certificate: certs, PrivateKey: key, Leaf: leaf}
}

// Parse turns a tls.Certificate chain back into x509 certificates.
func Parse(tb testing.TB, c tls.Certificate) []*x509.Certificate {
	tb.Helper()
	out := make([]*x509.Certificate, 0, len(c.Certificate))
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			tb.Fatalf("parse certificate: %v", err)
		}
		out = append(out, x)
	}
	return out
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	return k
}

func serial(tb testing.TB) *big.Int {
	tb.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatalf("serial: %v", err)
	}
	return n
}

func create(tb testing.TB, tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		tb.Fatalf("create certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("parse certificate: %v", err)
	}
	return c
}
