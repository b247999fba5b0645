package pkicheck_test

import (
	"crypto/x509"
	"errors"
	"testing"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/tools/amtsim/internal/pkicheck"
	"github.com/amtprov/amtprov/tools/amtsim/internal/testpki"
)

func TestVerifyRules(t *testing.T) {
	root := testpki.NewRoot(t, "Provisioning Root")
	other := testpki.NewRoot(t, "Someone Else's Root")
	policy := pkicheck.Policy{
		TrustedRoots: []amt.RootHash{other.Hash(amt.HashSHA1), root.Hash(amt.HashSHA256)},
		DNSSuffix:    "corp.example.com",
	}
	onlyOID := testpki.Good("prov.example.com")
	onlyOID.OU = ""
	onlyOU := testpki.Good("prov.example.com")
	onlyOU.IntelOID = false
	wrongCaseOU := onlyOU
	wrongCaseOU.OU = "intel(r) client setup certificate"
	noMark := onlyOU
	noMark.OU = ""
	noServerAuth := testpki.Good("prov.example.com")
	noServerAuth.NoServerAuth = true
	expired := testpki.Good("prov.example.com")
	expired.Expired = true
	forged := testpki.Good("prov.example.com")
	forged.SignedBy = other
	inter := testpki.Good("prov.example.com")
	inter.Intermediate = true
	sanOnly := testpki.Leaf{CN: "Provisioning Server", DNSNames: []string{"x.corp.example.com"}, IntelOID: true}
	wildcard := testpki.Good("*.example.com")

	tests := []struct {
		name string
		ca   *testpki.CA
		leaf testpki.Leaf
		want error
	}{
		{name: "good OID and OU", ca: root, leaf: testpki.Good("prov.example.com")},
		{name: "OID only", ca: root, leaf: onlyOID},
		{name: "OU only", ca: root, leaf: onlyOU},
		{name: "with intermediate", ca: root, leaf: inter},
		{name: "SAN carries the domain", ca: root, leaf: sanOnly},
		{name: "wildcard CN", ca: root, leaf: wildcard},
		{name: "OU in wrong case", ca: root, leaf: wrongCaseOU, want: pkicheck.ErrNotSetupCert},
		{name: "neither OID nor OU", ca: root, leaf: noMark, want: pkicheck.ErrNotSetupCert},
		{name: "no serverAuth", ca: root, leaf: noServerAuth, want: pkicheck.ErrNoServerAuth},
		{name: "expired leaf", ca: root, leaf: expired, want: pkicheck.ErrExpired},
		{name: "signature by another key", ca: root, leaf: forged, want: pkicheck.ErrBrokenChain},
		{name: "untrusted root", ca: testpki.NewRoot(t, "Stranger"), leaf: testpki.Good("prov.example.com"), want: pkicheck.ErrUntrustedRoot},
		{name: "other domain", ca: root, leaf: testpki.Good("prov.example.net"), want: pkicheck.ErrDomainMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chain := testpki.Parse(t, tt.ca.Issue(t, tt.leaf))
			err := policy.Verify(chain)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v, want accepted", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
			var re *pkicheck.RejectError
			if !errors.As(err, &re) || re.Rule() == "" {
				t.Fatalf("error %v is not a *RejectError with a rule", err)
			}
		})
	}
}

func TestVerifyNoChainAndNoDomain(t *testing.T) {
	root := testpki.NewRoot(t, "Root")
	if err := (pkicheck.Policy{}).Verify(nil); !errors.Is(err, pkicheck.ErrNoClientCert) {
		t.Fatalf("empty chain: %v", err)
	}
	long := make([]*x509.Certificate, 9)
	for i := range long {
		long[i] = root.Cert
	}
	if err := (pkicheck.Policy{}).Verify(long); !errors.Is(err, pkicheck.ErrChainTooLong) {
		t.Fatalf("9-certificate chain: %v", err)
	}
	p := pkicheck.Policy{TrustedRoots: []amt.RootHash{root.Hash(amt.HashSHA384)}}
	err := p.Verify(testpki.Parse(t, root.Issue(t, testpki.Good("prov.example.com"))))
	if !errors.Is(err, pkicheck.ErrNoDeviceDomain) {
		t.Fatalf("device without suffix: %v", err)
	}
	p.DNSSuffix = "example.com"
	if err := p.Verify(testpki.Parse(t, root.Issue(t, testpki.Good("prov.example.com")))); err != nil {
		t.Fatalf("SHA-384 trusted root refused: %v", err)
	}
}

func TestDomainMatches(t *testing.T) {
	tests := []struct {
		cert, suffix string
		want         bool
	}{
		{"intel.vprodemo.com", "vprodemo.com", true},           // .com keeps 2 labels: vprodemo.com
		{"csa.ftl.intel.com", "dev.intel.com", true},           // the IRG's own example
		{"prov.example.com", "example.net", false},             // different TLD
		{"prov.corp.example.co.uk", "lab.example.co.uk", true}, // .uk keeps 3 labels
		{"prov.example.co.uk", "other.co.uk", false},
		{"*.amtprov.test", "amtprov.test", true},   // wildcard dropped; .test not in the table
		{"*.amtprov.test", "a.amtprov.test", true}, // ends in "." + name
		{"prov.amtprov.test", "amtprov.test", false},
		{"AMTPROV.TEST", "lab.amtprov.test.", true}, // case and trailing dot
		{"example.com", "badexample.com", false},    // suffix must follow a dot
		{"", "example.com", false},
		{"example.com", "", false},
	}
	for _, tt := range tests {
		if got := pkicheck.DomainMatches(tt.cert, tt.suffix); got != tt.want {
			t.Errorf("DomainMatches(%q, %q) = %v, want %v (normalised %q)", tt.cert, tt.suffix, got, tt.want, pkicheck.NormalizeName(tt.cert))
		}
	}
}
