package firmware

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	gwmamt "github.com/open-amt-cloud-toolkit/go-wsman-messages/pkg/amt"
	"github.com/open-amt-cloud-toolkit/go-wsman-messages/pkg/amt/publickey"
	gwmcim "github.com/open-amt-cloud-toolkit/go-wsman-messages/pkg/cim"
	gwmips "github.com/open-amt-cloud-toolkit/go-wsman-messages/pkg/ips"
)

// requestSeeds is real request XML from Intel's go-wsman-messages builders.
func requestSeeds() []string {
	m, c, i := gwmamt.NewMessages(), gwmcim.NewMessages(), gwmips.NewMessages()
	return []string{
		m.GeneralSettings.Get(),
		m.SetupAndConfigurationService.CommitChanges(),
		m.SetupAndConfigurationService.SetMEBXPassword("Mebx-Pa55!"),
		m.AuthorizationService.SetAdminACLEntryEx("admin", digestPassword("admin", testRealm, adminPass)),
		m.PublicKeyManagementService.GenerateKeyPair(publickey.GenerateKeyPair_INPUT{KeyAlgorithm: 0, KeyLength: 2048}),
		m.PublicKeyManagementService.AddCertificate("MIIB"),
		m.TLSCredentialContext.Create("Intel(r) AMT Certificate: Handle: 1"),
		m.PublicPrivateKeyPair.Pull("14000000-0000-0000-0000-000000000000"),
		m.TimeSynchronizationService.SetHighAccuracyTimeSynch(1, 2, 3),
		m.RedirectionService.RequestStateChange(32771),
		c.SoftwareIdentity.Enumerate(),
		c.KVMRedirectionSAP.RequestStateChange(2),
		i.OptInService.Get(),
		tlsSettingsPut(7, true, false),
	}
}

func TestParseEnvelope(t *testing.T) {
	m := gwmamt.NewMessages()
	req, err := parseEnvelope([]byte(m.PublicKeyCertificate.Delete("Intel(r) AMT Certificate: Handle: 3")))
	if err != nil {
		t.Fatal(err)
	}
	if req.action != actionDelete || req.resourceURI != classURI("AMT_PublicKeyCertificate") || req.messageID != "0" || req.to != "/wsman" ||
		req.selectors["InstanceID"] != "Intel(r) AMT Certificate: Handle: 3" {
		t.Fatalf("parsed %+v", req)
	}
	deep := strings.Repeat("<x>", maxDepth) + strings.Repeat("</x>", maxDepth)
	wide := strings.Repeat("<x/>", maxElements)
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"not XML", "hello", errEnvelope},
		{"empty", "", errEnvelope},
		{"DTD with entities", `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"><Header/><Body>&lol2;</Body></Envelope>`, errEnvelope},
		{"undefined entity", `<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"><Header/><Body>&xxe;</Body></Envelope>`, errEnvelope},
		{"SOAP 1.1", `<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Header/><Body/></Envelope>`, errVersion},
		{"no Body", `<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"><Header/></Envelope>`, errEnvelope},
		{"no Action", strings.Replace(m.GeneralSettings.Get(), "<a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/Get</a:Action>", "", 1), errEnvelope},
		{"no MessageID", regexp.MustCompile(`<a:MessageID>\d+</a:MessageID>`).ReplaceAllString(m.GeneralSettings.Get(), ""), errEnvelope},
		{"too deep", `<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"><Header/><Body>` + deep + `</Body></Envelope>`, errEnvelope},
		{"too many elements", `<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"><Header/><Body>` + wide + `</Body></Envelope>`, errEnvelope},
		{"too large", strings.Repeat(" ", maxBodyBytes+1), errEnvelope},
		{"text too long", `<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"><Header/><Body><x>` + strings.Repeat("A", maxTextBytes+1) + `</x></Body></Envelope>`, errEnvelope},
		{"two roots", m.GeneralSettings.Get() + "<Envelope/>", errEnvelope},
		{"UTF-16 declared", `<?xml version="1.0" encoding="UTF-16"?><Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"><Header/><Body/></Envelope>`, errEnvelope},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseEnvelope([]byte(tc.in))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestFaults checks the SOAP faults firmware answers with (§8.2 sample):
// HTTP 400, fault Action, a:Sender code and the WS-Man subcode.
func TestFaults(t *testing.T) {
	m := gwmamt.NewMessages()
	tests := []struct {
		name, msg, subcode string
	}{
		{"malformed", "<not-xml", "SchemaValidationError"},
		{"SOAP 1.1", `<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Header/><Body/></Envelope>`, "VersionMismatch"},
		{"unknown class", strings.Replace(m.GeneralSettings.Get(), "AMT_GeneralSettings", "AMT_NoSuchClass", 1), "DestinationUnreachable"},
		{"unknown method", strings.Replace(m.SetupAndConfigurationService.CommitChanges(), "/CommitChanges<", "/SelfDestruct<", 1), "ActionNotSupported"},
		{"Put on a read-only class", strings.Replace(m.GeneralSettings.Get(), "AMT_GeneralSettings", "CIM_Chassis", 1), ""},
		{"Pull with unknown context", m.GeneralSettings.Pull("FF000000-0000-0000-0000-000000000000"), "InvalidEnumerationContext"},
		{"Get with a wrong selector", strings.Replace(m.PublicKeyCertificate.Delete("Intel(r) AMT Certificate: Handle: 9"), "transfer/Delete", "transfer/Get", 1), "InvalidSelectors"},
		{"method body of another method", strings.Replace(m.SetupAndConfigurationService.CommitChanges(), "CommitChanges_INPUT", "Unprovision_INPUT", 2), "SchemaValidationError"},
		{"Create a second credential context", "", "AlreadyExists"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSession(t, nil)
			if tc.subcode == "" {
				return // covered by the read-only Get above answering normally
			}
			msg := tc.msg
			if tc.subcode == "AlreadyExists" {
				s.stage(t)
				ca := newTestCA(t, "ca")
				w := &walk{d: s.d, ca: ca}
				keyID := keyID(0)
				r := s.do(t, s.m.PublicKeyManagementService.AddCertificate(encodeCert(w.leafFor(keyID).Raw)))
				certID := eprSelectors(r.body.child("CreatedCertificate"))["InstanceID"]
				if s.do(t, s.m.TLSCredentialContext.Create(certID)).body.name.Local != "ResourceCreated" {
					t.Fatal("first Create failed")
				}
				msg = s.m.TLSCredentialContext.Create(certID)
			}
			status, b, _ := postXML(t, s.c, s.url, msg)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400:\n%s", status, b)
			}
			r := parseResponse(t, b)
			if r.action != actionFault || r.body.name.Local != "Fault" || !strings.Contains(string(b), tc.subcode) {
				t.Fatalf("want a %s fault:\n%s", tc.subcode, b)
			}
			if tc.subcode != "SchemaValidationError" && tc.subcode != "VersionMismatch" && r.relatesTo == "" {
				t.Errorf("fault without RelatesTo:\n%s", b)
			}
		})
	}
}

func TestDiscoverySurface(t *testing.T) {
	for _, provisioned := range []bool{false, true} {
		d := newTestDevice(t, func(c *Config) {
			c.Provisioned, c.AdminUser, c.AdminPassword = provisioned, "admin", adminPass
		})
		srv := httptest.NewServer(d.Handler())
		t.Cleanup(srv.Close)
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		tests := []struct {
			method, path string
			status       int
		}{
			{http.MethodGet, "/", http.StatusSeeOther},
			{http.MethodGet, "/logon.htm", http.StatusOK},
			{http.MethodGet, "/index.htm", http.StatusUnauthorized},
			{http.MethodGet, "/wsman", http.StatusMethodNotAllowed},
			{http.MethodPost, "/wsman", http.StatusUnauthorized},
			{http.MethodGet, "/nothing", http.StatusNotFound},
		}
		for _, tc := range tests {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("provisioned=%v %s %s: %d, want %d", provisioned, tc.method, tc.path, resp.StatusCode, tc.status)
			}
			if got := resp.Header.Get("Server"); got != "Intel(R) Active Management Technology 16.1.25.2124" {
				t.Errorf("%s: Server %q", tc.path, got)
			}
			if tc.path == "/" && (resp.Header.Get("Location") != "/logon.htm" || resp.Header.Get("Content-Length") != "0") {
				t.Errorf("GET /: headers %v", resp.Header)
			}
			if tc.status == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Digest realm="`+testRealm+`"`) {
				t.Errorf("%s: WWW-Authenticate %q", tc.path, resp.Header.Get("WWW-Authenticate"))
			}
		}
		if d.Counters.HTTPProbes.Load() == 0 || d.Counters.WSManCalls.Load() == 0 {
			t.Error("counters did not move")
		}
	}
}

// TestSetupModeWithoutClientCertificate: over plain HTTP (or TLS without a
// chain) a device in setup mode serves nothing behind digest auth.
func TestSetupModeWithoutClientCertificate(t *testing.T) {
	d := newTestDevice(t, nil)
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(srv.Close)
	nonce := challengeOf(t, srv.URL+"/wsman")["nonce"]
	status, _, _ := postXML(t, http.DefaultClient, srv.URL+"/wsman", getXML("AMT_GeneralSettings"),
		"Authorization", digestAuth("gwm", "admin", "admin", testRealm, nonce, "/wsman", 1, nil))
	if status != http.StatusUnauthorized {
		t.Fatalf("digest in setup mode: %d, want 401", status)
	}
}

func TestDeviceFaults(t *testing.T) {
	s := newSession(t, nil)
	s.d.InjectFault(FaultTransient5xx, time.Now().Add(time.Minute))
	if status, _, h := postXML(t, s.c, s.url, getXML("AMT_GeneralSettings")); status != http.StatusServiceUnavailable || h.Get("Server") == "" {
		t.Fatalf("transient_5xx: %d", status)
	}
	s.d.InjectFault(FaultTransient5xx, time.Now().Add(-time.Second))
	if status, _, _ := postXML(t, s.c, s.url, getXML("AMT_GeneralSettings")); status != http.StatusOK {
		t.Fatalf("after the fault expired: %d", status)
	}
	// slow: a call outlasts a client deadline that an unfaulted call meets.
	s.d.InjectFault(FaultSlow, time.Now().Add(time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.url, strings.NewReader(getXML("AMT_GeneralSettings")))
	if resp, err := s.c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("slow fault: answered %d within 300ms", resp.StatusCode)
	}
	if got := s.d.Info().Faults; len(got) != 1 || got[0] != string(FaultSlow) {
		t.Fatalf("Info().Faults = %v", got)
	}
}

func TestRequestTooLarge(t *testing.T) {
	s := newSession(t, nil)
	status, _, _ := postXML(t, s.c, s.url, strings.Repeat("x", maxBodyBytes+10))
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", status)
	}
}

func TestPullPaging(t *testing.T) {
	s := newSession(t, nil)
	ctx := s.do(t, enumXML("CIM_SoftwareIdentity")).body.mustValue(t, "EnumerationContext")
	var got int
	for range 20 {
		msg := strings.Replace(pullXML("CIM_SoftwareIdentity", ctx), "<MaxElements>999</MaxElements>", "<MaxElements>4</MaxElements>", 1)
		r := s.do(t, msg)
		got += len(r.body.child("Items").kids)
		if r.body.child("EndOfSequence") != nil {
			break
		}
		ctx = r.body.mustValue(t, "EnumerationContext")
	}
	if got != 11 {
		t.Fatalf("paged %d software identities, want 11", got)
	}
}

func FuzzEnvelope(f *testing.F) {
	for _, s := range requestSeeds() {
		f.Add([]byte(s))
	}
	f.Add([]byte(`<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"><Header/><Body/></Envelope>`))
	keys := &rotatingKeys{}
	k, err := testKeys()
	if err != nil {
		f.Fatal(err)
	}
	keys.keys = k
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := parseEnvelope(data)
		if err != nil {
			if !errors.Is(err, errEnvelope) && !errors.Is(err, errVersion) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if req.action == "" || req.messageID == "" || len(req.messageID) > 256 {
			t.Fatalf("accepted envelope without Action/MessageID: %+v", req)
		}
		// Whatever parses must dispatch to an answer or a fault, and the
		// answer must be well-formed XML.
		d, err := NewDevice(testConfig(), Realism{}, keys)
		if err != nil {
			t.Fatal(err)
		}
		resp, fault := d.dispatch(&call{d: d, req: req, ctx: context.Background(), setupSession: true})
		out := faultEnvelope(&wsFault{subcode: "x"}, req.messageID, 1)
		if fault == nil {
			out = envelope(resp, req.messageID, 1)
		}
		if _, err := parseTree(out); err != nil {
			t.Fatalf("response is not well-formed: %v\n%s", err, out)
		}
	})
}

func encodeCert(der []byte) string { return base64Std(der) }
