package certauthority

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/amt"
)

// OIDIntelSetup is the Intel AMT remote-configuration EKU (PROTOCOL.md §6.1 3a).
var OIDIntelSetup = asn1.ObjectIdentifier{2, 16, 840, 1, 113741, 1, 2, 3}

// SetupOU is the Subject OU that marks a provisioning certificate, matched
// case-sensitively by firmware (PROTOCOL.md §6.1 3a).
const SetupOU = "Intel(R) Client Setup Certificate"

// maxRSABits bounds the work a hostile sign request can cause.
const maxRSABits = 8192

// parsePublicKey reads a DER public key: SubjectPublicKeyInfo or PKCS#1
// RSAPublicKey (AMT's DERKey). It returns a *KeyError-shaped admin error.
func parsePublicKey(der []byte, minRSABits int) (crypto.PublicKey, error) {
	var pub crypto.PublicKey
	if k, err := x509.ParsePKIXPublicKey(der); err == nil {
		pub = k
	} else if k, err := x509.ParsePKCS1PublicKey(der); err == nil {
		pub = k
	} else {
		return nil, admin.Errorf(CodeKeyInvalid, "public_key is neither a SubjectPublicKeyInfo nor a PKCS#1 RSAPublicKey")
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits < minRSABits {
			return nil, admin.Errorf(CodeKeyTooSmall, "RSA key has %d bits, at least %d required", bits, minRSABits)
		}
		if bits > maxRSABits {
			return nil, admin.Errorf(CodeKeyInvalid, "RSA key has %d bits, at most %d accepted", bits, maxRSABits)
		}
		return k, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, admin.Errorf(CodeKeyInvalid, "ECDSA key on %s; P-256 or P-384 required", k.Curve.Params().Name)
		}
		return k, nil
	default:
		return nil, admin.Errorf(CodeKeyInvalid, "unsupported public key type %T; RSA or ECDSA required", pub)
	}
}

// newSerial returns a random positive 127-bit serial number (RFC 5280: at
// most 20 octets, positive; unpredictable as CA/B requires).
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func serialHex(n *big.Int) string { return fmt.Sprintf("%032x", n) }

func fingerprintSHA256(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

func fingerprintSHA1(der []byte) string {
	s := sha1.Sum(der)
	return hex.EncodeToString(s[:])
}

// RootHashes are the fingerprints a device would list for a root certificate.
func rootHashes(der []byte) (sha256Hash, sha1Hash amt.RootHash) {
	return amt.HashCertificate(amt.HashSHA256, der), amt.HashCertificate(amt.HashSHA1, der)
}

// encodeChainPEM renders DER certificates as concatenated PEM blocks.
func encodeChainPEM(ders [][]byte) string {
	var b strings.Builder
	for _, d := range ders {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: d}) // writing to a strings.Builder cannot fail
	}
	return b.String()
}

// decodeChainPEM parses what encodeChainPEM wrote.
func decodeChainPEM(s string) ([][]byte, error) {
	var out [][]byte
	rest := []byte(s)
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q in chain", blk.Type)
		}
		out = append(out, blk.Bytes)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate in chain PEM")
	}
	return out, nil
}

// publicKeysEqual compares a private key's public half with a certificate key.
func publicKeysEqual(priv crypto.PrivateKey, pub crypto.PublicKey) bool {
	s, ok := priv.(crypto.Signer)
	if !ok {
		return false
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := s.Public().(equaler)
	return ok && e.Equal(pub)
}
