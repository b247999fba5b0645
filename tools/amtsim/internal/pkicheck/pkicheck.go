// Package pkicheck decides, as setup-mode AMT firmware does, whether the
// certificate chain a provisioning server presents on 16993 may configure
// the device (PROTOCOL.md §6.1, TLS-PKI remote configuration). The listener
// calls Verify from tls.Config.VerifyConnection; every refusal becomes a
// failed handshake and a recorded reason.
package pkicheck

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
)

// OIDIntelSetup is the Intel AMT remote-configuration EKU OID (§6.1 3a).
var OIDIntelSetup = asn1.ObjectIdentifier{2, 16, 840, 1, 113741, 1, 2, 3}

// SetupOU is the Subject OU that may replace the OID; matched exactly and
// case-sensitively (§6.1 3a).
const SetupOU = "Intel(R) Client Setup Certificate"

// Rules a chain can break. A *RejectError wraps exactly one.
var (
	ErrNoClientCert   = errors.New("no client certificate chain")
	ErrNotSetupCert   = errors.New("leaf has neither the Intel setup OID nor the setup OU")
	ErrNoServerAuth   = errors.New("leaf EKU lacks serverAuth")
	ErrExpired        = errors.New("certificate outside its validity period")
	ErrBrokenChain    = errors.New("chain does not verify")
	ErrUntrustedRoot  = errors.New("root hash not in the device's trusted list")
	ErrDomainMismatch = errors.New("certificate domain does not match the device's DNS suffix")
	ErrNoDeviceDomain = errors.New("device has no DNS suffix to match")
	ErrChainTooLong   = errors.New("chain longer than firmware accepts")
	ruleNames         = map[error]string{
		ErrNoClientCert:   "no_client_cert",
		ErrNotSetupCert:   "not_setup_cert",
		ErrNoServerAuth:   "no_server_auth",
		ErrExpired:        "expired",
		ErrBrokenChain:    "broken_chain",
		ErrUntrustedRoot:  "untrusted_root",
		ErrDomainMismatch: "domain_mismatch",
		ErrNoDeviceDomain: "domain_mismatch",
		ErrChainTooLong:   "chain_too_long",
	}
)

// maxChainLen bounds the work a hostile client can cause.
const maxChainLen = 8

// RejectError is one refusal: which rule, and details safe to log (subjects
// and hashes of public certificates only).
type RejectError struct {
	Err    error
	Detail string
}

func (e *RejectError) Error() string { return e.Rule() + ": " + e.Err.Error() + ": " + e.Detail }

func (e *RejectError) Unwrap() error { return e.Err }

// Rule is the stable label of the broken rule ("untrusted_root", ...).
func (e *RejectError) Rule() string { return ruleNames[e.Err] }

func reject(err error, format string, args ...any) error {
	return &RejectError{Err: err, Detail: fmt.Sprintf(format, args...)}
}

// Policy is one device's view: what it trusts and which domain it is in.
type Policy struct {
	TrustedRoots []amt.RootHash
	// DNSSuffix is the device's domain (DHCP option 15, MEBx or PKI DNS
	// suffix).
	DNSSuffix string
	// Now is the device clock; zero means time.Now.
	Now time.Time
}

// Verify applies the §6.1 checks, in the order the IRG lists them, to chain
// as the client sent it (leaf first, root last). It returns nil or a
// *RejectError.
//
// The client must send the root itself (§6.1 step 2): the last certificate's
// SHA-1, SHA-256 or SHA-384 must be in the trusted list, and each
// certificate must be signed by the next, which must be a CA.
func (p Policy) Verify(chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return reject(ErrNoClientCert, "the client sent no certificate")
	}
	if len(chain) > maxChainLen {
		return reject(ErrChainTooLong, "%d certificates, at most %d", len(chain), maxChainLen)
	}
	leaf := chain[0]
	if !hasSetupMark(leaf) {
		return reject(ErrNotSetupCert, "leaf %q", leaf.Subject.String())
	}
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	for i, c := range chain {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return reject(ErrExpired, "certificate %d %q valid %s to %s", i, c.Subject.String(),
				c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return reject(ErrBrokenChain, "certificate %d %q is not signed by certificate %d %q: %v",
				i, chain[i].Subject.String(), i+1, chain[i+1].Subject.String(), err)
		}
	}
	root := chain[len(chain)-1]
	if !p.trusts(root.Raw) {
		return reject(ErrUntrustedRoot, "root %q sha256 %s", root.Subject.String(),
			amt.HashCertificate(amt.HashSHA256, root.Raw).Hex())
	}
	if !hasServerAuth(leaf) {
		return reject(ErrNoServerAuth, "leaf %q", leaf.Subject.String())
	}
	if p.DNSSuffix == "" {
		return reject(ErrNoDeviceDomain, "leaf %q", leaf.Subject.String())
	}
	names := append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
	for _, n := range names {
		if n != "" && DomainMatches(n, p.DNSSuffix) {
			return nil
		}
	}
	return reject(ErrDomainMismatch, "names %q against suffix %q", names, p.DNSSuffix)
}

func hasSetupMark(c *x509.Certificate) bool {
	for _, oid := range c.UnknownExtKeyUsage {
		if oid.Equal(OIDIntelSetup) {
			return true
		}
	}
	for _, ou := range c.Subject.OrganizationalUnit {
		if ou == SetupOU {
			return true
		}
	}
	return false
}

func hasServerAuth(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth {
			return true
		}
	}
	return false
}

func (p Policy) trusts(der []byte) bool {
	sums := map[amt.HashAlg]amt.RootHash{}
	for _, h := range p.TrustedRoots {
		got, ok := sums[h.Alg]
		if !ok {
			got = amt.HashCertificate(h.Alg, der)
			sums[h.Alg] = got
		}
		if got.Equal(h) {
			return true
		}
	}
	return false
}

// topLevelLabels is how many trailing labels of a certificate name AMT
// compares, by top-level domain: the table MeshCentral uses to mirror the
// firmware's "extended support for top level domains" (PROTOCOL.md §6.1
// item 6; MC certoperations.js TopLevelDomainExtendedSupport). A TLD not in
// the table leaves the name whole.
var topLevelLabels = map[string]int{
	"net": 2, "com": 2, "arpa": 3, "org": 2, "gov": 2, "edu": 2, "de": 2, "fr": 3, "cn": 3,
	"nl": 3, "br": 3, "mx": 3, "uk": 3, "pl": 3, "tw": 3, "ca": 3, "fi": 3, "be": 3, "ru": 3,
	"se": 3, "ch": 2, "dk": 2, "ar": 3, "es": 3, "no": 3, "at": 3, "in": 3, "tr": 3, "cz": 2,
	"ro": 3, "hu": 3, "nz": 3, "pt": 3, "il": 3, "gr": 3, "co": 3, "ie": 3, "za": 3, "th": 3,
	"sg": 3, "hk": 3, "cl": 2, "lt": 3, "id": 3, "hr": 3, "ee": 3, "bg": 3, "ua": 2,
}

// NormalizeName reduces a certificate name to the domain AMT compares: lower
// case, a leading "*." dropped, then only the last 2 or 3 labels kept for
// the TLDs of the table (so "prov.corp.intel.com" becomes "intel.com").
func NormalizeName(name string) string {
	n := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
	if strings.HasPrefix(n, "*.") && len(n) > 2 {
		n = n[2:]
	}
	labels := strings.Split(n, ".")
	if keep, ok := topLevelLabels[labels[len(labels)-1]]; ok && len(labels) > keep {
		labels = labels[len(labels)-keep:]
	}
	return strings.Join(labels, ".")
}

// DomainMatches reports whether a certificate name (CN or SAN) allows a
// device in domain suffix: after NormalizeName, the suffix equals the name
// or ends in "." + name.
func DomainMatches(certName, suffix string) bool {
	cn := NormalizeName(certName)
	s := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(suffix)), ".")
	if cn == "" || s == "" {
		return false
	}
	return s == cn || strings.HasSuffix(s, "."+cn)
}
