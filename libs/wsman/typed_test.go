package wsman_test

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/wsman"
)

// fixtureRoutes answers every typed call from the recorded responses.
var fixtureRoutes = map[string]string{
	"Get AMT_GeneralSettings":                                  "amt/general/get.xml",
	"Put AMT_GeneralSettings":                                  "amt/general/get.xml",
	"Get AMT_SetupAndConfigurationService":                     "amt/setupandconfiguration/get.xml",
	"SetMEBxPassword AMT_SetupAndConfigurationService":         "amt/setupandconfiguration/setmebxpassword.xml",
	"CommitChanges AMT_SetupAndConfigurationService":           "amt/setupandconfiguration/commitchanges.xml",
	"Unprovision AMT_SetupAndConfigurationService":             "amt/setupandconfiguration/unprovision.xml",
	"GetUuid AMT_SetupAndConfigurationService":                 "amt/setupandconfiguration/getuuid.xml",
	"SetAdminAclEntryEx AMT_AuthorizationService":              "amt/authorization/setadminaclentryex.xml",
	"GetLowAccuracyTimeSynch AMT_TimeSynchronizationService":   "amt/timesynchronization/getlowaccuracytimesynch.xml",
	"SetHighAccuracyTimeSynch AMT_TimeSynchronizationService":  "amt/timesynchronization/sethighaccuracytimesynch.xml",
	"Enumerate CIM_SoftwareIdentity":                           "cim/software/identity/enumerate.xml",
	"Pull CIM_SoftwareIdentity":                                "cim/software/identity/pull.xml",
	"GenerateKeyPair AMT_PublicKeyManagementService":           "amt/publickey/management/generatekeypair.xml",
	"AddCertificate AMT_PublicKeyManagementService":            "amt/publickey/management/addcertificate.xml",
	"AddTrustedRootCertificate AMT_PublicKeyManagementService": "amt/publickey/management/addtrustedrootcertificate.xml",
	"Enumerate AMT_PublicPrivateKeyPair":                       "amt/publicprivate/enumerate.xml",
	"Pull AMT_PublicPrivateKeyPair":                            "amt/publicprivate/pull.xml",
	"Enumerate AMT_PublicKeyCertificate":                       "amt/publickey/certificate/enumerate.xml",
	"Pull AMT_PublicKeyCertificate":                            "amt/publickey/certificate/pull.xml",
	"Create AMT_TLSCredentialContext":                          "amt/tls/credentialcontext/create.xml",
	"Enumerate AMT_TLSCredentialContext":                       "amt/tls/credentialcontext/enumerate.xml",
	"Put AMT_TLSCredentialContext":                             "amt/tls/credentialcontext/put.xml",
	"Pull AMT_TLSCredentialContext":                            "amt/tls/credentialcontext/pull.xml",
	"Enumerate AMT_TLSSettingData":                             "amt/tls/settingdata/enumerate.xml",
	"Pull AMT_TLSSettingData":                                  "amt/tls/settingdata/pull.xml",
	"Put AMT_TLSSettingData":                                   "amt/tls/settingdata/put.xml",
	"Get AMT_RedirectionService":                               "amt/redirectionservice/get.xml",
	"Put AMT_RedirectionService":                               "amt/redirectionservice/put.xml",
	"RequestStateChange AMT_RedirectionService":                "amt/redirectionservice/requeststatechange.xml",
	"Get CIM_KVMRedirectionSAP":                                "cim/kvm/get.xml",
	"Get IPS_OptInService":                                     "ips/optin/get.xml",
	"Put IPS_OptInService":                                     "ips/optin/get.xml",
	"Enumerate AMT_EthernetPortSettings":                       "amt/ethernetport/enumerate.xml",
	"Pull AMT_EthernetPortSettings":                            "amt/ethernetport/pull.xml",
	"Get CIM_ComputerSystemPackage":                            "cim/computer/systempackage/get.xml",
	"Get IPS_HostBasedSetupService":                            "ips/hostbasedsetup/get.xml",
}

func fixtureClient(t *testing.T) (*wsman.Client, *replay) {
	t.Helper()
	rp := &replay{tb: t, routes: fixtureRoutes}
	srv := startServer(t, rp)
	return newClient(t, hostPort(srv), nil), rp
}

func TestTypedReadsFromFixtures(t *testing.T) {
	c, _ := fixtureClient(t)
	ctx := testContext(t)

	g, err := c.GeneralSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g.DigestRealm != "Digest:F3EB554784E729164447A89F60B641C5" || g.HostName != "Test Host Name" || g.DomainName != "Test Domain Name" ||
		g.DDNSTTL != 900 || !g.SharedFQDN || g.WsmanOnlyMode || g.InstanceID != "Intel(r) AMT: General Settings" {
		t.Errorf("GeneralSettings = %+v", g)
	}

	s, err := c.SetupAndConfiguration(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.ProvisioningState != amt.PostProvisioning || s.ProvisioningMode != wsman.ProvisioningModeACM || s.PasswordModel != 1 ||
		len(s.ProvisioningServerOTP) != 32 || !s.ZeroTouchConfigurationEnabled {
		t.Errorf("SetupAndConfiguration = %+v", s)
	}

	u, err := c.GetUUID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString("E67jVdK/u2EXoIiu3XA36g==")
	if !bytes.Equal(u[:], raw) {
		t.Errorf("GetUUID = %x, want %x", u[:], raw)
	}

	ta0, err := c.LowAccuracyTime(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ta0.Unix() != 1704586865 {
		t.Errorf("Ta0 = %d", ta0.Unix())
	}

	ids, err := c.SoftwareIdentities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 11 {
		t.Errorf("%d software identities, want 11", len(ids))
	}
	v, ok := wsman.FirmwareVersionOf(ids)
	if !ok || v.Version != "12.0.67" || v.Build != "1579" || v.SKU != "16392" || v.Full() != "12.0.67.1579" {
		t.Errorf("FirmwareVersionOf = %+v, %v", v, ok)
	}

	keys, err := c.KeyPairs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[1].InstanceID != "Intel(r) AMT Key: Handle: 1" {
		t.Fatalf("KeyPairs = %+v", keys)
	}
	if _, err := x509.ParsePKCS1PublicKey(keys[0].DERKey); err != nil {
		t.Errorf("DERKey of the fixture is not PKCS#1: %v", err)
	}

	certs, err := c.PublicKeyCertificates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 3 || !certs[0].TrustedRoot || certs[1].TrustedRoot || certs[0].Subject != "C=unknown,O=unknown,CN=MPSRoot-0af1d5" {
		t.Fatalf("PublicKeyCertificates = %+v", certs)
	}
	if _, err := x509.ParseCertificate(certs[0].X509Certificate); err != nil {
		t.Errorf("certificate of the fixture does not parse: %v", err)
	}

	ctxs, err := c.TLSCredentialContexts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ctxs) != 1 || ctxs[0].CertificateInstanceID() != "Intel(r) AMT Certificate: Handle: 3" ||
		ctxs[0].ElementProvidingContext.Selector("ElementName") != "TLSProtocolEndpoint Instances Collection" {
		t.Errorf("TLSCredentialContexts = %+v", ctxs)
	}

	tlss, err := c.TLSSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tlss) != 2 || tlss[0].InstanceID != wsman.TLSRemoteInstanceID || tlss[0].Enabled || !tlss[1].AcceptNonSecureConnections {
		t.Errorf("TLSSettings = %+v", tlss)
	}

	r, err := c.RedirectionService(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.EnabledState != wsman.RedirectionIDERSOL || !r.SOL() || !r.IDER() || !r.ListenerEnabled {
		t.Errorf("RedirectionService = %+v", r)
	}

	k, err := c.KVMRedirectionSAP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k.EnabledState != 6 || k.RequestedState != 2 {
		t.Errorf("KVMRedirectionSAP = %+v", k)
	}

	o, err := c.OptInService(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if o.OptInRequired != wsman.OptInNone || o.OptInDisplayTimeout != 300 || o.CanModifyOptInPolicy != 1 {
		t.Errorf("OptInService = %+v", o)
	}

	eth, err := c.EthernetPortSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(eth) != 2 || !eth[0].LinkIsUp || eth[1].PhysicalConnectionType != 3 || eth[0].SubnetMask != "255.255.255.0" {
		t.Errorf("EthernetPortSettings = %+v", eth)
	}
	if m, err := eth[0].MAC(); err != nil || m.String() != "00:be:43:d8:22:a4" {
		t.Errorf("wired MAC = %v, %v", m, err)
	}
	if _, err := eth[1].MAC(); err == nil {
		t.Error("the wireless port's all-zero MAC must be an error")
	}

	pkg, err := c.ComputerSystemPackage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// PlatformGUID and GetUuid carry the same bytes (both fixtures).
	if pkg.UUID != u || pkg.PlatformGUID != "13AEE355D2BFBB6117A088AEDD7037EA" {
		t.Errorf("ComputerSystemPackage = %+v (GetUuid %s)", pkg, u)
	}

	h, err := c.HostBasedSetupService(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.CurrentControlMode != amt.ControlACM || len(h.AllowedControlModes) != 2 || h.AllowedControlModes[0] != 2 || len(h.ConfigurationNonce) != 20 {
		t.Errorf("HostBasedSetupService = %+v", h)
	}
}

func TestTypedWritesFromFixtures(t *testing.T) {
	c, rp := fixtureClient(t)
	ctx := testContext(t)

	steps := []struct {
		name string
		run  func() error
		want []string // substrings of the request body
	}{
		{"SetMEBxPassword", func() error { return c.SetMEBxPassword(ctx, "N3w-MEBx!") },
			[]string{`<h:SetMEBxPassword_INPUT xmlns:h="http://intel.com/wbem/wscim/1/amt-schema/1/AMT_SetupAndConfigurationService"><h:Password>N3w-MEBx!</h:Password></h:SetMEBxPassword_INPUT>`}},
		{"SetAdminACLEntryEx", func() error {
			return c.SetAdminACLEntryEx(ctx, "admin", "Digest:F3EB554784E729164447A89F60B641C5", "P@ssw0rd")
		}, []string{`<h:Username>admin</h:Username><h:DigestPassword>` + wsman.DigestPassword("admin", "Digest:F3EB554784E729164447A89F60B641C5", "P@ssw0rd") + `</h:DigestPassword>`}},
		{"SetHighAccuracyTime", func() error {
			return c.SetHighAccuracyTime(ctx, time.Unix(1704586865, 0), time.Unix(1704586900, 0), time.Unix(1704586901, 0))
		}, []string{`<h:Ta0>1704586865</h:Ta0><h:Tm1>1704586900</h:Tm1><h:Tm2>1704586901</h:Tm2>`}},
		{"CommitChanges", func() error { return c.CommitChanges(ctx) },
			[]string{`<h:CommitChanges_INPUT xmlns:h="http://intel.com/wbem/wscim/1/amt-schema/1/AMT_SetupAndConfigurationService"></h:CommitChanges_INPUT>`}},
		{"Unprovision", func() error { return c.Unprovision(ctx, wsman.ProvisioningModeACM) },
			[]string{`<h:ProvisioningMode>1</h:ProvisioningMode>`}},
		{"GenerateKeyPair", func() error {
			e, err := c.GenerateKeyPair(ctx, wsman.KeyAlgorithmRSA, wsman.KeyLength2048)
			if err == nil && e.Selector("InstanceID") != "Intel(r) AMT Key: Handle: 0" {
				t.Errorf("GenerateKeyPair EPR = %+v", e)
			}
			return err
		}, []string{`<h:KeyAlgorithm>0</h:KeyAlgorithm><h:KeyLength>2048</h:KeyLength>`}},
		{"AddCertificate", func() error {
			e, err := c.AddCertificate(ctx, []byte{0x30, 0x82})
			if err == nil && e.Selector("InstanceID") != "Intel(r) AMT Certificate: Handle: 1" {
				t.Errorf("AddCertificate EPR = %+v", e)
			}
			return err
		}, []string{`<h:CertificateBlob>MII=</h:CertificateBlob>`}},
		{"AddTrustedRootCertificate", func() error {
			_, err := c.AddTrustedRootCertificate(ctx, []byte{0x30, 0x82})
			return err
		}, []string{`AddTrustedRootCertificate_INPUT`}},
		{"CreateTLSCredentialContext", func() error {
			e, err := c.CreateTLSCredentialContext(ctx, "Intel(r) AMT Certificate: Handle: 1")
			if err == nil {
				var in *wsman.EPR
				for _, s := range e.Selectors {
					if s.Name == "ElementInContext" {
						in = s.Ref
					}
				}
				if in == nil || in.Selector("InstanceID") != "testCertificate" {
					t.Errorf("Create EPR = %+v", e)
				}
			}
			return err
		}, []string{`<h:AMT_TLSCredentialContext xmlns:h="http://intel.com/wbem/wscim/1/amt-schema/1/AMT_TLSCredentialContext"><h:ElementInContext><a:Address>/wsman</a:Address><a:ReferenceParameters><w:ResourceURI>http://intel.com/wbem/wscim/1/amt-schema/1/AMT_PublicKeyCertificate</w:ResourceURI><w:SelectorSet><w:Selector Name="InstanceID">Intel(r) AMT Certificate: Handle: 1</w:Selector></w:SelectorSet></a:ReferenceParameters></h:ElementInContext><h:ElementProvidingContext><a:Address>/wsman</a:Address><a:ReferenceParameters><w:ResourceURI>http://intel.com/wbem/wscim/1/amt-schema/1/AMT_TLSProtocolEndpointCollection</w:ResourceURI><w:SelectorSet><w:Selector Name="ElementName">TLSProtocolEndpointInstances Collection</w:Selector></w:SelectorSet></a:ReferenceParameters></h:ElementProvidingContext></h:AMT_TLSCredentialContext>`}},
		{"PutTLSCredentialContext", func() error {
			ctxs, err := c.TLSCredentialContexts(ctx)
			if err != nil {
				return err
			}
			return c.PutTLSCredentialContext(ctx, "Intel(r) AMT Certificate: Handle: 4", ctxs[0])
		}, []string{`<w:SelectorSet><w:Selector Name="ElementInContext"><a:EndpointReference><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address><a:ReferenceParameters><w:ResourceURI>http://intel.com/wbem/wscim/1/amt-schema/1/AMT_PublicKeyCertificate</w:ResourceURI><w:SelectorSet><w:Selector Name="InstanceID">Intel(r) AMT Certificate: Handle: 3</w:Selector>`,
			`<h:ElementInContext><a:Address>/wsman</a:Address><a:ReferenceParameters><w:ResourceURI>http://intel.com/wbem/wscim/1/amt-schema/1/AMT_PublicKeyCertificate</w:ResourceURI><w:SelectorSet><w:Selector Name="InstanceID">Intel(r) AMT Certificate: Handle: 4</w:Selector>`}},
		{"PutTLSSettingData", func() error {
			_, err := c.PutTLSSettingData(ctx, wsman.TLSSettingData{InstanceID: wsman.TLSRemoteInstanceID, Enabled: true, AcceptNonSecureConnections: false})
			return err
		}, []string{`<w:SelectorSet><w:Selector Name="InstanceID">Intel(r) AMT 802.3 TLS Settings</w:Selector></w:SelectorSet>`,
			`<h:AMT_TLSSettingData xmlns:h="http://intel.com/wbem/wscim/1/amt-schema/1/AMT_TLSSettingData"><h:AcceptNonSecureConnections>false</h:AcceptNonSecureConnections><h:ElementName>Intel(r) AMT 802.3 TLS Settings</h:ElementName><h:Enabled>true</h:Enabled>`}},
		{"PutGeneralSettings", func() error {
			g, err := c.GeneralSettings(ctx)
			if err != nil {
				return err
			}
			g.HostName, g.DomainName = "host-7", "corp.example.com"
			_, err = c.PutGeneralSettings(ctx, g)
			return err
		}, []string{`<h:HostName>host-7</h:HostName>`, `<h:DomainName>corp.example.com</h:DomainName>`, `<h:DigestRealm>Digest:F3EB554784E729164447A89F60B641C5</h:DigestRealm>`}},
		{"RequestRedirectionStateChange", func() error {
			return c.RequestRedirectionStateChange(ctx, wsman.RedirectionState(true, false))
		}, []string{`<h:RequestedState>32770</h:RequestedState>`}},
		{"PutRedirectionService", func() error {
			r, err := c.RedirectionService(ctx)
			if err != nil {
				return err
			}
			_, err = c.PutRedirectionService(ctx, r)
			return err
		}, []string{`<h:AMT_RedirectionService xmlns:h="http://intel.com/wbem/wscim/1/amt-schema/1/AMT_RedirectionService"><h:CreationClassName>AMT_RedirectionService</h:CreationClassName>`, `<h:ListenerEnabled>true</h:ListenerEnabled>`}},
		{"PutOptInService", func() error {
			o, err := c.OptInService(ctx)
			if err != nil {
				return err
			}
			o.OptInRequired = wsman.OptInAll
			_, err = c.PutOptInService(ctx, o)
			return err
		}, []string{`<h:OptInRequired>4294967295</h:OptInRequired>`}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := len(rp.requests())
			if err := st.run(); err != nil {
				t.Fatal(err)
			}
			reqs := rp.requests()[before:]
			last := reqs[len(reqs)-1].Body
			for _, w := range st.want {
				if !strings.Contains(last, w) {
					t.Errorf("request lacks %s\nrequest: %s", w, last)
				}
			}
		})
	}
}

func TestTypedDecodeErrors(t *testing.T) {
	ctx := testContext(t)
	tests := []struct {
		name  string
		route map[string]string
		body  []byte
		call  func(c *wsman.Client) error
	}{
		{"GetUuid not base64", map[string]string{"GetUuid AMT_SetupAndConfigurationService": "amt/setupandconfiguration/getuuid-bad.xml"}, nil,
			func(c *wsman.Client) error { _, err := c.GetUUID(ctx); return err }},
		{"GeneralSettings without realm", nil, soapResponse(`<g:AMT_GeneralSettings><g:HostName>x</g:HostName></g:AMT_GeneralSettings>`),
			func(c *wsman.Client) error { _, err := c.GeneralSettings(ctx); return err }},
		{"GeneralSettings with a bad boolean", nil, soapResponse(`<g:AMT_GeneralSettings><g:DigestRealm>r</g:DigestRealm><g:SharedFQDN>maybe</g:SharedFQDN></g:AMT_GeneralSettings>`),
			func(c *wsman.Client) error { _, err := c.GeneralSettings(ctx); return err }},
		{"wrong class in body", nil, soapResponse(`<g:AMT_Other><g:DigestRealm>r</g:DigestRealm></g:AMT_Other>`),
			func(c *wsman.Client) error { _, err := c.GeneralSettings(ctx); return err }},
		{"method without ReturnValue", nil, soapResponse(`<g:CommitChanges_OUTPUT></g:CommitChanges_OUTPUT>`),
			func(c *wsman.Client) error { return c.CommitChanges(ctx) }},
		{"method with a non-numeric ReturnValue", nil, soapResponse(`<g:CommitChanges_OUTPUT><g:ReturnValue>zero</g:ReturnValue></g:CommitChanges_OUTPUT>`),
			func(c *wsman.Client) error { return c.CommitChanges(ctx) }},
		{"GenerateKeyPair without EPR", nil, soapResponse(`<g:GenerateKeyPair_OUTPUT><g:ReturnValue>0</g:ReturnValue></g:GenerateKeyPair_OUTPUT>`),
			func(c *wsman.Client) error { _, err := c.GenerateKeyPair(ctx, 0, 2048); return err }},
		{"PlatformGUID short", nil, soapResponse(`<g:CIM_ComputerSystemPackage><g:PlatformGUID>13AE</g:PlatformGUID></g:CIM_ComputerSystemPackage>`),
			func(c *wsman.Client) error { _, err := c.ComputerSystemPackage(ctx); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var srv = startServer(t, nil)
			if tc.route != nil {
				srv.Config.Handler = &replay{tb: t, routes: tc.route}
			} else {
				srv.Config.Handler = fixedBody(tc.body)
			}
			c := newClient(t, hostPort(srv), nil)
			err := tc.call(c)
			if !errors.Is(err, wsman.ErrMalformedResponse) {
				t.Fatalf("err = %v, want ErrMalformedResponse", err)
			}
		})
	}
}
