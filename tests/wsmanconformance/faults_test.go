package wsmanconformance_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/wsman"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
)

// TestSimulatedFaults maps each fault the simulator injects to the error a
// provisioner classifies: retryable or not, and of which type.
func TestSimulatedFaults(t *testing.T) {
	provCA := newCA(t, "wsman conformance faults root")
	o := fleetOptions(6, 2)
	o.TrustHashes = []amt.RootHash{provCA.hash()}
	o.SlowDelay = 20 * time.Second
	f := startFleet(t, o)
	chain := provCA.provisioningChain(t, "prov.example.com")
	ctx := testContext(t)
	setupClient := func(d *firmware.Device, timeout time.Duration) *wsman.Client {
		return newClient(t, wsman.Config{Address: deviceAddr(d, tlsPort), TLS: wsman.SetupTLSConfig(chain, nil), Timeout: timeout, DialTimeout: timeout})
	}
	tests := []struct {
		name  string
		fault firmware.FaultKind
		call  func(c *wsman.Client) error
		check func(t *testing.T, err error)
	}{
		{"transient 5xx is a retryable HTTPError", firmware.FaultTransient5xx,
			func(c *wsman.Client) error { _, err := c.GeneralSettings(ctx); return err },
			func(t *testing.T, err error) {
				var he *wsman.HTTPError
				if !errors.As(err, &he) || he.Status != 503 || !wsman.Retryable(err) {
					t.Fatalf("err = %v, want retryable HTTPError 503", err)
				}
			}},
		{"refused provisioning certificate is a TLSError", firmware.FaultCertRefused,
			func(c *wsman.Client) error { _, err := c.GeneralSettings(ctx); return err },
			func(t *testing.T, err error) {
				var te *wsman.TLSError
				if !errors.As(err, &te) || wsman.Retryable(err) {
					t.Fatalf("err = %v, want non-retryable TLSError", err)
				}
			}},
		{"unreachable device", firmware.FaultUnreachable,
			func(c *wsman.Client) error { _, err := c.GeneralSettings(ctx); return err },
			func(t *testing.T, err error) {
				if !wsman.Retryable(err) || !(errors.Is(err, wsman.ErrUnreachable) || errors.Is(err, wsman.ErrConnectionLost)) {
					t.Fatalf("err = %v, want ErrUnreachable or ErrConnectionLost", err)
				}
			}},
		{"slow device hits the call deadline", firmware.FaultSlow,
			func(c *wsman.Client) error { _, err := c.GeneralSettings(ctx); return err },
			func(t *testing.T, err error) {
				if !errors.Is(err, wsman.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v, want ErrUnreachable with DeadlineExceeded", err)
				}
			}},
		{"reboot at commit loses the connection", firmware.FaultReboot,
			func(c *wsman.Client) error {
				if err := c.SetMEBxPassword(ctx, "N3w-MEBx!pw"); err != nil {
					return err
				}
				gs, err := c.GeneralSettings(ctx)
				if err != nil {
					return err
				}
				if err := c.SetAdminACLEntryEx(ctx, "admin", gs.DigestRealm, "Adm1n-Pass!"); err != nil {
					return err
				}
				return c.CommitChanges(ctx)
			},
			func(t *testing.T, err error) {
				if !errors.Is(err, wsman.ErrConnectionLost) {
					t.Fatalf("err = %v, want ErrConnectionLost (outcome unknown: read back)", err)
				}
			}},
		{"unknown class is a SOAP fault", "",
			func(c *wsman.Client) error { _, err := c.Get(ctx, "AMT_NoSuchClass"); return err },
			func(t *testing.T, err error) {
				var fault *wsman.Fault
				if !errors.As(err, &fault) || fault.SubcodeLocal() != "DestinationUnreachable" || wsman.Retryable(err) {
					t.Fatalf("err = %v, want Fault DestinationUnreachable", err)
				}
			}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := f.Devices()[i]
			if tc.fault != "" {
				if err := f.InjectFault(d.UUID().String(), tc.fault, time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			err := tc.call(setupClient(d, 5*time.Second))
			if err == nil {
				t.Fatal("no error")
			}
			tc.check(t, err)
		})
	}
	// The device that rebooted kept nothing: the provisioner's read-back
	// after ErrConnectionLost sees setup mode still.
	if st := f.Devices()[4].State(); st != amt.InProvisioning {
		t.Fatalf("rebooted device state %v, want in", st)
	}
}
