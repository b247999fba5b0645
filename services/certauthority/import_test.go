package certauthority_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/amtprov/amtprov/libs/admin"
	ca "github.com/amtprov/amtprov/services/certauthority"
)

var testNow = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

type issued struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var serialCounter = big.NewInt(1000)

func issue(t *testing.T, tmpl *x509.Certificate, parent *issued) issued {
	t.Helper()
	key := ecKey(t)
	tmpl.SerialNumber = new(big.Int).Add(serialCounter, big.NewInt(int64(len(tmpl.Subject.CommonName))+time.Now().UnixNano()%1e6))
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = testNow.AddDate(-1, 0, 0)
		tmpl.NotAfter = testNow.AddDate(1, 0, 0)
	}
	p, signer := tmpl, crypto.Signer(key)
	if parent != nil {
		p, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return issued{cert: c, key: key}
}

func rootTmpl(cn string) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
}

// leafTmpl is a good provisioning leaf for domain (PROTOCOL.md §6.2).
func leafTmpl(domain string) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: domain, OrganizationalUnit: []string{ca.SetupOU}},
		DNSNames:              []string{domain},
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{ca.OIDIntelSetup},
	}
}

func pfx(t *testing.T, key crypto.Signer, leaf *x509.Certificate, cas ...*x509.Certificate) []byte {
	t.Helper()
	b, err := pkcs12.Modern.Encode(key, leaf, cas, "pw")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidateProvisioningPFX(t *testing.T) {
	root := issue(t, rootTmpl("Test Root"), nil)
	good := issue(t, leafTmpl("corp.example.com"), &root)
	ouOnly := leafTmpl("corp.example.com")
	ouOnly.UnknownExtKeyUsage = nil
	oidOnly := leafTmpl("corp.example.com")
	oidOnly.Subject.OrganizationalUnit = nil
	neither := leafTmpl("corp.example.com")
	neither.UnknownExtKeyUsage, neither.Subject.OrganizationalUnit = nil, nil
	noServerAuth := leafTmpl("corp.example.com")
	noServerAuth.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	expired := leafTmpl("corp.example.com")
	expired.NotBefore, expired.NotAfter = testNow.AddDate(-2, 0, 0), testNow.AddDate(0, 0, -1)
	wildcardParent := leafTmpl("*.intel.com") // AMT compares intel.com: covers corp.intel.com devices
	inter := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "Test Intermediate"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, &root)
	viaInter := issue(t, leafTmpl("corp.example.com"), &inter)
	selfLeaf := issue(t, leafTmpl("corp.example.com"), nil)
	other := ecKey(t)

	tests := []struct {
		name     string
		pfx      []byte
		password string
		suffix   string
		wantCode string // "" = accepted
		wantLen  int
	}{
		{"good", pfx(t, good.key, good.cert, root.cert), "pw", "corp.example.com", "", 2},
		{"good, device in a sub-domain", pfx(t, good.key, good.cert, root.cert), "pw", "site1.corp.example.com", "", 2},
		{"OU only", func() []byte { l := issue(t, ouOnly, &root); return pfx(t, l.key, l.cert, root.cert) }(), "pw", "corp.example.com", "", 2},
		{"OID only", func() []byte { l := issue(t, oidOnly, &root); return pfx(t, l.key, l.cert, root.cert) }(), "pw", "corp.example.com", "", 2},
		{"with intermediate, bags out of order", pfx(t, viaInter.key, viaInter.cert, root.cert, inter.cert), "pw", "corp.example.com", "", 3},
		{"wildcard normalised", func() []byte { l := issue(t, wildcardParent, &root); return pfx(t, l.key, l.cert, root.cert) }(), "pw", "corp.intel.com", "", 2},
		{"wrong password", pfx(t, good.key, good.cert, root.cert), "nope", "corp.example.com", ca.CodePFXUnreadable, 0},
		{"not a PFX", []byte("-----BEGIN CERTIFICATE-----"), "pw", "corp.example.com", ca.CodePFXUnreadable, 0},
		{"chain of one", pfx(t, good.key, good.cert), "pw", "corp.example.com", ca.CodeChainTooShort, 0},
		{"self-signed leaf plus unrelated root", pfx(t, selfLeaf.key, selfLeaf.cert, root.cert), "pw", "corp.example.com", ca.CodeChainTooShort, 0},
		{"missing OID and OU", func() []byte { l := issue(t, neither, &root); return pfx(t, l.key, l.cert, root.cert) }(), "pw", "corp.example.com", ca.CodeNotSetupCert, 0},
		{"no serverAuth", func() []byte { l := issue(t, noServerAuth, &root); return pfx(t, l.key, l.cert, root.cert) }(), "pw", "corp.example.com", ca.CodeNoServerAuth, 0},
		{"no root in the chain", pfx(t, viaInter.key, viaInter.cert, inter.cert), "pw", "corp.example.com", ca.CodeNoRoot, 0},
		{"key mismatch", pfx(t, other, good.cert, root.cert), "pw", "corp.example.com", ca.CodeKeyMismatch, 0},
		{"expired", func() []byte { l := issue(t, expired, &root); return pfx(t, l.key, l.cert, root.cert) }(), "pw", "corp.example.com", ca.CodeExpired, 0},
		{"suffix mismatch", pfx(t, good.key, good.cert, root.cert), "pw", "other.example.org", ca.CodeSuffixMismatch, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			chain, key, err := ca.ValidateProvisioningPFX(tc.pfx, tc.password, tc.suffix, testNow)
			if tc.wantCode != "" {
				if got := admin.CodeOf(err); got != tc.wantCode {
					t.Fatalf("err = %v (code %q), want code %s", err, got, tc.wantCode)
				}
				if strings.Contains(err.Error(), tc.password) && tc.password != "" && len(tc.password) > 2 {
					t.Fatal("error text contains the PFX password")
				}
				return
			}
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if len(chain) != tc.wantLen || key == nil {
				t.Fatalf("chain of %d, key %v; want %d and a key", len(chain), key != nil, tc.wantLen)
			}
			root := chain[len(chain)-1]
			if !root.IsCA || root.CheckSignatureFrom(root) != nil {
				t.Fatal("chain does not end in the self-signed root")
			}
		})
	}
}

// The RPS sample provisioning certificate (device-management-toolkit/rps,
// src/test/helper/certs.ts, Apache-2.0; password from src/certManager.test.ts)
// and its root hashes as PROTOCOL.md §6.2 records them.
func TestRPSSamplePFX(t *testing.T) {
	b64, err := os.ReadFile("testdata/rps-vprodemo.pfx.b64")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b64)))
	if err != nil {
		t.Fatal(err)
	}
	chain, _, err := ca.ValidateProvisioningPFX(raw, "P@ssw0rd", "vprodemo.com", testNow)
	if err != nil {
		t.Fatalf("RPS sample rejected: %v", err)
	}
	leaf, root := chain[0], chain[len(chain)-1]
	if leaf.Subject.CommonName != "intel.vprodemo.com" || root.Subject.CommonName != "CA Custom Root Certificate" {
		t.Fatalf("leaf %q root %q", leaf.Subject.CommonName, root.Subject.CommonName)
	}
	if got := fingerprint(root.Raw, "sha256"); got != "82f2ed575db4abe462499cf550dbff9584980d70a0272894639c3653b9ad932c" {
		t.Errorf("root sha256 %s", got)
	}
	if got := fingerprint(root.Raw, "sha1"); got != "47d7b7db23f3e300189f54802482b1bd18b945ef" {
		t.Errorf("root sha1 %s", got)
	}
	// intel.vprodemo.com normalises to vprodemo.com (.com keeps 2 labels):
	// devices in any vprodemo.com sub-domain accept it, others do not.
	if _, _, err := ca.ValidateProvisioningPFX(raw, "P@ssw0rd", "lab.vprodemo.com", testNow); err != nil {
		t.Errorf("sub-domain device: %v", err)
	}
	if _, _, err := ca.ValidateProvisioningPFX(raw, "P@ssw0rd", "corp.example.com", testNow); admin.CodeOf(err) != ca.CodeSuffixMismatch {
		t.Errorf("foreign suffix: %v", err)
	}
	if _, _, err := ca.ValidateProvisioningPFX(raw, "P@ssw0rd", "vprodemo.com", time.Date(2034, 1, 1, 0, 0, 0, 0, time.UTC)); admin.CodeOf(err) != ca.CodeExpired {
		t.Errorf("after 2033: %v", err)
	}
}

func TestDomainMatches(t *testing.T) {
	tests := []struct {
		name, suffix string
		want         bool
	}{
		{"corp.example.com", "corp.example.com", true},
		{"corp.example.com", "a.corp.example.com", true},
		{"intel.vprodemo.com", "vprodemo.com", true}, // .com: last two labels compared
		{"*.vprodemo.com", "x.vprodemo.com", true},
		{"vprodemo.com", "vprodemo.com.evil.net", false},
		{"example.com", "badexample.com", false},
		{"prov.example.co.uk", "site.example.co.uk", true}, // .uk: three labels
		{"example.co.uk", "other.co.uk", false},
		{"", "corp.example.com", false},
	}
	for _, tc := range tests {
		if got := ca.DomainMatches(tc.name, tc.suffix); got != tc.want {
			t.Errorf("DomainMatches(%q, %q) = %t, want %t", tc.name, tc.suffix, got, tc.want)
		}
	}
}
