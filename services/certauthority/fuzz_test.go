package certauthority

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"math/big"
	"testing"

	"github.com/amtprov/amtprov/libs/admin"
)

// FuzzParsePublicKey: the public key of a sign request is network input.
// Any bytes give a key or an *admin.Error with a key code, never a panic.
func FuzzParsePublicKey(f *testing.F) {
	// A modulus-shaped number is enough for the parser; generating a real
	// RSA key in every fuzz worker would dominate a short run.
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 2048))
	if err != nil {
		f.Fatal(err)
	}
	n.SetBit(n, 2047, 1)
	pub := &rsa.PublicKey{N: n.SetBit(n, 0, 1), E: 65537}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		f.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	ecSPKI, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(x509.MarshalPKCS1PublicKey(pub))
	f.Add(spki)
	f.Add(ecSPKI)
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, der []byte) {
		pub, err := parsePublicKey(der, 2048)
		if err != nil {
			switch admin.CodeOf(err) {
			case CodeKeyInvalid, CodeKeyTooSmall:
			default:
				t.Fatalf("error without a key code: %v", err)
			}
			return
		}
		if pub == nil {
			t.Fatal("nil key without an error")
		}
	})
}

func FuzzDomainMatches(f *testing.F) {
	f.Add("intel.vprodemo.com", "vprodemo.com")
	f.Add("*.a.co.uk", "b.a.co.uk")
	f.Fuzz(func(t *testing.T, name, suffix string) {
		if DomainMatches(name, suffix) && NormalizeName(name) == "" {
			t.Fatal("empty name matched")
		}
	})
}
