package firmware

import (
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	gwmamt "github.com/open-amt-cloud-toolkit/go-wsman-messages/pkg/amt"
	"github.com/open-amt-cloud-toolkit/go-wsman-messages/pkg/amt/publickey"
	gwmcim "github.com/open-amt-cloud-toolkit/go-wsman-messages/pkg/cim"
	gwmips "github.com/open-amt-cloud-toolkit/go-wsman-messages/pkg/ips"
)

// session is a setup-mode §6.1 session on a fresh device.
type session struct {
	d   *Device
	c   *http.Client
	url string
	m   gwmamt.Messages
}

func newSession(t *testing.T, mutate func(*Config)) *session {
	t.Helper()
	d := newTestDevice(t, mutate)
	srv := startDevice(t, d)
	return &session{d: d, c: setupClient(provisioningChain(t, newTestCA(t, "root"))), url: srv.URL + "/wsman", m: gwmamt.NewMessages()}
}

func (s *session) do(t *testing.T, msg string) parsed {
	t.Helper()
	status, b, _ := postXML(t, s.c, s.url, msg)
	r := parseResponse(t, b)
	if status != http.StatusOK && r.body.name.Local != "Fault" {
		t.Fatalf("status %d without a fault:\n%s", status, b)
	}
	return r
}

func (s *session) rv(t *testing.T, msg string) int {
	t.Helper()
	r := s.do(t, msg)
	n, err := strconv.Atoi(r.body.mustValue(t, "ReturnValue"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (s *session) stage(t *testing.T) {
	t.Helper()
	for _, msg := range []string{
		s.m.SetupAndConfigurationService.SetMEBXPassword("Mebx-Pa55!"),
		s.m.AuthorizationService.SetAdminACLEntryEx("admin", digestPassword("admin", testRealm, adminPass)),
		s.m.PublicKeyManagementService.GenerateKeyPair(publickey.GenerateKeyPair_INPUT{KeyAlgorithm: 0, KeyLength: 2048}),
	} {
		if got := s.rv(t, msg); got != 0 {
			t.Fatalf("staging: ReturnValue %d for\n%s", got, msg)
		}
	}
}

func (s *session) keyCount(t *testing.T) int {
	t.Helper()
	ctx := s.do(t, s.m.PublicPrivateKeyPair.Enumerate()).body.mustValue(t, "EnumerationContext")
	return len(s.do(t, s.m.PublicPrivateKeyPair.Pull(ctx)).body.child("Items").kids)
}

func TestCommitRequiresPasswords(t *testing.T) {
	tests := []struct {
		name  string
		msgs  func(s *session) []string
		want  int
		state amt.ProvisioningState
	}{
		{"nothing set", func(*session) []string { return nil }, ptDataMissing, amt.InProvisioning},
		{"MEBx only", func(s *session) []string {
			return []string{s.m.SetupAndConfigurationService.SetMEBXPassword("Mebx-Pa55!")}
		}, ptDataMissing, amt.InProvisioning},
		{"admin only", func(s *session) []string {
			return []string{s.m.AuthorizationService.SetAdminACLEntryEx("admin", digestPassword("admin", testRealm, adminPass))}
		}, ptDataMissing, amt.InProvisioning},
		{"TLS enabled without a certificate", func(s *session) []string {
			return []string{s.m.SetupAndConfigurationService.SetMEBXPassword("Mebx-Pa55!"),
				s.m.AuthorizationService.SetAdminACLEntryEx("admin", digestPassword("admin", testRealm, adminPass)), tlsSettingsPut(3, true, false)}
		}, ptDataMissing, amt.InProvisioning},
		{"both passwords", func(s *session) []string {
			return []string{s.m.SetupAndConfigurationService.SetMEBXPassword("Mebx-Pa55!"),
				s.m.AuthorizationService.SetAdminACLEntryEx("admin", digestPassword("admin", testRealm, adminPass))}
		}, ptSuccess, amt.PostProvisioning},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSession(t, nil)
			for _, m := range tc.msgs(s) {
				s.do(t, m)
			}
			if got := s.rv(t, s.m.SetupAndConfigurationService.CommitChanges()); got != tc.want {
				t.Fatalf("CommitChanges = %d, want %d", got, tc.want)
			}
			if s.d.State() != tc.state {
				t.Fatalf("state %v, want %v", s.d.State(), tc.state)
			}
		})
	}
}

func TestRebootBeforeCommitLosesStagedSettings(t *testing.T) {
	s := newSession(t, nil)
	s.stage(t)
	if s.do(t, tlsSettingsPut(3, false, true)).body.name.Local != "AMT_TLSSettingData" {
		t.Fatal("TLS Put failed")
	}
	if n := s.keyCount(t); n != 1 {
		t.Fatalf("%d key pairs staged, want 1", n)
	}
	changed := s.d.Changed()
	s.d.Reboot()
	select {
	case <-changed:
	default:
		t.Error("Reboot did not signal Changed")
	}
	if n := s.keyCount(t); n != 0 {
		t.Errorf("%d key pairs survived the reboot", n)
	}
	if got := s.rv(t, s.m.SetupAndConfigurationService.CommitChanges()); got != ptDataMissing {
		t.Errorf("CommitChanges after reboot = %d, want DATA_MISSING (passwords lost)", got)
	}
	if s.d.State() != amt.InProvisioning {
		t.Errorf("state %v", s.d.State())
	}
}

func TestRebootFaultAtCommit(t *testing.T) {
	s := newSession(t, nil)
	s.stage(t)
	s.d.InjectFault(FaultReboot, time.Now().Add(time.Minute))
	if !s.d.HasFault(FaultReboot) || s.d.HasFault(FaultSlow) {
		t.Fatal("HasFault disagrees with InjectFault")
	}
	req, err := http.NewRequest(http.MethodPost, s.url, strings.NewReader(s.m.SetupAndConfigurationService.CommitChanges()))
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := s.c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("CommitChanges answered %d; a rebooting device drops the connection", resp.StatusCode)
	}
	if s.d.State() != amt.InProvisioning || s.keyCount(t) != 0 {
		t.Fatalf("after reboot: state %v, %d keys", s.d.State(), s.keyCount(t))
	}
	s.d.InjectFault(FaultReboot, time.Now().Add(-time.Second)) // expire it
	s.stage(t)
	if got := s.rv(t, s.m.SetupAndConfigurationService.CommitChanges()); got != 0 {
		t.Fatalf("CommitChanges after the fault = %d", got)
	}
}

func TestUnprovisionAndReset(t *testing.T) {
	s := newSession(t, nil)
	s.stage(t)
	changed := s.d.Changed()
	if got := s.rv(t, s.m.SetupAndConfigurationService.CommitChanges()); got != 0 {
		t.Fatalf("CommitChanges = %d", got)
	}
	<-changed // closed by the commit
	if s.d.State() != amt.PostProvisioning || s.d.Info().State != "post" || s.d.Info().ControlMode != "acm" {
		t.Fatalf("state %v, info %+v", s.d.State(), s.d.Info())
	}
	// After the commit the client certificate no longer authorises; digest does.
	if status, _, _ := postXML(t, s.c, s.url, getXML("AMT_GeneralSettings")); status != http.StatusUnauthorized {
		t.Fatalf("setup session after commit: %d", status)
	}
	nonce := challengeOf(t, s.url, s.c)["nonce"]
	changed = s.d.Changed()
	status, b, _ := postXML(t, s.c, s.url, s.m.SetupAndConfigurationService.Unprovision(1), "Authorization", digestAuth("gwm", "admin", adminPass, testRealm, nonce, "/wsman", 1, nil))
	if status != http.StatusOK || parseResponse(t, b).body.mustValue(t, "ReturnValue") != "0" {
		t.Fatalf("Unprovision: %d\n%s", status, b)
	}
	<-changed
	if s.d.State() != amt.PreProvisioning || s.d.ControlMode() != amt.ControlNone || s.d.TLSEnabled() {
		t.Fatalf("after Unprovision: %v %v tls=%v", s.d.State(), s.d.ControlMode(), s.d.TLSEnabled())
	}
	// Pre-provisioning: neither the setup session nor the old password works.
	if status, _, _ := postXML(t, s.c, s.url, getXML("AMT_GeneralSettings")); status != http.StatusUnauthorized {
		t.Fatalf("setup session in pre-provisioning: %d", status)
	}
	s.d.Reset()
	if s.d.State() != amt.InProvisioning {
		t.Fatalf("Reset: state %v", s.d.State())
	}
	if got := s.do(t, s.m.SetupAndConfigurationService.Get()).body.mustValue(t, "ProvisioningState"); got != "1" {
		t.Fatalf("ProvisioningState after Reset = %s", got)
	}
}

// TestNotPermitted covers calls the state forbids; pre-provisioning is not
// reachable over the network, so the dispatcher is driven directly there.
func TestNotPermitted(t *testing.T) {
	m := gwmamt.NewMessages()
	tests := []struct {
		name  string
		state amt.ProvisioningState
		mode  amt.ControlMode
		msg   string
		want  int
	}{
		{"CommitChanges in pre", amt.PreProvisioning, amt.ControlNone, m.SetupAndConfigurationService.CommitChanges(), ptNotPermitted},
		{"Unprovision in pre", amt.PreProvisioning, amt.ControlNone, m.SetupAndConfigurationService.Unprovision(1), ptNotPermitted},
		{"SetMEBxPassword in pre", amt.PreProvisioning, amt.ControlNone, m.SetupAndConfigurationService.SetMEBXPassword("Mebx-Pa55!"), ptNotPermitted},
		{"SetMEBxPassword in CCM", amt.PostProvisioning, amt.ControlCCM, m.SetupAndConfigurationService.SetMEBXPassword("Mebx-Pa55!"), ptNotPermitted},
		{"Unprovision with mode 2", amt.PostProvisioning, amt.ControlACM, m.SetupAndConfigurationService.Unprovision(2), ptInvalidParameter},
		{"SetMEBxPassword too weak", amt.InProvisioning, amt.ControlNone, m.SetupAndConfigurationService.SetMEBXPassword("password"), ptInvalidPassword},
		{"SetAdminAclEntryEx bad digest", amt.InProvisioning, amt.ControlNone, m.AuthorizationService.SetAdminACLEntryEx("admin", "not-a-digest"), ptInvalidParameter},
		{"SetAdminAclEntryEx long user", amt.InProvisioning, amt.ControlNone, m.AuthorizationService.SetAdminACLEntryEx("administrator-longer", digestPassword("a", testRealm, "b")), ptInvalidParameter},
		{"GenerateKeyPair 1024", amt.InProvisioning, amt.ControlNone, m.PublicKeyManagementService.GenerateKeyPair(publickey.GenerateKeyPair_INPUT{KeyAlgorithm: 0, KeyLength: 1024}), ptInvalidParameter},
		{"AddCertificate not base64", amt.InProvisioning, amt.ControlNone, m.PublicKeyManagementService.AddCertificate("%%%"), ptInvalidCert},
		{"SetHighAccuracyTimeSynch Tm2<Tm1", amt.InProvisioning, amt.ControlNone, m.TimeSynchronizationService.SetHighAccuracyTimeSynch(1, 5, 4), ptInvalidParameter},
		{"RedirectionService state 5", amt.InProvisioning, amt.ControlNone, m.RedirectionService.RequestStateChange(5), ptInvalidParameter},
		{"AdminSetup after provisioning", amt.PostProvisioning, amt.ControlACM, gwmips.NewMessages().HostBasedSetupService.Setup(2, testRealm, "x"), hbsInvalidState},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDevice(t, nil)
			d.fw.state, d.fw.mode = tc.state, tc.mode
			req, err := parseEnvelope([]byte(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			resp, f := d.dispatch(&call{d: d, req: req, ctx: t.Context(), setupSession: true})
			if f != nil {
				t.Fatalf("fault %v", f)
			}
			r := parseResponse(t, envelope(resp, req.messageID, 1))
			if got := r.body.mustValue(t, "ReturnValue"); got != strconv.Itoa(tc.want) {
				t.Fatalf("ReturnValue %s, want %d", got, tc.want)
			}
		})
	}
}

func TestAddCertificateMustMatchAKeyPair(t *testing.T) {
	s := newSession(t, nil)
	s.stage(t)
	ca := newTestCA(t, "device CA")
	// A certificate for a key the device does not hold.
	keys, _ := testKeys()
	foreign := ca.issue(t, &keys[len(keys)-1].PublicKey, pkix.Name{CommonName: "other"}, nil, nil)
	if got := s.rv(t, s.m.PublicKeyManagementService.AddCertificate(base64.StdEncoding.EncodeToString(foreign.Raw))); got != ptCertKeyNotMatch {
		t.Fatalf("AddCertificate of a foreign key = %d, want CERT_KEY_NOT_MATCH (2064)", got)
	}
	// A trusted root must be a CA.
	if got := s.rv(t, s.m.PublicKeyManagementService.AddTrustedRootCertificate(base64.StdEncoding.EncodeToString(foreign.Raw))); got != ptInvalidCert {
		t.Fatalf("AddTrustedRootCertificate of a leaf = %d, want INVALID_CERT", got)
	}
	root := base64.StdEncoding.EncodeToString(ca.cert.Raw)
	if got := s.rv(t, s.m.PublicKeyManagementService.AddTrustedRootCertificate(root)); got != 0 {
		t.Fatalf("AddTrustedRootCertificate = %d", got)
	}
	if got := s.rv(t, s.m.PublicKeyManagementService.AddTrustedRootCertificate(root)); got != ptDuplicate {
		t.Fatalf("second AddTrustedRootCertificate = %d, want DUPLICATE", got)
	}
}

func TestGetUuid(t *testing.T) {
	s := newSession(t, nil)
	r := s.do(t, s.m.SetupAndConfigurationService.GetUuid())
	if r.body.name.Local != "GetUuid_OUTPUT" || r.body.name.Space != classURI("AMT_SetupAndConfigurationService") {
		t.Fatalf("body %v", r.body.name)
	}
	raw, err := base64.StdEncoding.DecodeString(r.body.mustValue(t, "UUID"))
	if err != nil {
		t.Fatal(err)
	}
	var u amt.UUID
	copy(u[:], raw)
	if len(raw) != 16 || u.String() != testConfig().UUID {
		t.Fatalf("GetUuid = %x (%s), want %s in SMBIOS byte order", raw, u, testConfig().UUID)
	}
}

func TestHostBasedSetupIsLocalOnly(t *testing.T) {
	s := newSession(t, nil)
	r := s.do(t, gwmips.NewMessages().HostBasedSetupService.Setup(2, testRealm, "x"))
	if r.body.name.Local != "Fault" || !strings.Contains(string(r.raw), "AccessDenied") {
		t.Fatalf("Setup over the network in setup mode:\n%s", r.raw)
	}
}

func TestInfoJSON(t *testing.T) {
	d := newTestDevice(t, nil)
	d.Counters.HellosSent.Add(3)
	d.RecordTLSRejection("root hash not trusted")
	b, err := json.Marshal(d.Info())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"uuid": testConfig().UUID, "ip": "127.10.0.1", "mac": "a4:ae:11:1e:46:53", "hostname": "sim-0001",
		"dns_suffix": "vprodemo.com", "amt_version": "16.1.25.2124", "realm": testRealm, "state": "in",
		"control_mode": "none", "tls_enabled": false, "hellos_sent": float64(3), "sessions_max_concurrent": float64(0),
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	if got := d.TLSRejections(); len(got) != 1 || got[0] != "root hash not trusted" {
		t.Errorf("TLSRejections = %v", got)
	}
	for range 2 * maxTLSRejections {
		d.RecordTLSRejection("x")
	}
	if n := len(d.TLSRejections()); n != maxTLSRejections {
		t.Errorf("%d rejections kept, want %d", n, maxTLSRejections)
	}
}

func TestNewDeviceValidates(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"bad uuid", func(c *Config) { c.UUID = "nope" }},
		{"zero uuid", func(c *Config) { c.UUID = "00000000-0000-0000-0000-000000000000" }},
		{"bad mac", func(c *Config) { c.MAC = "zz" }},
		{"bad ip", func(c *Config) { c.IP = "1.2.3" }},
		{"bad version", func(c *Config) { c.AMTVersion = "sixteen" }},
		{"bad realm", func(c *Config) { c.Realm = "Digest:abc" }},
		{"no hostname", func(c *Config) { c.Hostname = "" }},
		{"bad root hash", func(c *Config) { c.TrustedRoots = []string{"sha256:00"} }},
		{"provisioned without password", func(c *Config) { c.Provisioned = true }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.mutate(&cfg)
			if _, err := NewDevice(cfg, Realism{}, newKeySource(t)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	d := newTestDevice(t, nil)
	if got := d.TrustedRoots(); len(got) != 1 || got[0].String() != testConfig().TrustedRoots[0] {
		t.Fatalf("TrustedRoots = %v", got)
	}
	if d.UUID().String() != testConfig().UUID || d.Config().Hostname != "sim-0001" {
		t.Fatal("identity accessors")
	}
}

func TestPlainPortClosedAfterTLSCommit(t *testing.T) {
	s := newSession(t, nil)
	s.stage(t)
	ca := newTestCA(t, "device CA")
	w := &walk{d: s.d, ca: ca}
	r := s.do(t, s.m.PublicKeyManagementService.AddCertificate(encodeCert(w.leafFor(keyID(0)).Raw)))
	certID := eprSelectors(r.body.child("CreatedCertificate"))["InstanceID"]
	s.do(t, s.m.TLSCredentialContext.Create(certID))
	s.do(t, tlsSettingsPut(4, true, false))
	if !s.d.PlainPortOpen() {
		t.Fatal("16992 closed before the commit")
	}
	if got := s.rv(t, s.m.SetupAndConfigurationService.CommitChanges()); got != 0 {
		t.Fatalf("CommitChanges = %d", got)
	}
	if s.d.PlainPortOpen() {
		t.Fatal("16992 still open with TLS on and AcceptNonSecureConnections=false")
	}
	plain := httptest.NewServer(s.d.Handler())
	t.Cleanup(plain.Close)
	req, _ := http.NewRequest(http.MethodPost, plain.URL+"/wsman", strings.NewReader(getXML("AMT_GeneralSettings")))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("plain WS-Man answered %d", resp.StatusCode)
	}
	// The discovery banner stays (a scanner still sees AMT on 16993).
	resp, err := http.Get(plain.URL + "/logon.htm")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestFeatureConfiguration runs RPS's redirection/KVM/user-consent steps
// (§7.7) and reads the results back.
func TestFeatureConfiguration(t *testing.T) {
	s := newSession(t, nil)
	cim := gwmcim.NewMessages()
	if got := s.rv(t, s.m.RedirectionService.RequestStateChange(32771)); got != 0 {
		t.Fatalf("redirection RequestStateChange = %d", got)
	}
	if got := s.rv(t, cim.KVMRedirectionSAP.RequestStateChange(2)); got != 0 {
		t.Fatalf("KVM RequestStateChange = %d", got)
	}
	if got := s.rv(t, cim.KVMRedirectionSAP.RequestStateChange(7)); got != ptInvalidParameter {
		t.Fatalf("KVM RequestStateChange(7) = %d", got)
	}
	if got := s.do(t, cim.KVMRedirectionSAP.Get()).body.mustValue(t, "EnabledState"); got != "6" {
		t.Fatalf("KVM EnabledState with the listener off = %s, want 6 (enabled but offline)", got)
	}
	put := s.do(t, putXML("AMT_RedirectionService", "Name", "Intel(r) AMT Redirection Service", [2]string{"ListenerEnabled", "true"}))
	if got := put.body.mustValue(t, "ListenerEnabled"); got != "true" {
		t.Fatalf("Put echoed ListenerEnabled=%s", got)
	}
	red := s.do(t, s.m.RedirectionService.Get())
	if red.body.mustValue(t, "EnabledState") != "32771" || red.body.mustValue(t, "ListenerEnabled") != "true" {
		t.Fatalf("redirection after configuration:\n%s", red.raw)
	}
	if got := s.do(t, cim.KVMRedirectionSAP.Get()).body.mustValue(t, "EnabledState"); got != "2" {
		t.Fatalf("KVM EnabledState = %s, want 2", got)
	}
	if got := s.do(t, putXML("IPS_OptInService", "", "", [2]string{"OptInRequired", "0"})).body.mustValue(t, "OptInRequired"); got != "0" {
		t.Fatalf("OptInRequired = %s", got)
	}
	if r := s.do(t, putXML("IPS_OptInService", "", "", [2]string{"OptInRequired", "7"})); r.body.name.Local != "Fault" {
		t.Fatalf("OptInRequired=7 accepted:\n%s", r.raw)
	}
	if r := s.do(t, putXML("AMT_GeneralSettings", "InstanceID", "Intel(r) AMT: General Settings", [2]string{"HostName", "bad host!"})); r.body.name.Local != "Fault" {
		t.Fatalf("bad HostName accepted:\n%s", r.raw)
	}
	if got := s.do(t, putXML("AMT_GeneralSettings", "InstanceID", "Intel(r) AMT: General Settings", [2]string{"HostName", "renamed"})).body.mustValue(t, "HostName"); got != "renamed" {
		t.Fatalf("HostName = %s", got)
	}
	if s.d.Info().Hostname != "sim-0001" {
		t.Fatal("host name took effect before CommitChanges")
	}
}

func TestCredentialContextLifecycle(t *testing.T) {
	s := newSession(t, nil)
	s.stage(t)
	w := &walk{d: s.d, ca: newTestCA(t, "ca")}
	r := s.do(t, s.m.PublicKeyManagementService.AddCertificate(encodeCert(w.leafFor(keyID(0)).Raw)))
	certID := eprSelectors(r.body.child("CreatedCertificate"))["InstanceID"]
	s.do(t, s.m.TLSCredentialContext.Create(certID))
	s.do(t, tlsSettingsPut(4, true, true))
	// RPS keys the context by its two references; go-wsman v1.8.1's
	// Name selector names nothing firmware has.
	del := credentialContextDelete(certID)
	if r := s.do(t, s.m.TLSCredentialContext.Delete("x")); !strings.Contains(string(r.raw), "InvalidSelectors") {
		t.Fatalf("Delete by Name selector:\n%s", r.raw)
	}
	if r := s.do(t, del); r.body.name.Local != "Fault" {
		t.Fatal("deleted the credential context while TLS is enabled")
	}
	if r := s.do(t, s.m.PublicKeyCertificate.Delete(certID)); r.body.name.Local != "Fault" {
		t.Fatal("deleted the certificate in use")
	}
	if r := s.do(t, s.m.PublicPrivateKeyPair.Delete(keyID(0))); r.body.name.Local != "Fault" {
		t.Fatal("deleted the key pair in use")
	}
	s.do(t, tlsSettingsPut(5, false, true))
	if r := s.do(t, del); r.body != nil {
		t.Fatalf("Delete answered %s", r.body.name.Local)
	}
	ctx := s.do(t, s.m.TLSCredentialContext.Enumerate()).body.mustValue(t, "EnumerationContext")
	if n := len(s.do(t, s.m.TLSCredentialContext.Pull(ctx)).body.child("Items").kids); n != 0 {
		t.Fatalf("%d credential contexts after Delete", n)
	}
}

// credentialContextDelete is RPS's Delete of AMT_TLSCredentialContext: the
// selectors are the EPRs of the certificate and the endpoint collection.
func credentialContextDelete(certID string) string {
	epr := func(class, sel, val string) string {
		return `<a:EndpointReference><a:Address>/wsman</a:Address><a:ReferenceParameters><w:ResourceURI>` + classURI(class) +
			`</w:ResourceURI><w:SelectorSet><w:Selector Name="` + sel + `">` + val + `</w:Selector></w:SelectorSet></a:ReferenceParameters></a:EndpointReference>`
	}
	sels := `<w:SelectorSet><w:Selector Name="ElementInContext">` + epr("AMT_PublicKeyCertificate", "InstanceID", certID) +
		`</w:Selector><w:Selector Name="ElementProvidingContext">` + epr("AMT_TLSProtocolEndpointCollection", "ElementName", tlsCollectionID) +
		`</w:Selector></w:SelectorSet>`
	return strings.Replace(wsmanXML(actionDelete, "AMT_TLSCredentialContext", "<Body></Body>"), "</Header>", sels+"</Header>", 1)
}

// TestConcurrentSessions hammers one device from several connections while
// it reboots, for the race detector and for answers that stay well-formed.
func TestConcurrentSessions(t *testing.T) {
	s := newSession(t, nil)
	msgs := []string{
		getXML("AMT_GeneralSettings"),
		enumXML("CIM_SoftwareIdentity"),
		getXML("AMT_TLSSettingData"),
		s.m.PublicKeyManagementService.GenerateKeyPair(publickey.GenerateKeyPair_INPUT{KeyAlgorithm: 0, KeyLength: 2048}),
		s.m.SetupAndConfigurationService.SetMEBXPassword("Mebx-Pa55!"),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			s.d.Reboot()
			_ = s.d.Info()
			_ = s.d.ServerCertificate()
		}
	}()
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 15 {
				msg := msgs[(g+i)%len(msgs)]
				req, _ := http.NewRequest(http.MethodPost, s.url, strings.NewReader(msg))
				resp, err := s.c.Do(req)
				if err != nil {
					errs <- err
					return
				}
				b := new(strings.Builder)
				_, _ = io.Copy(b, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("status %d for %.80s:\n%s", resp.StatusCode, msg, b)
					return
				}
				if _, err := parseTree([]byte(b.String())); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	<-done
}
