package amt

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"strings"
)

// HashAlg is the hash type byte of a v3 hello entry (PROTOCOL.md §4.4).
type HashAlg uint8

// Hash types AMT puts in a PKI hello.
const (
	HashSHA1   HashAlg = 1
	HashSHA256 HashAlg = 2
	HashSHA384 HashAlg = 3
)

// Size is the digest length firmware uses for the algorithm, 0 if unknown.
func (a HashAlg) Size() int {
	switch a {
	case HashSHA1:
		return sha1.Size
	case HashSHA256:
		return sha256.Size
	case HashSHA384:
		return sha512.Size384
	}
	return 0
}

// String is the lower-case name used in events, flags and the API.
func (a HashAlg) String() string {
	switch a {
	case HashSHA1:
		return "sha1"
	case HashSHA256:
		return "sha256"
	case HashSHA384:
		return "sha384"
	}
	return fmt.Sprintf("hash(%d)", uint8(a))
}

// ParseHashAlg accepts "sha1", "sha256", "sha384" (also with a dash).
func ParseHashAlg(s string) (HashAlg, error) {
	switch strings.ReplaceAll(strings.ToLower(s), "-", "") {
	case "sha1":
		return HashSHA1, nil
	case "sha256":
		return HashSHA256, nil
	case "sha384":
		return HashSHA384, nil
	}
	return 0, fmt.Errorf("unknown hash algorithm %q (want sha1, sha256 or sha384)", s)
}

// RootHash is the fingerprint of a root certificate trusted for remote
// configuration, as listed in a v3 hello.
type RootHash struct {
	Alg HashAlg
	Sum []byte
}

// String renders "alg:hex", the form `--pki-hash` and `--trust-hash` take.
func (h RootHash) String() string { return h.Alg.String() + ":" + hex.EncodeToString(h.Sum) }

// Hex is the lower-case hex digest.
func (h RootHash) Hex() string { return hex.EncodeToString(h.Sum) }

// Equal compares algorithm and digest.
func (h RootHash) Equal(o RootHash) bool {
	return h.Alg == o.Alg && string(h.Sum) == string(o.Sum)
}

// ParseRootHash reads "alg:hex". A bare hex string is accepted too, with the
// algorithm taken from its length (40 → SHA-1, 64 → SHA-256, 96 → SHA-384) as
// RPS does (PROTOCOL.md §6.2).
func ParseRootHash(s string) (RootHash, error) {
	alg, hx, found := strings.Cut(s, ":")
	if !found {
		hx = alg
		switch len(hx) {
		case 40:
			alg = "sha1"
		case 64:
			alg = "sha256"
		case 96:
			alg = "sha384"
		default:
			return RootHash{}, fmt.Errorf("root hash %q: want ALG:HEX or 40/64/96 hex digits", s)
		}
	}
	a, err := ParseHashAlg(alg)
	if err != nil {
		return RootHash{}, fmt.Errorf("root hash %q: %w", s, err)
	}
	sum, err := hex.DecodeString(hx)
	if err != nil {
		return RootHash{}, fmt.Errorf("root hash %q: %w", s, err)
	}
	if len(sum) != a.Size() {
		return RootHash{}, fmt.Errorf("root hash %q: %s digest is %d bytes, got %d", s, a, a.Size(), len(sum))
	}
	return RootHash{Alg: a, Sum: sum}, nil
}

// HashCertificate returns the fingerprint of a DER certificate with alg.
func HashCertificate(alg HashAlg, der []byte) RootHash {
	var sum []byte
	switch alg {
	case HashSHA1:
		s := sha1.Sum(der)
		sum = s[:]
	case HashSHA384:
		s := sha512.Sum384(der)
		sum = s[:]
	default:
		alg = HashSHA256
		s := sha256.Sum256(der)
		sum = s[:]
	}
	return RootHash{Alg: alg, Sum: sum}
}
