package wsmanconformance_test

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/wsman"
)

// TestRemoteConfiguration runs a whole TLS-PKI remote configuration
// (PROTOCOL.md §6.3) with the wsman client against a simulated device in
// setup mode: provisioning chain as TLS client certificate, reads, MEBx
// and admin passwords, host name, clock, device TLS certificate, features,
// CommitChanges; then reconnects with the pinned certificate and digest and
// reads everything back.
func TestRemoteConfiguration(t *testing.T) {
	provCA := newCA(t, "wsman conformance provisioning root")
	devCA := newCA(t, "wsman conformance device CA")
	o := fleetOptions(2, 0)
	o.TrustHashes = []amt.RootHash{provCA.hash()}
	f := startFleet(t, o)
	dev, other := f.Devices()[0], f.Devices()[1]
	cfg := dev.Config()
	ctx := testContext(t)

	var setupPeer *x509.Certificate
	setup := newClient(t, wsman.Config{
		Address: deviceAddr(dev, tlsPort),
		TLS: wsman.SetupTLSConfig(provCA.provisioningChain(t, "prov.example.com"), func(c *x509.Certificate) error {
			setupPeer = c
			return nil
		}),
	})

	// §6.3 step 1: what the provisioner reads first.
	gs, err := setup.GeneralSettings(ctx)
	if err != nil {
		t.Fatalf("GeneralSettings over the setup session: %v (device refused: %q)", err, dev.TLSRejections())
	}
	if gs.DigestRealm != cfg.Realm {
		t.Fatalf("realm %q, want %q", gs.DigestRealm, cfg.Realm)
	}
	if setupPeer == nil {
		t.Fatal("the setup-mode device certificate was not captured")
	}
	ids, err := setup.SoftwareIdentities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ver, ok := wsman.FirmwareVersionOf(ids)
	if !ok || !strings.HasPrefix(cfg.AMTVersion, ver.Version) || ver.Full() != cfg.AMTVersion {
		t.Fatalf("firmware version %+v, device runs %s", ver, cfg.AMTVersion)
	}
	sc, err := setup.SetupAndConfiguration(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sc.ProvisioningState != amt.InProvisioning {
		t.Fatalf("provisioning state %v, want in", sc.ProvisioningState)
	}
	u, err := setup.GetUUID(ctx)
	if err != nil || u != dev.UUID() {
		t.Fatalf("GetUuid = %s, %v; want %s", u, err, dev.UUID())
	}
	pkg, err := setup.ComputerSystemPackage(ctx)
	if err != nil || pkg.UUID != dev.UUID() {
		t.Fatalf("PlatformGUID UUID = %s, %v; want %s", pkg.UUID, err, dev.UUID())
	}

	// A refused MEBx password comes back as a typed, named ReturnValue.
	err = setup.SetMEBxPassword(ctx, "weak")
	var re *wsman.ReturnError
	if !errors.As(err, &re) || re.Name != "INVALID_PASSWORD" || re.ReturnValue != 2054 {
		t.Fatalf("weak MEBx password: err = %v, want ReturnError INVALID_PASSWORD", err)
	}
	// CommitChanges before the passwords are set: DATA_MISSING (§6.1 item 5).
	if err := setup.CommitChanges(ctx); !errors.As(err, &re) || re.Name != "DATA_MISSING" {
		t.Fatalf("early commit: err = %v, want ReturnError DATA_MISSING", err)
	}

	// §6.3 steps 2-4.
	const adminPass = "Adm1n-Conf0rm!"
	if err := setup.SetMEBxPassword(ctx, "N3w-MEBx!pw"); err != nil {
		t.Fatal(err)
	}
	if err := setup.SetAdminACLEntryEx(ctx, "admin", gs.DigestRealm, adminPass); err != nil {
		t.Fatal(err)
	}
	gs.HostName, gs.DomainName = "amt-conformance", cfg.DNSSuffix
	if _, err := setup.PutGeneralSettings(ctx, gs); err != nil {
		t.Fatal(err)
	}
	tm1 := time.Now()
	ta0, err := setup.LowAccuracyTime(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := ta0.Sub(tm1); d > time.Minute || d < -time.Minute {
		t.Fatalf("device clock %v is %v off", ta0, d)
	}
	if err := setup.SetHighAccuracyTime(ctx, ta0, tm1, time.Now()); err != nil {
		t.Fatal(err)
	}

	// §6.3 step 5: key pair on the device, certificate from our CA,
	// credential context, TLS on for the network interface.
	keyRef, err := setup.GenerateKeyPair(ctx, wsman.KeyAlgorithmRSA, wsman.KeyLength2048)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := setup.KeyPairs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var der []byte
	for _, k := range keys {
		if k.InstanceID == keyRef.Selector("InstanceID") {
			der = k.DERKey
		}
	}
	if der == nil {
		t.Fatalf("key pair %q not among %d enumerated", keyRef.Selector("InstanceID"), len(keys))
	}
	deviceCert := devCA.deviceCertificate(t, rsaPublicKey(t, der), "IntelAMT-"+strings.ReplaceAll(cfg.MAC, ":", ""))
	certRef, err := setup.AddCertificate(ctx, deviceCert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup.AddTrustedRootCertificate(ctx, devCA.cert.Raw); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.AddCertificate(ctx, deviceCert); !errors.As(err, &re) || re.Name != "DUPLICATE" {
		t.Fatalf("adding the certificate twice: err = %v, want ReturnError DUPLICATE", err)
	}
	if _, err := setup.CreateTLSCredentialContext(ctx, certRef.Selector("InstanceID")); err != nil {
		t.Fatal(err)
	}
	// A second context is a SOAP fault, typed.
	_, err = setup.CreateTLSCredentialContext(ctx, certRef.Selector("InstanceID"))
	var fault *wsman.Fault
	if !errors.As(err, &fault) || fault.SubcodeLocal() != "AlreadyExists" {
		t.Fatalf("second credential context: err = %v, want Fault AlreadyExists", err)
	}
	ctxs, err := setup.TLSCredentialContexts(ctx)
	if err != nil || len(ctxs) != 1 || ctxs[0].CertificateInstanceID() != certRef.Selector("InstanceID") {
		t.Fatalf("credential contexts %+v, %v", ctxs, err)
	}
	// The Put path (a context already exists), keyed by the enumerated one.
	if err := setup.PutTLSCredentialContext(ctx, certRef.Selector("InstanceID"), ctxs[0]); err != nil {
		t.Fatalf("Put of the existing credential context: %v", err)
	}
	certs, err := setup.PublicKeyCertificates(ctx)
	if err != nil || len(certs) != 2 {
		t.Fatalf("certificates %d, %v; want 2", len(certs), err)
	}
	if _, err := setup.PutTLSSettingData(ctx, wsman.TLSSettingData{InstanceID: wsman.TLSRemoteInstanceID, Enabled: true}); err != nil {
		t.Fatal(err)
	}

	// §7.7: SOL+IDER, KVM, listener on, consent for KVM only.
	if err := setup.RequestRedirectionStateChange(ctx, wsman.RedirectionState(true, true)); err != nil {
		t.Fatal(err)
	}
	if err := setup.RequestKVMStateChange(ctx, wsman.KVMEnable); err != nil {
		t.Fatal(err)
	}
	rs, err := setup.RedirectionService(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs.ListenerEnabled = true
	if _, err := setup.PutRedirectionService(ctx, rs); err != nil {
		t.Fatal(err)
	}
	oi, err := setup.OptInService(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oi.OptInRequired = wsman.OptInKVM
	if _, err := setup.PutOptInService(ctx, oi); err != nil {
		t.Fatal(err)
	}

	// §6.3 step 6.
	if err := setup.CommitChanges(ctx); err != nil {
		t.Fatal(err)
	}
	if dev.State() != amt.PostProvisioning || dev.ControlMode() != amt.ControlACM || !dev.TLSEnabled() {
		t.Fatalf("after commit: state %v, mode %v, TLS %v", dev.State(), dev.ControlMode(), dev.TLSEnabled())
	}
	if other.State() != amt.InProvisioning {
		t.Fatal("the neighbour changed state")
	}

	// The setup session carries no credentials: now the device wants digest.
	setup.Close()
	if _, err := setup.GeneralSettings(ctx); !errors.Is(err, wsman.ErrUnauthorized) {
		t.Fatalf("setup client after commit: err = %v, want ErrUnauthorized", err)
	}

	// Reconnect as the provisioner verifies (§6.3 step 6, ARCHITECTURE.md
	// step 8): pinned certificate, admin digest.
	pin, err := wsman.PinnedTLSConfig(wsman.CertificateSHA256(deviceCert))
	if err != nil {
		t.Fatal(err)
	}
	admin := newClient(t, wsman.Config{Address: deviceAddr(dev, tlsPort), TLS: pin, Username: "admin", Password: adminPass})
	gs2, err := admin.GeneralSettings(ctx)
	if err != nil {
		t.Fatalf("pinned + digest: %v", err)
	}
	if gs2.HostName != "amt-conformance" || gs2.DomainName != cfg.DNSSuffix || gs2.DigestRealm != cfg.Realm {
		t.Fatalf("general settings after commit: %+v", gs2)
	}
	sc2, err := admin.SetupAndConfiguration(ctx)
	if err != nil || sc2.ProvisioningState != amt.PostProvisioning || sc2.ProvisioningMode != wsman.ProvisioningModeACM {
		t.Fatalf("setup service after commit: %+v, %v", sc2, err)
	}
	hb, err := admin.HostBasedSetupService(ctx)
	if err != nil || hb.CurrentControlMode != amt.ControlACM {
		t.Fatalf("host-based setup service: %+v, %v", hb, err)
	}
	tlss, err := admin.TLSSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range tlss {
		if s.InstanceID == wsman.TLSRemoteInstanceID && (!s.Enabled || s.AcceptNonSecureConnections) {
			t.Fatalf("remote TLS settings after commit: %+v", s)
		}
	}
	rs2, err := admin.RedirectionService(ctx)
	if err != nil || !rs2.SOL() || !rs2.IDER() || !rs2.ListenerEnabled {
		t.Fatalf("redirection after commit: %+v, %v", rs2, err)
	}
	kvm, err := admin.KVMRedirectionSAP(ctx)
	if err != nil || kvm.EnabledState != 2 {
		t.Fatalf("KVM after commit: %+v, %v", kvm, err)
	}
	oi2, err := admin.OptInService(ctx)
	if err != nil || oi2.OptInRequired != wsman.OptInKVM {
		t.Fatalf("opt-in after commit: %+v, %v", oi2, err)
	}
	eth, err := admin.EthernetPortSettings(ctx)
	if err != nil || len(eth) == 0 {
		t.Fatalf("ethernet ports: %+v, %v", eth, err)
	}
	if mac, err := eth[0].MAC(); err != nil || mac.String() != strings.ToLower(cfg.MAC) {
		t.Fatalf("wired MAC %v (%v), want %s", mac, err, cfg.MAC)
	}

	// What must fail after commit, and how.
	wrongPin := make([]byte, 32)
	wp, _ := wsman.PinnedTLSConfig(wrongPin)
	_, err = newClient(t, wsman.Config{Address: deviceAddr(dev, tlsPort), TLS: wp, Username: "admin", Password: adminPass}).GeneralSettings(ctx)
	var te *wsman.TLSError
	if !errors.As(err, &te) || !errors.Is(err, wsman.ErrPinMismatch) {
		t.Fatalf("wrong pin: err = %v, want TLSError with ErrPinMismatch", err)
	}
	_, err = newClient(t, wsman.Config{Address: deviceAddr(dev, tlsPort), TLS: pin, Username: "admin", Password: "not-it"}).GeneralSettings(ctx)
	if !errors.Is(err, wsman.ErrUnauthorized) || strings.Contains(err.Error(), adminPass) {
		t.Fatalf("wrong password: err = %v, want ErrUnauthorized", err)
	}
	// TLS without non-secure connections: plain 16992 is closed (§7.6).
	_, err = newClient(t, wsman.Config{Address: deviceAddr(dev, httpPort), Username: "admin", Password: adminPass, Timeout: 3 * time.Second}).GeneralSettings(ctx)
	if err == nil || !wsman.Retryable(err) {
		t.Fatalf("plain port after TLS-only commit: err = %v, want unreachable/connection lost", err)
	}
}
