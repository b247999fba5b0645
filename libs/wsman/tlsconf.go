package wsman

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
)

// SetupTLSConfig is the TLS configuration for TLS-PKI remote configuration
// (PROTOCOL.md §6.1, §6.3): the provisioning chain (leaf first, up to the
// root whose hash the device trusts) goes out as the client certificate,
// and the device's certificate is not verified by chain (setup-mode
// firmware presents a self-signed or ODCA certificate, §6.1 item 2).
// Verification is left to the explicit hook onPeer, which receives the
// device's leaf certificate on every handshake: capture it for the record,
// or return an error to refuse it (e.g. to check an ODCA chain). onPeer may
// be nil. Go's default minimum version (TLS 1.2, what AMT 12.0+ speaks) is
// kept: pre-12.0 firmware (TLS 1.0) needs MinVersion lowered by the caller.
func SetupTLSConfig(chain tls.Certificate, onPeer func(*x509.Certificate) error) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{chain},
		// The device certificate cannot chain to anything we know; the
		// VerifyConnection hook below is the check.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("device presented no certificate")
			}
			if onPeer == nil {
				return nil
			}
			return onPeer(cs.PeerCertificates[0])
		},
	}
}

// CaptureTLSConfig is for identifying a device whose certificate is not
// known yet (discovery of devices provisioned by another console, §9):
// no client certificate, no chain verification, the device's leaf handed
// to onPeer (record its SHA-256 to pin it next time; return an error to
// refuse). Use digest credentials with it: the device authenticates the
// caller, nothing authenticates the device, so send nothing secret beyond
// the digest exchange.
func CaptureTLSConfig(onPeer func(*x509.Certificate) error) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("device presented no certificate")
			}
			if onPeer == nil {
				return nil
			}
			return onPeer(cs.PeerCertificates[0])
		},
	}
}

// PinnedTLSConfig is the TLS configuration after commit: the device must
// present the certificate whose DER SHA-256 is sha256Sum (the one the
// provisioner installed, §6.3 step 5); anything else fails the handshake
// with a *TLSError wrapping ErrPinMismatch. Chain validation is not used:
// the pin is stronger and needs no CA in the trust store.
func PinnedTLSConfig(sha256Sum []byte) (*tls.Config, error) {
	if len(sha256Sum) != sha256.Size {
		return nil, fmt.Errorf("pinned TLS config: want a %d-byte SHA-256, got %d bytes: %w", sha256.Size, len(sha256Sum), ErrInvalidArgument)
	}
	pin := append([]byte(nil), sha256Sum...)
	return &tls.Config{
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("device presented no certificate: %w", ErrPinMismatch)
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(got[:], pin) != 1 {
				return fmt.Errorf("got %s, want %s: %w", hex.EncodeToString(got[:]), hex.EncodeToString(pin), ErrPinMismatch)
			}
			return nil
		},
	}, nil
}

// CertificateSHA256 is the SHA-256 of a certificate's DER, the value to pin.
func CertificateSHA256(der []byte) []byte {
	sum := sha256.Sum256(der)
	return sum[:]
}
