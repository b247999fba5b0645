// Package fleetgen makes the identities of a simulated AMT fleet from a
// seed: UUIDs, MACs, addresses, host names, firmware versions, digest realms,
// MEBx passwords and trusted root hashes. The same options and seed always
// give the same fleet, and device i does not change when the fleet grows.
package fleetgen

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
)

// defaultRootsSHA256 are the 19 root certificate hashes AMT firmware ships
// trusted for remote configuration, as a real device reports them to RPS
// (rps src/commandParser.test.ts certHashes; PROTOCOL.md §11). The first two
// are VeriSign Class 3 Primary CA-G1 and G3 (MeshCmd amthashes output).
var defaultRootsSHA256 = [...]string{
	"e7685634efacf69ace939a6b255b7b4fabef42935b50a265acb5cb6027e44e70",
	"eb04cf5eb1f39afa762f2bb120f296cba520c1b97db1589565b81cb9a17b7244",
	"c3846bf24b9e93ca64274c0ec67c1ecc5e024ffcacd2d74019350e81fe546ae4",
	"d7a7a0fb5d7e2731d771e9484ebcdef71d5f0c3e0a2948782bc83ee0ea699ef4",
	"1465fa205397b876faa6f0a9958e5590e40fcc7faa4fb7c2c8677521fb5fb658",
	"83ce3c1229688a593d485f81973c0f9195431eda37cc5e36430e79c7a888638b",
	"a4b6b3996fc2f306b3fd8681bd63413d8c5009cc4fa329c2ccf0e2fa1b140305",
	"9acfab7e43c8d880d06b262a94deeee4b4659989c3d0caf19baf6405e41ab7df",
	"a53125188d2110aa964b02c7b7c6da3203170894e5fb71fffb6667d5e6810a36",
	"16af57a9f676b0ab126095aa5ebadef22ab31119d644ac95cd4b93dbf3f26aeb",
	"960adf0063e96356750c2965dd0a0867da0b9cbd6e77714aeafb2349ab393da3",
	"68ad50909b04363c605ef13581a939ff2c96372e3f12325b0a6861e1d59f6603",
	"6dc47172e01cbcb0bf62580d895fe2b8ac9ad4f873801e0c10b9c837d21eb177",
	"73c176434f1bc6d5adf45b0e76e727287c8de57616c1e6e6141a2b2cbc7d8e4c",
	"2399561127a57125de8cefea610ddf2fa078b5c8067f4e828290bfb860e84b3c",
	"45140b3247eb9cc8c5b4f0d7b53091f73292089e6e5a63e2749dd3aca9198eda",
	"43df5774b03e7fef5fe40d931a7bedf1bb2e6b42738c4e6d3841103d3aa7f339",
	"2ce1cb0bf9d2f9e102993fbe215152c3b2dd0cabde1c68e5319b839154dbb7f5",
	"70a73f7f376b60074248904534b11482d5bf0e698ecc498df52577ebf2e93b9a",
}

// DefaultRoots returns the firmware default trusted roots.
func DefaultRoots() []amt.RootHash {
	out := make([]amt.RootHash, len(defaultRootsSHA256))
	for i, s := range defaultRootsSHA256 {
		sum, _ := hex.DecodeString(s) // constants, checked by TestDefaultRoots
		out[i] = amt.RootHash{Alg: amt.HashSHA256, Sum: sum}
	}
	return out
}

// firmware is one release in the fleet mix, with its share.
type release struct {
	weight   int
	versions []string // major.minor.hotfix.build
}

// releases is the version mix: AMT 11.8 (RPS test device 11.8.50 build
// 3425), 12.0, 15.0 (banner 15.0.23.1706 in an RPS capture) and 16.1
// (16.1.25.2124 in DMT console test data). The other builds are plausible
// neighbours, not taken from a source.
var releases = [...]release{
	{weight: 15, versions: []string{"11.8.50.3425", "11.8.55.3510"}},
	{weight: 20, versions: []string{"12.0.45.1509", "12.0.70.1652"}},
	{weight: 30, versions: []string{"15.0.23.1706", "15.0.41.2142"}},
	{weight: 35, versions: []string{"16.1.25.2124", "16.1.30.2307"}},
}

// legacyVersions are pre-11.0 releases, the last to send PSK (v2) hellos
// (PROTOCOL.md §5: PSK removed in AMT 11.0). Plausible builds.
var legacyVersions = [...]string{"9.5.30.1685", "10.0.55.3000"}

// ouis are MAC prefixes of PC makers whose vPro machines carry I219-LM NICs.
// Illustrative; the simulator does not depend on them.
var ouis = [...][3]byte{{0xa4, 0xbb, 0x6d}, {0x98, 0xfa, 0x9b}, {0x54, 0xe1, 0xad}, {0x00, 0x1e, 0x8c}, {0xc8, 0xf7, 0x50}}

// SKU is the corporate vPro SKU the RPS test device and the CIM_SoftwareIdentity
// fixture report.
const SKU = "16392"

// FactoryMEBxPassword is the MEBx password AMT ships with; provisioning
// must change it before CommitChanges (PROTOCOL.md §6.1 step 5).
const FactoryMEBxPassword = "admin"

// Options say what fleet to make.
type Options struct {
	Count int
	Seed  int64
	// Base is the first device's address; device i gets Base+i, which must
	// stay inside Range.
	Base  netip.Addr
	Range netip.Prefix
	// DNSSuffix is every device's domain (DHCP option 15 in a real network).
	DNSSuffix string
	// TrustHashes are added to the firmware defaults, like hashes a user
	// enters in MEBx or a setup.bin adds.
	TrustHashes []amt.RootHash
	// LegacyShare of the fleet runs pre-11 firmware and sends v2 hellos.
	LegacyShare float64
	// ProvisionedShare of the fleet was activated by another console: admin
	// credentials AdminUser/AdminPassword, TLS on.
	ProvisionedShare float64
	AdminUser        string
	AdminPassword    string
}

// Generate returns the device configurations.
func Generate(o Options) ([]firmware.Config, error) {
	if o.Count < 0 {
		return nil, fmt.Errorf("generate fleet: device count %d is negative", o.Count)
	}
	if !o.Base.Is4() || !o.Range.Contains(o.Base) {
		return nil, fmt.Errorf("generate fleet: base %v must be an IPv4 address inside %v", o.Base, o.Range)
	}
	if err := checkShare("legacy", o.LegacyShare); err != nil {
		return nil, err
	}
	if err := checkShare("provisioned", o.ProvisionedShare); err != nil {
		return nil, err
	}
	if o.LegacyShare+o.ProvisionedShare > 1 {
		return nil, errors.New("generate fleet: legacy and provisioned shares add up to more than 1")
	}
	if o.ProvisionedShare > 0 && o.AdminPassword == "" {
		return nil, errors.New("generate fleet: a provisioned share needs an admin password")
	}
	if o.AdminUser == "" {
		o.AdminUser = "admin"
	}
	if o.DNSSuffix == "" {
		return nil, errors.New("generate fleet: DNS suffix is empty")
	}
	roots := make([]string, 0, len(defaultRootsSHA256)+len(o.TrustHashes))
	for _, h := range DefaultRoots() {
		roots = append(roots, h.String())
	}
	for _, h := range o.TrustHashes {
		roots = append(roots, h.String())
	}

	// Which devices are legacy or provisioned: exact counts, seeded choice.
	nLegacy := int(math.Round(o.LegacyShare * float64(o.Count)))
	nProv := int(math.Round(o.ProvisionedShare * float64(o.Count)))
	if nLegacy+nProv > o.Count {
		nProv = o.Count - nLegacy
	}
	kind := make([]byte, o.Count)
	perm := rand.New(rand.NewPCG(uint64(o.Seed), 0x666c656574)).Perm(o.Count)
	for j, i := range perm {
		switch {
		case j < nLegacy:
			kind[i] = 'l'
		case j < nLegacy+nProv:
			kind[i] = 'p'
		}
	}

	out := make([]firmware.Config, o.Count)
	addr := o.Base
	for i := range out {
		if i > 0 {
			addr = addr.Next()
		}
		if !o.Range.Contains(addr) {
			return nil, fmt.Errorf("generate fleet: device %d at %v falls outside %v", i, addr, o.Range)
		}
		c, err := device(o, i, addr, kind[i], roots)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

func checkShare(what string, v float64) error {
	if v < 0 || v > 1 || math.IsNaN(v) {
		return fmt.Errorf("generate fleet: %s share %v outside 0-1", what, v)
	}
	return nil
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func device(o Options, i int, addr netip.Addr, kind byte, roots []string) (firmware.Config, error) {
	r := rand.New(rand.NewPCG(uint64(o.Seed), uint64(i)+1))
	var u [16]byte
	for j := range u {
		u[j] = byte(r.Uint32())
	}
	u[6] = u[6]&0x0F | 0x40 // version 4 in canonical text form
	u[8] = u[8]&0x3F | 0x80
	uuid := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])

	oui := ouis[r.IntN(len(ouis))]
	mac := fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", oui[0], oui[1], oui[2], byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()))

	var realm [16]byte
	for j := range realm {
		realm[j] = byte(r.Uint32())
	}

	host := make([]byte, 7)
	for j := range host {
		host[j] = alnum[r.IntN(len(alnum))]
	}

	c := firmware.Config{
		UUID:         uuid,
		MAC:          mac,
		IP:           addr.String(),
		Hostname:     "DESKTOP-" + string(host),
		DNSSuffix:    strings.ToLower(o.DNSSuffix),
		AMTVersion:   pickVersion(r),
		SKU:          SKU,
		Realm:        "Digest:" + strings.ToUpper(hex.EncodeToString(realm[:])),
		MEBxPassword: FactoryMEBxPassword,
		TrustedRoots: roots,
		Seed:         int64(r.Uint64() >> 1),
	}
	switch kind {
	case 'l':
		c.Legacy = true
		c.AMTVersion = legacyVersions[r.IntN(len(legacyVersions))]
		stem := make([]byte, amt.PIDLength-1)
		for j := range stem {
			stem[j] = alnum[r.IntN(len(alnum))]
		}
		pid, err := amt.NewPID(string(stem))
		if err != nil {
			return c, fmt.Errorf("generate fleet: device %d PID: %w", i, err)
		}
		c.PID = pid
	case 'p':
		c.Provisioned = true
		c.AdminUser = o.AdminUser
		c.AdminPassword = o.AdminPassword
		c.MEBxPassword = strongPassword(r)
	}
	return c, nil
}

func pickVersion(r *rand.Rand) string {
	total := 0
	for _, rel := range releases {
		total += rel.weight
	}
	n := r.IntN(total)
	for _, rel := range releases {
		if n < rel.weight {
			return rel.versions[r.IntN(len(rel.versions))]
		}
		n -= rel.weight
	}
	return releases[len(releases)-1].versions[0]
}

// strongPassword satisfies RPS's and MeshCentral's MEBx/AMT password rules
// (PROTOCOL.md §7.4): 12 characters with upper, lower, digit and symbol.
func strongPassword(r *rand.Rand) string {
	const lower, upper, digit, sym = "abcdefghijkmnpqrstuvwxyz", "ABCDEFGHJKLMNPQRSTUVWXYZ", "23456789", "!@#$%^*"
	b := []byte{upper[r.IntN(len(upper))], lower[r.IntN(len(lower))], digit[r.IntN(len(digit))], sym[r.IntN(len(sym))]}
	for len(b) < 12 {
		set := lower + upper + digit
		b = append(b, set[r.IntN(len(set))])
	}
	r.Shuffle(len(b), func(i, j int) { b[i], b[j] = b[j], b[i] })
	return string(b)
}
