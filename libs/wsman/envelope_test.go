package wsman_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amtprov/amtprov/libs/wsman"
)

// gwmPrefix and gwmHeader are go-wsman-messages' expected request layout
// (pkg/wsmantesting ExpectedResponse, PROTOCOL.md §8.1).
const gwmPrefix = `<?xml version="1.0" encoding="utf-8"?><Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns="http://www.w3.org/2003/05/soap-envelope"><Header><a:Action>`

func gwmExpected(action, uri, id, extraHeader, body string) string {
	return gwmPrefix + action + `</a:Action><a:To>/wsman</a:To><w:ResourceURI>` + uri + `</w:ResourceURI><a:MessageID>` + id +
		`</a:MessageID><a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo><w:OperationTimeout>PT60S</w:OperationTimeout>` +
		extraHeader + `</Header><Body>` + body + `</Body></Envelope>`
}

func TestEnvelopeBytes(t *testing.T) {
	const amtURI = "http://intel.com/wbem/wscim/1/amt-schema/1/"
	tests := []struct {
		name string
		req  wsman.Request
		want string
	}{
		{"Get", wsman.GetRequest("AMT_GeneralSettings"),
			gwmExpected(wsman.ActionGet, amtURI+"AMT_GeneralSettings", "7", "", "")},
		{"Get with selector", wsman.GetRequest("AMT_TLSSettingData", wsman.Selector{Name: "InstanceID", Value: "Intel(r) AMT 802.3 TLS Settings"}),
			gwmExpected(wsman.ActionGet, amtURI+"AMT_TLSSettingData", "7", `<w:SelectorSet><w:Selector Name="InstanceID">Intel(r) AMT 802.3 TLS Settings</w:Selector></w:SelectorSet>`, "")},
		{"Enumerate CIM", wsman.EnumerateRequest("CIM_SoftwareIdentity"),
			gwmExpected(wsman.ActionEnumerate, "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_SoftwareIdentity", "7", "",
				`<Enumerate xmlns="http://schemas.xmlsoap.org/ws/2004/09/enumeration" />`)},
		{"Pull IPS", wsman.PullRequest("IPS_OptInService", "AC070000-0000-0000-0000-000000000000"),
			gwmExpected(wsman.ActionPull, "http://intel.com/wbem/wscim/1/ips-schema/1/IPS_OptInService", "7", "",
				`<Pull xmlns="http://schemas.xmlsoap.org/ws/2004/09/enumeration"><EnumerationContext>AC070000-0000-0000-0000-000000000000</EnumerationContext><MaxElements>999</MaxElements><MaxCharacters>99999</MaxCharacters></Pull>`)},
		{"Method without input", wsman.MethodRequest("AMT_SetupAndConfigurationService", "CommitChanges", nil),
			gwmExpected(amtURI+"AMT_SetupAndConfigurationService/CommitChanges", amtURI+"AMT_SetupAndConfigurationService", "7", "",
				`<h:CommitChanges_INPUT xmlns:h="`+amtURI+`AMT_SetupAndConfigurationService"></h:CommitChanges_INPUT>`)},
		{"Method with input", wsman.MethodRequest("AMT_PublicKeyManagementService", "GenerateKeyPair", []wsman.Property{wsman.PropInt("KeyAlgorithm", 0), wsman.PropInt("KeyLength", 2048)}),
			gwmExpected(amtURI+"AMT_PublicKeyManagementService/GenerateKeyPair", amtURI+"AMT_PublicKeyManagementService", "7", "",
				`<h:GenerateKeyPair_INPUT xmlns:h="`+amtURI+`AMT_PublicKeyManagementService"><h:KeyAlgorithm>0</h:KeyAlgorithm><h:KeyLength>2048</h:KeyLength></h:GenerateKeyPair_INPUT>`)},
		{"Delete", wsman.DeleteRequest("AMT_PublicKeyCertificate", wsman.Selector{Name: "InstanceID", Value: "Intel(r) AMT Certificate: Handle: 1"}),
			gwmExpected(wsman.ActionDelete, amtURI+"AMT_PublicKeyCertificate", "7", `<w:SelectorSet><w:Selector Name="InstanceID">Intel(r) AMT Certificate: Handle: 1</w:Selector></w:SelectorSet>`, "")},
		{"Put with repeated property", wsman.PutRequest("AMT_TLSSettingData", []wsman.Property{wsman.PropBool("Enabled", true), wsman.PropList("TrustedCN", "a", "b")}),
			gwmExpected(wsman.ActionPut, amtURI+"AMT_TLSSettingData", "7", "",
				`<h:AMT_TLSSettingData xmlns:h="`+amtURI+`AMT_TLSSettingData"><h:Enabled>true</h:Enabled><h:TrustedCN>a</h:TrustedCN><h:TrustedCN>b</h:TrustedCN></h:AMT_TLSSettingData>`)},
		{"selector holding an EPR", wsman.GetRequest("AMT_TLSCredentialContext", wsman.Selector{Name: "ElementInContext", Ref: &wsman.EPR{
			ResourceURI: amtURI + "AMT_PublicKeyCertificate", Selectors: []wsman.Selector{{Name: "InstanceID", Value: "c1"}}}}),
			gwmExpected(wsman.ActionGet, amtURI+"AMT_TLSCredentialContext", "7",
				`<w:SelectorSet><w:Selector Name="ElementInContext"><a:EndpointReference><a:Address>/wsman</a:Address><a:ReferenceParameters><w:ResourceURI>`+amtURI+
					`AMT_PublicKeyCertificate</w:ResourceURI><w:SelectorSet><w:Selector Name="InstanceID">c1</w:Selector></w:SelectorSet></a:ReferenceParameters></a:EndpointReference></w:Selector></w:SelectorSet>`, "")},
		{"values are escaped", wsman.MethodRequest("AMT_SetupAndConfigurationService", "SetMEBxPassword", []wsman.Property{wsman.Prop("Password", `P<&>"'w`)}),
			gwmExpected(amtURI+"AMT_SetupAndConfigurationService/SetMEBxPassword", amtURI+"AMT_SetupAndConfigurationService", "7", "",
				`<h:SetMEBxPassword_INPUT xmlns:h="`+amtURI+`AMT_SetupAndConfigurationService"><h:Password>P&lt;&amp;&gt;&#34;&#39;w</h:Password></h:SetMEBxPassword_INPUT>`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.req.Envelope(7)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("envelope:\n got %s\nwant %s", got, tc.want)
			}
			// What we send must be what a server parses back.
			if _, err := wsman.ParseResponse(got); err != nil {
				t.Errorf("own envelope does not parse: %v", err)
			}
		})
	}
}

func TestEnvelopeRejects(t *testing.T) {
	tests := []struct {
		name string
		req  wsman.Request
		want error
	}{
		{"property name with markup", wsman.PutRequest("AMT_GeneralSettings", []wsman.Property{wsman.Prop("Host><x", "v")}), wsman.ErrInvalidArgument},
		{"method name with space", wsman.MethodRequest("AMT_SetupAndConfigurationService", "Commit Changes", nil), wsman.ErrInvalidArgument},
		{"class name with markup", wsman.GetRequest("AMT_<x>"), wsman.ErrInvalidArgument},
		{"empty request", wsman.Request{}, wsman.ErrInvalidArgument},
		{"too large", wsman.MethodRequest("AMT_PublicKeyManagementService", "AddCertificate", []wsman.Property{wsman.Prop("CertificateBlob", strings.Repeat("A", wsman.MaxRequestBytes))}), wsman.ErrRequestTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.req.Envelope(1); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestResourceURI(t *testing.T) {
	for class, want := range map[string]string{
		"AMT_GeneralSettings":             "http://intel.com/wbem/wscim/1/amt-schema/1/AMT_GeneralSettings",
		"CIM_KVMRedirectionSAP":           "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_KVMRedirectionSAP",
		"IPS_OptInService":                "http://intel.com/wbem/wscim/1/ips-schema/1/IPS_OptInService",
		"http://example.com/wbem/X_Class": "http://example.com/wbem/X_Class",
	} {
		if got := wsman.ResourceURI(class); got != want {
			t.Errorf("ResourceURI(%q) = %q, want %q", class, got, want)
		}
	}
}

// TestEveryFixtureParses holds the parser to every recorded response: each
// parses, faults come back as *Fault, and every Body has an element.
func TestEveryFixtureParses(t *testing.T) {
	dir := fixtureDir(t)
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".xml" {
			return err
		}
		n++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		r, err := wsman.ParseResponse(b)
		var f *wsman.Fault
		switch {
		case errors.As(err, &f):
			if f.Code == "" {
				t.Errorf("%s: fault without code: %+v", rel, f)
			}
		case err != nil:
			t.Errorf("%s: %v", rel, err)
		case r.Body == nil && !strings.Contains(rel, "delete") && !strings.Contains(rel, "put"):
			t.Errorf("%s: empty body", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 250 {
		t.Fatalf("walked %d fixture files, want the ~300 recorded ones", n)
	}
}

func TestStatusName(t *testing.T) {
	for v, want := range map[int]string{0: "SUCCESS", 16: "NOT_PERMITTED", 36: "INVALID_PARAMETER", 2054: "INVALID_PASSWORD", 2057: "DATA_MISSING", 2082: "OPERATION_IN_PROGRESS", 5: ""} {
		if got := wsman.StatusName(v); got != want {
			t.Errorf("StatusName(%d) = %q, want %q", v, got, want)
		}
	}
	codes := wsman.StatusCodes()
	if len(codes) != 56 {
		t.Errorf("%d status codes, PROTOCOL.md §2.4 lists 56", len(codes))
	}
	for i := 1; i < len(codes); i++ {
		if codes[i-1] >= codes[i] {
			t.Fatalf("StatusCodes not ascending at %d", i)
		}
	}
}
