package certauthority

import (
	"fmt"
	"strings"
)

// topLevelLabels is how many trailing labels of a certificate name AMT
// compares, by top-level domain (PROTOCOL.md §6.1 item 6, MeshCentral's
// table). tools/amtsim/internal/pkicheck has the same table on purpose:
// the simulator is the test oracle for firmware behaviour, and an oracle
// that shared this code with the system under test could not catch a
// mistake in it.
var topLevelLabels = map[string]int{
	"net": 2, "com": 2, "arpa": 3, "org": 2, "gov": 2, "edu": 2, "de": 2, "fr": 3, "cn": 3,
	"nl": 3, "br": 3, "mx": 3, "uk": 3, "pl": 3, "tw": 3, "ca": 3, "fi": 3, "be": 3, "ru": 3,
	"se": 3, "ch": 2, "dk": 2, "ar": 3, "es": 3, "no": 3, "at": 3, "in": 3, "tr": 3, "cz": 2,
	"ro": 3, "hu": 3, "nz": 3, "pt": 3, "il": 3, "gr": 3, "co": 3, "ie": 3, "za": 3, "th": 3,
	"sg": 3, "hk": 3, "cl": 2, "lt": 3, "id": 3, "hr": 3, "ee": 3, "bg": 3, "ua": 2,
}

// NormalizeName reduces a provisioning certificate name to what AMT
// compares: lower case, "*." dropped, only the last 2 or 3 labels kept for
// the TLDs of the table ("prov.corp.intel.com" → "intel.com").
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

// DomainMatches reports whether a provisioning certificate name (CN or SAN)
// is accepted by a device whose DNS suffix is suffix, by AMT's rule
// (PROTOCOL.md §6.1 item 6): after NormalizeName the suffix equals the name
// or ends in "." + name.
func DomainMatches(certName, suffix string) bool {
	cn := NormalizeName(certName)
	s := CanonicalSuffix(suffix)
	if cn == "" || s == "" {
		return false
	}
	return s == cn || strings.HasSuffix(s, "."+cn)
}

// CanonicalSuffix is the stored form of a DNS suffix: trimmed, lower case,
// no leading or trailing dot.
func CanonicalSuffix(s string) string {
	return strings.Trim(strings.ToLower(strings.TrimSpace(s)), ".")
}

// InSuffix reports whether fqdn is suffix itself or a name under it
// (plain DNS containment, used for the signing policy).
func InSuffix(fqdn, suffix string) bool {
	f, s := CanonicalSuffix(fqdn), CanonicalSuffix(suffix)
	return s != "" && (f == s || strings.HasSuffix(f, "."+s))
}

// validDNSName checks a host name or suffix: 1..253 characters, labels of
// 1..63 letters, digits and hyphens, not starting or ending with a hyphen.
func validDNSName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("DNS name %q must be 1..253 characters", name)
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("DNS name %q has an empty or over-long label", name)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("DNS name %q has a label starting or ending with '-'", name)
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("DNS name %q contains %q", name, r)
			}
		}
	}
	return nil
}
