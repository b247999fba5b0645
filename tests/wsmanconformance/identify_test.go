package wsmanconformance_test

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/wsman"
)

// TestIdentifyProvisionedDevice identifies devices provisioned by another
// console, as discovery does with operator-supplied credentials: capture
// the unknown TLS certificate, read UUID, version, state, control mode,
// host name and MAC with digest; then pin the captured certificate.
func TestIdentifyProvisionedDevice(t *testing.T) {
	const password = "0ther-C0nsole!"
	o := fleetOptions(2, 1)
	o.ProvisionedShare, o.AdminPassword = 1, password
	f := startFleet(t, o)
	ctx := testContext(t)

	for _, dev := range f.Devices() {
		cfg := dev.Config()
		t.Run(cfg.IP, func(t *testing.T) {
			var (
				mu   sync.Mutex
				seen *x509.Certificate
			)
			c := newClient(t, wsman.Config{
				Address: deviceAddr(dev, tlsPort),
				TLS: wsman.CaptureTLSConfig(func(c *x509.Certificate) error {
					mu.Lock()
					defer mu.Unlock()
					seen = c
					return nil
				}),
				Username: "admin", Password: password,
			})
			pkg, err := c.ComputerSystemPackage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if pkg.UUID != dev.UUID() {
				t.Fatalf("PlatformGUID UUID %s, want %s", pkg.UUID, dev.UUID())
			}
			if u, err := c.GetUUID(ctx); err != nil || u != dev.UUID() {
				t.Fatalf("GetUuid %s, %v", u, err)
			}
			ids, err := c.SoftwareIdentities(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := wsman.FirmwareVersionOf(ids); !ok || v.Full() != cfg.AMTVersion || v.SKU == "" {
				t.Fatalf("version %+v, want %s", v, cfg.AMTVersion)
			}
			sc, err := c.SetupAndConfiguration(ctx)
			if err != nil || sc.ProvisioningState != amt.PostProvisioning {
				t.Fatalf("setup service %+v, %v", sc, err)
			}
			hb, err := c.HostBasedSetupService(ctx)
			if err != nil || hb.CurrentControlMode != amt.ControlACM {
				t.Fatalf("control mode %+v, %v", hb, err)
			}
			gs, err := c.GeneralSettings(ctx)
			if err != nil || gs.HostName != cfg.Hostname || gs.DigestRealm != cfg.Realm {
				t.Fatalf("general settings %+v, %v; want host %s", gs, err, cfg.Hostname)
			}
			eth, err := c.EthernetPortSettings(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if mac, err := eth[0].MAC(); err != nil || mac.String() != strings.ToLower(cfg.MAC) {
				t.Fatalf("MAC %v (%v), want %s", mac, err, cfg.MAC)
			}

			// Trust on first use: the captured certificate pins the next session.
			mu.Lock()
			captured := seen
			mu.Unlock()
			if captured == nil {
				t.Fatal("no certificate captured")
			}
			sum := sha256.Sum256(captured.Raw)
			pin, err := wsman.PinnedTLSConfig(sum[:])
			if err != nil {
				t.Fatal(err)
			}
			pinned := newClient(t, wsman.Config{Address: deviceAddr(dev, tlsPort), TLS: pin, Username: "admin", Password: password})
			if _, err := pinned.SetupAndConfiguration(ctx); err != nil {
				t.Fatalf("pinned to the captured certificate: %v", err)
			}

			// Provisioned by another console with non-secure connections
			// allowed: plain 16992 with digest works too (PROTOCOL.md §1).
			plain := newClient(t, wsman.Config{Address: deviceAddr(dev, httpPort), Username: "admin", Password: password})
			if u, err := plain.GetUUID(ctx); err != nil || u != dev.UUID() {
				t.Fatalf("over 16992: %s, %v", u, err)
			}

			// Wrong credentials from the CSV: a clear ErrUnauthorized.
			wrong := newClient(t, wsman.Config{Address: deviceAddr(dev, httpPort), Username: "admin", Password: "guess"})
			if _, err := wrong.GetUUID(ctx); !errors.Is(err, wsman.ErrUnauthorized) {
				t.Fatalf("wrong password: err = %v, want ErrUnauthorized", err)
			}
		})
	}
}
