package workflow

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/events"
)

// Domain is a provisioning domain: a certificate chain for a DNS suffix,
// issued under a root whose hash devices may trust (PROTOCOL.md §6.1-§6.2).
type Domain struct {
	Name   string
	Suffix string
	// RootSHA256 and RootSHA1 are the lower-case hex fingerprints of the
	// chain's root (over its DER).
	RootSHA256 string
	RootSHA1   string
	// Chain is leaf first, up to and including the root, with the leaf's
	// private key: the TLS client certificate of remote configuration.
	Chain tls.Certificate
}

// intelSetupOID marks a provisioning certificate (§6.1 item 3a).
var intelSetupOID = []int{2, 16, 840, 1, 113741, 1, 2, 3}

const setupOU = "Intel(R) Client Setup Certificate"

// trusted reports whether the device's hello lists d's root.
func (d Domain) trusted(hashes []events.RootHash) bool {
	for _, h := range hashes {
		v := strings.ToLower(h.Hex)
		switch {
		case h.Alg == amt.HashSHA256.String() && v == d.RootSHA256 && v != "":
			return true
		case h.Alg == amt.HashSHA1.String() && v == d.RootSHA1 && v != "":
			return true
		}
	}
	return false
}

// chainProblem says why firmware would refuse d's chain whatever the
// device's DNS suffix (§6.1 item 3 a-c, §6.2), or "" when it looks good.
func (d Domain) chainProblem(now time.Time) string {
	if len(d.Chain.Certificate) < 2 {
		return "the chain has no root certificate"
	}
	leaf, err := x509.ParseCertificate(d.Chain.Certificate[0])
	if err != nil {
		return "the leaf certificate does not parse"
	}
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return fmt.Sprintf("the leaf certificate is valid only from %s to %s", leaf.NotBefore.Format(time.DateOnly), leaf.NotAfter.Format(time.DateOnly))
	}
	serverAuth := slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	oid := false
	for _, u := range leaf.UnknownExtKeyUsage {
		if u.Equal(intelSetupOID) {
			oid = true
		}
	}
	if !serverAuth {
		return "the leaf certificate lacks the serverAuth extended key usage"
	}
	if !oid && !slices.Contains(leaf.Subject.OrganizationalUnit, setupOU) {
		return `the leaf certificate has neither the Intel OID 2.16.840.1.113741.1.2.3 nor OU "` + setupOU + `"`
	}
	return ""
}

// candidates are the domains whose root the device trusts, the ones whose
// suffix matches a known device domain first.
func candidates(all []Domain, hashes []events.RootHash, deviceDomain string) []Domain {
	var out []Domain
	for _, d := range all {
		if d.trusted(hashes) {
			out = append(out, d)
		}
	}
	dd := strings.ToLower(strings.TrimSuffix(deviceDomain, "."))
	matches := func(d Domain) bool {
		s := strings.ToLower(d.Suffix)
		return dd != "" && (dd == s || strings.HasSuffix(dd, "."+s))
	}
	slices.SortStableFunc(out, func(a, b Domain) int {
		switch ma, mb := matches(a), matches(b); {
		case ma && !mb:
			return -1
		case mb && !ma:
			return 1
		}
		return 0
	})
	return out
}
