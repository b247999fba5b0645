package inventory

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/services/inventory/internal/pgstore"
	"github.com/amtprov/amtprov/services/inventory/internal/record"
)

// TestSucceededRecordsWhatTheDeviceReported: a provisioning.succeeded
// event's device block sets the capability config group (control mode,
// TLS, features), the firmware version and the identification (host,
// domain, FQDN); an older event never overwrites it.
func TestSucceededRecordsWhatTheDeviceReported(t *testing.T) {
	pool := storetest.New(t)
	repo := pgstore.New(pool)
	ctx := context.Background()
	apply := func(p *events.Provisioning, id string) {
		t.Helper()
		u, err := decodeAndHandle(envelope(t, p, id))
		if err != nil {
			t.Fatal(err)
		}
		if err := repo.Apply(ctx, []record.Update{*u}); err != nil {
			t.Fatal(err)
		}
	}
	dev := &events.ProvisionedDevice{AMTVersion: "16.1.25.2124", ControlMode: "acm", TLSEnabled: true, SOL: true, KVM: true,
		Hostname: "amt-4bac9510", Domain: "corp.example.com"}
	apply(&events.Provisioning{Event: events.ProvisioningSucceeded, UUID: uuidA, JobID: "7", Attempt: 1, Profile: "default", At: t0, Device: dev}, "e2")
	older := *dev
	older.TLSEnabled, older.ControlMode, older.Hostname = false, "none", "old"
	apply(&events.Provisioning{Event: events.ProvisioningSucceeded, UUID: uuidA, JobID: "6", Attempt: 1, At: t0.Add(-time.Hour), Device: &older}, "e1")

	var (
		mode, version, host, domain, fqdn, state string
		tls, sol, ider, kvm                      bool
	)
	if err := pool.QueryRow(ctx, `SELECT c.control_mode, c.tls_enabled, c.sol, c.ider, c.kvm, c.amt_version, c.provisioning_state,
		i.hostname, i.domain, i.fqdn FROM oob_capability c JOIN device_identification i USING (uuid) WHERE uuid = $1`, uuidA).
		Scan(&mode, &tls, &sol, &ider, &kvm, &version, &state, &host, &domain, &fqdn); err != nil {
		t.Fatal(err)
	}
	if mode != "acm" || !tls || !sol || ider || !kvm || version != "16.1.25.2124" || state != "post" ||
		host != "amt-4bac9510" || domain != "corp.example.com" || fqdn != "amt-4bac9510.corp.example.com" {
		t.Fatalf("stored %s tls=%v sol=%v ider=%v kvm=%v %s %s %s %s %s", mode, tls, sol, ider, kvm, version, state, host, domain, fqdn)
	}

	bad := *dev
	bad.ControlMode = "admin"
	_, err := decodeAndHandle(envelope(t, &events.Provisioning{Event: events.ProvisioningSucceeded, UUID: uuidA, JobID: "8", At: t0, Device: &bad}, "e3"))
	if !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("control mode outside the schema: %v", err)
	}
}
