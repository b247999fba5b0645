package certauthority_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/store/storetest"
	ca "github.com/amtprov/amtprov/services/certauthority"
	"github.com/amtprov/amtprov/tools/amtsim"
)

// simAddr is the simulated device of this package's tests, on a loopback
// address no other package uses.
const simAddr = "127.18.0.1"

// A development chain is what simulated setup-mode firmware accepts
// (PROTOCOL.md §6.1: mutual TLS on 16993, chain checked by amtsim's
// pkicheck), and only for devices in its suffix.
func TestDevChainAcceptedBySimulatedFirmware(t *testing.T) {
	pool := storetest.New(t)
	keys := keyring(t)
	ctx := context.Background()
	root, err := ca.EnsureDevDomain(ctx, pool, keys, testSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.EnsureDevDomain(ctx, pool, keys, "other.example.org"); err != nil {
		t.Fatal(err)
	}
	doms, err := ca.LoadProvisioningDomains(ctx, pool, keys)
	if err != nil {
		t.Fatal(err)
	}
	chains := map[string]tls.Certificate{}
	for _, d := range doms {
		chains[d.Suffix] = d.Certificate
	}

	base := netip.MustParseAddr(simAddr)
	fleet, err := amtsim.Start(ctx, amtsim.Options{
		Devices: 1, Seed: 1, Base: base, Range: netip.PrefixFrom(base, 24).Masked(),
		ProvisionServer: "127.18.0.254:9", // nobody: hellos are not the point here
		TrustHashes:     []amt.RootHash{root},
		DNSSuffix:       "site1." + testSuffix,
		RMCPPort:        16623,
	})
	if err != nil {
		t.Fatalf("simulator: %v", err)
	}
	t.Cleanup(func() { _ = fleet.Close() })

	dev := fleet.Devices()[0]
	tests := []struct {
		suffix string
		rule   string // "" = accepted
	}{
		{testSuffix, ""},
		{"other.example.org", "untrusted_root"},
	}
	for _, tc := range tests {
		t.Run(tc.suffix, func(t *testing.T) {
			before := len(dev.TLSRejections())
			status, err := setupHandshake(net.JoinHostPort(simAddr, "16993"), chains[tc.suffix])
			rej := dev.TLSRejections()
			if tc.rule == "" {
				if err != nil || len(rej) != before {
					t.Fatalf("device refused the dev chain: %v %q", err, rej)
				}
				return
			}
			if err == nil {
				t.Fatalf("device accepted a chain it must refuse (HTTP %d)", status)
			}
			if len(rej) == 0 || !strings.HasPrefix(rej[len(rej)-1], tc.rule) {
				t.Fatalf("refusal reasons %q, want %s", rej, tc.rule)
			}
		})
	}
}

// setupHandshake connects as a provisioning server (TLS 1.2, as setup-mode
// AMT speaks) presenting chain, and sends one request.
func setupHandshake(addr string, chain tls.Certificate) (int, error) {
	cfg := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, Certificates: []tls.Certificate{chain}} // AMT's own certificate is self-signed in setup mode
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(&d, "tcp", addr, cfg)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
