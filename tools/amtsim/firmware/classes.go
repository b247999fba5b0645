package firmware

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
)

// The classes below render their instances with the property names,
// order and fixed values of the recorded fixtures named next to each.

func b2s(b bool) string { return strconv.FormatBool(b) }

func itoa(n int) string { return strconv.Itoa(n) }

// parseBool reads xs:boolean.
func parseBool(s string) (bool, bool) {
	switch strings.TrimSpace(s) {
	case "true", "1":
		return true, true
	case "false", "0":
		return false, true
	}
	return false, false
}

// service props shared by AMT's service classes.
func serviceProps(class, name string, extra ...prop) []prop {
	ps := []prop{p("CreationClassName", class), p("ElementName", name)}
	ps = append(ps, extra...)
	return ps
}

// write applies f to the working copy and, once provisioned and unless the
// setting waits for CommitChanges, to the settings in effect as well.
func (c *call) write(waitsForCommit bool, f func(s *store)) {
	fw := &c.d.fw
	f(&fw.staged)
	if fw.state == amt.PostProvisioning && !waitsForCommit {
		f(&fw.committed)
	}
}

// classFor returns what firmware does with a class, false for classes the
// simulator does not model (answered DestinationUnreachable).
func classFor(name string) (classDef, bool) {
	switch name {
	case "AMT_GeneralSettings":
		return classDef{uri: classURI(name), list: listGeneral, put: putGeneral}, true
	case "AMT_SetupAndConfigurationService":
		return setupAndConfiguration(), true
	case "AMT_AuthorizationService":
		return authorizationService(), true
	case "AMT_TimeSynchronizationService":
		return timeSynchronization(), true
	case "AMT_PublicKeyManagementService":
		return publicKeyManagement(), true
	case "AMT_PublicKeyCertificate":
		return classDef{uri: classURI(name), list: listCertificates, del: deleteCertificate}, true
	case "AMT_PublicPrivateKeyPair":
		return classDef{uri: classURI(name), list: listKeyPairs, del: deleteKeyPair}, true
	case "AMT_TLSSettingData":
		return classDef{uri: classURI(name), list: listTLSSettings, put: putTLSSetting}, true
	case "AMT_TLSCredentialContext":
		return classDef{uri: classURI(name), list: listCredentialContexts, create: createCredentialContext, put: putCredentialContext, del: deleteCredentialContext}, true
	case "AMT_TLSProtocolEndpointCollection":
		return classDef{uri: classURI(name), list: listTLSCollection}, true
	case "AMT_RedirectionService":
		return redirectionService(), true
	case "CIM_KVMRedirectionSAP":
		return kvmRedirection(), true
	case "IPS_OptInService":
		return classDef{uri: classURI(name), list: listOptIn, put: putOptIn}, true
	case "CIM_SoftwareIdentity":
		return classDef{uri: classURI(name), list: listSoftware}, true
	case "CIM_ComputerSystemPackage":
		return classDef{uri: classURI(name), list: listSystemPackage}, true
	case "CIM_Chassis":
		return classDef{uri: classURI(name), list: listChassis}, true
	case "AMT_EthernetPortSettings":
		return classDef{uri: classURI(name), list: listEthernet}, true
	case "IPS_HostBasedSetupService":
		return hostBasedSetup(), true
	}
	return classDef{}, false
}

// --- AMT_GeneralSettings (fixture amt/general/get.xml) ---

func listGeneral(c *call) []instance {
	s := &c.d.fw.staged
	fqdn := s.hostname
	if s.domainName != "" {
		fqdn += "." + s.domainName
	}
	return []instance{{class: "AMT_GeneralSettings", uri: classURI("AMT_GeneralSettings"), props: []prop{
		p("AMTNetworkEnabled", "1"),
		p("DDNSPeriodicUpdateInterval", "1440"),
		p("DDNSTTL", "900"),
		p("DDNSUpdateByDHCPServerEnabled", "true"),
		p("DDNSUpdateEnabled", "false"),
		p("DHCPSyncRequiresHostname", "1"),
		p("DHCPv6ConfigurationTimeout", "0"),
		p("DigestRealm", c.d.cfg.Realm),
		p("DomainName", s.domainName),
		p("ElementName", "Intel(r) AMT: General Settings"),
		p("HostName", s.hostname),
		p("HostOSFQDN", fqdn),
		p("IdleWakeTimeout", "1"),
		p("InstanceID", "Intel(r) AMT: General Settings"),
		p("NetworkInterfaceEnabled", "true"),
		p("PingResponseEnabled", "true"),
		p("PowerSource", "0"),
		p("PreferredAddressFamily", "0"),
		p("PresenceNotificationInterval", "0"),
		p("PrivacyLevel", "0"),
		p("RmcpPingResponseEnabled", "true"),
		p("SharedFQDN", "true"),
		p("ThunderboltDockEnabled", "0"),
		p("WsmanOnlyMode", "false"),
	}}}
}

// validHostLabel is a DNS label (RFC 1123), as firmware checks HostName.
func validHostLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// putGeneral takes HostName and DomainName (RPS syncHostName, §7.5); the
// other properties are read-only or not modelled and are ignored.
func putGeneral(c *call, _ instance) (instance, *wsFault) {
	body := c.req.body
	host, hasHost := body.value("HostName")
	dom, hasDom := body.value("DomainName")
	if hasHost && !validHostLabel(host) {
		return instance{}, faultSchemaValidation("HostName must be a DNS label of 1-63 letters, digits or hyphens")
	}
	if hasDom && len(dom) > 255 {
		return instance{}, faultSchemaValidation("DomainName longer than 255 characters")
	}
	c.write(false, func(s *store) {
		if hasHost {
			s.hostname = host
		}
		if hasDom {
			s.domainName = dom
		}
	})
	return listGeneral(c)[0], nil
}

// --- AMT_SetupAndConfigurationService (fixtures amt/setupandconfiguration/*) ---

func setupAndConfiguration() classDef {
	uri := classURI("AMT_SetupAndConfigurationService")
	return classDef{
		uri: uri,
		list: func(c *call) []instance {
			mode := "1" // ACM; remote configuration always provisions into admin control mode
			if c.d.fw.state == amt.PostProvisioning && c.d.fw.mode == amt.ControlCCM {
				mode = "4"
			}
			return []instance{{class: "AMT_SetupAndConfigurationService", uri: uri, props: serviceProps(
				"AMT_SetupAndConfigurationService", "Intel(r) AMT Setup and Configuration Service",
				p("EnabledState", "5"),
				p("Name", "Intel(r) AMT Setup and Configuration Service"),
				p("PasswordModel", "1"),
				p("ProvisioningMode", mode),
				p("ProvisioningServerOTP", base64.StdEncoding.EncodeToString(make([]byte, 32))),
				p("ProvisioningState", itoa(int(c.d.fw.state))),
				p("RequestedState", "12"),
				p("SystemCreationClassName", "CIM_ComputerSystem"),
				p("SystemName", "Intel(r) AMT"),
				p("ZeroTouchConfigurationEnabled", "true"),
			)}}
		},
		methods: map[string]method{
			"GetUuid": {run: func(c *call, _ *xnode) (response, *wsFault) {
				u := c.d.uuid
				return methodResponse(uri, "GetUuid", ptSuccess, p("UUID", base64.StdEncoding.EncodeToString(u[:]))), nil
			}},
			"SetMEBxPassword": {run: setMEBxPassword},
			"CommitChanges":   {run: commitChanges, delay: func(r Realism) time.Duration { return r.CommitDelay }},
			"Unprovision":     {run: unprovision},
		},
	}
}

// validMEBxPassword applies the MEBx password rules: 8-32 printable ASCII
// characters with a digit, a lower-case and an upper-case letter and a
// symbol; MEBx refuses the separators " , and :.
func validMEBxPassword(pw string) bool {
	if len(pw) < 8 || len(pw) > 32 {
		return false
	}
	var digit, lower, upper, sym bool
	for _, r := range pw {
		switch {
		case r < 0x21 || r > 0x7e || r == '"' || r == ',' || r == ':':
			return false
		case r >= '0' && r <= '9':
			digit = true
		case r >= 'a' && r <= 'z':
			lower = true
		case r >= 'A' && r <= 'Z':
			upper = true
		default:
			sym = true
		}
	}
	return digit && lower && upper && sym
}

func setMEBxPassword(c *call, in *xnode) (response, *wsFault) {
	uri := classURI("AMT_SetupAndConfigurationService")
	if !c.permittedMEBx() {
		return methodResponse(uri, "SetMEBxPassword", ptNotPermitted), nil
	}
	pw, ok := in.value("Password")
	if !ok {
		return methodResponse(uri, "SetMEBxPassword", ptInvalidParameter), nil
	}
	if !validMEBxPassword(pw) {
		return methodResponse(uri, "SetMEBxPassword", ptInvalidPassword), nil
	}
	c.write(false, func(s *store) {
		s.mebxPassword = pw
		s.mebxChanged = true
	})
	return methodResponse(uri, "SetMEBxPassword", ptSuccess), nil
}

// commitChanges ends remote configuration (§6.3 step 6): the staged
// settings take effect and the device is provisioned in admin control mode.
// It refuses (DATA_MISSING) while the admin password or the new MEBx
// password is missing (§6.1 item 5), or TLS is enabled without a
// certificate to serve. Provisioned, it applies pending TLS changes.
func commitChanges(c *call, _ *xnode) (response, *wsFault) {
	uri := classURI("AMT_SetupAndConfigurationService")
	d := c.d
	fw := &d.fw
	if fw.state == amt.PreProvisioning {
		return methodResponse(uri, "CommitChanges", ptNotPermitted), nil
	}
	if d.hasFaultLocked(FaultReboot, c.now) && fw.state == amt.InProvisioning {
		// The device reboots as the commit arrives: nothing is committed
		// and the caller's connection drops.
		d.rebootLocked()
		c.abort = true
		return response{}, faultInternal("rebooted")
	}
	st := &fw.staged
	if st.adminHA1 == nil || !st.mebxChanged {
		return methodResponse(uri, "CommitChanges", ptDataMissing), nil
	}
	if st.remoteTLS.enabled && st.serverCertificate() == nil {
		return methodResponse(uri, "CommitChanges", ptDataMissing), nil
	}
	fw.committed = st.clone()
	if fw.state == amt.InProvisioning {
		fw.state, fw.mode = amt.PostProvisioning, amt.ControlACM
		d.notifyLocked()
	}
	return methodResponse(uri, "CommitChanges", ptSuccess), nil
}

// unprovision returns the device to pre-provisioning with factory settings
// (§7.8: ProvisioningMode 1).
func unprovision(c *call, in *xnode) (response, *wsFault) {
	uri := classURI("AMT_SetupAndConfigurationService")
	fw := &c.d.fw
	if fw.state == amt.PreProvisioning {
		return methodResponse(uri, "Unprovision", ptNotPermitted), nil
	}
	if m, ok := in.value("ProvisioningMode"); ok && m != "1" {
		return methodResponse(uri, "Unprovision", ptInvalidParameter), nil
	}
	fw.state, fw.mode = amt.PreProvisioning, amt.ControlNone
	fw.committed = factoryStore(c.d.cfg)
	fw.staged = fw.committed.clone()
	c.d.notifyLocked()
	return methodResponse(uri, "Unprovision", ptSuccess), nil
}

// --- AMT_AuthorizationService (fixtures amt/authorization/*) ---

func authorizationService() classDef {
	uri := classURI("AMT_AuthorizationService")
	return classDef{
		uri: uri,
		list: func(c *call) []instance {
			return []instance{{class: "AMT_AuthorizationService", uri: uri, props: append([]prop{p("AllowHttpQopAuthOnly", "1")},
				serviceProps("AMT_AuthorizationService", "Intel(r) AMT Authorization Service",
					p("EnabledState", "5"),
					p("Name", "Intel(r) AMT Authorization Service"),
					p("RequestedState", "12"),
					p("SystemCreationClassName", "CIM_ComputerSystem"),
					p("SystemName", "Intel(r) AMT"))...)}}
		},
		methods: map[string]method{
			"SetAdminAclEntryEx": {run: func(c *call, in *xnode) (response, *wsFault) {
				user, _ := in.value("Username")
				pw, _ := in.value("DigestPassword")
				ha1, ok := parseDigestPassword(pw)
				if !ok || !validUsername(user) {
					return methodResponse(uri, "SetAdminAclEntryEx", ptInvalidParameter), nil
				}
				c.write(false, func(s *store) { s.adminUser, s.adminHA1 = user, ha1 })
				if c.d.fw.state == amt.PostProvisioning {
					c.d.nonces = nil // digest sessions end when the ACL changes (§8.3)
				}
				return methodResponse(uri, "SetAdminAclEntryEx", ptSuccess), nil
			}},
			"GetAdminAclEntry": {run: func(c *call, _ *xnode) (response, *wsFault) {
				return methodResponse(uri, "GetAdminAclEntry", ptSuccess, p("Username", c.d.fw.staged.adminUser)), nil
			}},
		},
	}
}

// validUsername: 1-16 characters of 7-bit printable ASCII (§7.4).
func validUsername(u string) bool {
	if u == "" || len(u) > 16 {
		return false
	}
	for _, r := range u {
		if r < 0x21 || r > 0x7e || r == ':' {
			return false
		}
	}
	return true
}

// --- AMT_TimeSynchronizationService (fixtures amt/timesynchronization/*) ---

func timeSynchronization() classDef {
	uri := classURI("AMT_TimeSynchronizationService")
	return classDef{
		uri: uri,
		list: func(c *call) []instance {
			return []instance{{class: "AMT_TimeSynchronizationService", uri: uri, props: serviceProps(
				"AMT_TimeSynchronizationService", "Intel(r) AMT Time Synchronization Service",
				p("EnabledState", "5"),
				p("LocalTimeSyncEnabled", "0"),
				p("Name", "Intel(r) AMT Time Synchronization Service"),
				p("RequestedState", "12"),
				p("SystemCreationClassName", "CIM_ComputerSystem"),
				p("SystemName", "Intel(r) AMT"),
				p("TimeSource", "0"),
			)}}
		},
		methods: map[string]method{
			"GetLowAccuracyTimeSynch": {run: func(c *call, _ *xnode) (response, *wsFault) {
				ta0 := c.now.Add(c.d.fw.clockOffset).Unix()
				return methodResponse(uri, "GetLowAccuracyTimeSynch", ptSuccess, p("Ta0", strconv.FormatInt(ta0, 10))), nil
			}},
			"SetHighAccuracyTimeSynch": {run: func(c *call, in *xnode) (response, *wsFault) {
				var v [3]int64
				for i, name := range []string{"Ta0", "Tm1", "Tm2"} {
					s, _ := in.value(name)
					n, err := strconv.ParseInt(s, 10, 64)
					if err != nil || n < 0 || n > 1<<32-1 {
						return methodResponse(uri, "SetHighAccuracyTimeSynch", ptInvalidParameter), nil
					}
					v[i] = n
				}
				if v[2] < v[1] {
					return methodResponse(uri, "SetHighAccuracyTimeSynch", ptInvalidParameter), nil
				}
				// The console's clock read Tm2 when it sent the call (RPS syncTime.ts).
				c.d.fw.clockOffset = time.Unix(v[2], 0).Sub(c.now)
				return methodResponse(uri, "SetHighAccuracyTimeSynch", ptSuccess), nil
			}},
		},
	}
}

// --- AMT_PublicKeyManagementService, AMT_PublicKeyCertificate,
// AMT_PublicPrivateKeyPair (fixtures amt/publickey/*, amt/publicprivate/*) ---

func keyID(h int) string  { return keyIDPrefix + itoa(h) }
func certID(h int) string { return certIDPrefix + itoa(h) }

func handleOf(id, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n >= 0
}

func keyRef(h int) *eprRef {
	return &eprRef{uri: classURI("AMT_PublicPrivateKeyPair"), selectors: []eprSel{{name: "InstanceID", value: keyID(h)}}}
}

func certRef(h int) *eprRef {
	return &eprRef{uri: classURI("AMT_PublicKeyCertificate"), selectors: []eprSel{{name: "InstanceID", value: certID(h)}}}
}

func publicKeyManagement() classDef {
	uri := classURI("AMT_PublicKeyManagementService")
	return classDef{
		uri: uri,
		list: func(c *call) []instance {
			return []instance{{class: "AMT_PublicKeyManagementService", uri: uri, props: serviceProps(
				"AMT_PublicKeyManagementService", "Intel(r) AMT Certificate Store Service",
				p("EnabledDefault", "5"),
				p("EnabledState", "5"),
				p("Name", "Intel(r) AMT Public Key Management Service"),
				p("RequestedState", "12"),
				p("SystemCreationClassName", "CIM_ComputerSystem"),
				p("SystemName", "Intel(r) AMT"),
			)}}
		},
		methods: map[string]method{
			"GenerateKeyPair":           {run: generateKeyPair, delay: func(r Realism) time.Duration { return r.KeyGenDelay }},
			"GeneratePKCS10RequestEx":   {run: generatePKCS10},
			"AddCertificate":            {run: func(c *call, in *xnode) (response, *wsFault) { return addCertificate(c, in, false) }},
			"AddTrustedRootCertificate": {run: func(c *call, in *xnode) (response, *wsFault) { return addCertificate(c, in, true) }},
		},
	}
}

// generateKeyPair takes an RSA-2048 key from the key source (§2.5: only
// KeyAlgorithm 0, KeyLength 2048).
func generateKeyPair(c *call, in *xnode) (response, *wsFault) {
	uri := classURI("AMT_PublicKeyManagementService")
	alg, _ := in.value("KeyAlgorithm")
	length, _ := in.value("KeyLength")
	if alg != "0" || length != "2048" {
		return methodResponse(uri, "GenerateKeyPair", ptInvalidParameter), nil
	}
	if len(c.d.fw.staged.keys) >= maxKeyPairs {
		return methodResponse(uri, "GenerateKeyPair", ptMaxLimitReached), nil
	}
	key, err := c.d.keys.Key()
	if err != nil || key.N.BitLen() != 2048 {
		return methodResponse(uri, "GenerateKeyPair", ptInternalError), nil
	}
	h := c.d.fw.staged.nextKey
	c.write(false, func(s *store) {
		s.keys = append(s.keys, keyPair{handle: h, key: key})
		s.nextKey = h + 1
	})
	return methodResponse(uri, "GenerateKeyPair", ptSuccess, pref("KeyPair", keyRef(h))), nil
}

// generatePKCS10 signs the null-signed CSR of the request with the named
// key pair (RPS tls.ts external-CA path, §7.6).
func generatePKCS10(c *call, in *xnode) (response, *wsFault) {
	uri := classURI("AMT_PublicKeyManagementService")
	const m = "GeneratePKCS10RequestEx"
	kp := in.child("KeyPair")
	if kp == nil {
		return methodResponse(uri, m, ptInvalidParameter), nil
	}
	id := eprSelectors(kp)["InstanceID"]
	if id == "" {
		// go-wsman v1.8.1 puts the EPR (or just the InstanceID) in as text.
		id = instanceIDInText(kp.text)
	}
	h, ok := handleOf(id, keyIDPrefix)
	if !ok {
		return methodResponse(uri, m, ptInvalidParameter), nil
	}
	k, ok := c.d.fw.staged.key(h)
	if !ok {
		return methodResponse(uri, m, ptNotFound), nil
	}
	alg, _ := in.value("SigningAlgorithm")
	var sigAlg x509.SignatureAlgorithm
	switch alg {
	case "0":
		sigAlg = x509.SHA1WithRSA
	case "1":
		sigAlg = x509.SHA256WithRSA
	default:
		return methodResponse(uri, m, ptInvalidParameter), nil
	}
	csrB64, _ := in.value("NullSignedCertificateRequest")
	der, err := base64.StdEncoding.DecodeString(csrB64)
	if err != nil {
		return methodResponse(uri, m, ptInvalidParameter), nil
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return methodResponse(uri, m, ptInvalidParameter), nil
	}
	if pub, ok := csr.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&k.key.PublicKey) {
		return methodResponse(uri, m, ptInvalidKey), nil
	}
	tmpl := &x509.CertificateRequest{
		SignatureAlgorithm: sigAlg,
		Subject:            csr.Subject,
		Extensions:         csr.Extensions,
	}
	signed, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k.key)
	if err != nil {
		return methodResponse(uri, m, ptInternalError), nil
	}
	return methodResponse(uri, m, ptSuccess, p("SignedCertificateRequest", base64.StdEncoding.EncodeToString(signed))), nil
}

// instanceIDInText digs an InstanceID out of escaped EPR markup or takes
// the text as the InstanceID itself.
func instanceIDInText(s string) string {
	s = strings.TrimSpace(s)
	const marker = `Name="InstanceID">`
	if i := strings.Index(s, marker); i >= 0 {
		rest := s[i+len(marker):]
		if j := strings.IndexByte(rest, '<'); j >= 0 {
			return rest[:j]
		}
	}
	return s
}

// addCertificate stores a certificate. A non-root certificate must belong
// to a key pair the device holds (CERT_KEY_NOT_MATCH otherwise); a trusted
// root must be a CA certificate.
func addCertificate(c *call, in *xnode, root bool) (response, *wsFault) {
	uri := classURI("AMT_PublicKeyManagementService")
	m := "AddCertificate"
	if root {
		m = "AddTrustedRootCertificate"
	}
	blob, _ := in.value("CertificateBlob")
	der, err := base64.StdEncoding.DecodeString(blob)
	if err != nil || len(der) == 0 {
		return methodResponse(uri, m, ptInvalidCert), nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return methodResponse(uri, m, ptInvalidCert), nil
	}
	st := &c.d.fw.staged
	if root && (!cert.IsCA || cert.CheckSignatureFrom(cert) != nil) {
		return methodResponse(uri, m, ptInvalidCert), nil
	}
	if !root {
		if _, ok := st.keyFor(cert.PublicKey); !ok {
			return methodResponse(uri, m, ptCertKeyNotMatch), nil
		}
	}
	for _, e := range st.certs {
		if string(e.cert.Raw) == string(cert.Raw) {
			return methodResponse(uri, m, ptDuplicate), nil
		}
	}
	if len(st.certs) >= maxCertificates {
		return methodResponse(uri, m, ptMaxLimitReached), nil
	}
	h := st.nextCert
	c.write(false, func(s *store) {
		s.certs = append(s.certs, certEntry{handle: h, cert: cert, trustedRoot: root})
		s.nextCert = h + 1
	})
	return methodResponse(uri, m, ptSuccess, pref("CreatedCertificate", certRef(h))), nil
}

// rdnString renders a DER name the way AMT does in Issuer/Subject: the
// attributes in certificate order, "C=unknown,O=unknown,CN=MPSRoot-0af1d5".
func rdnString(der []byte) string {
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &seq); err != nil || len(rest) > 0 {
		return ""
	}
	short := map[string]string{
		"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST",
		"2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.5": "SERIALNUMBER",
	}
	var parts []string
	for _, rdn := range seq {
		for _, atv := range rdn {
			name, ok := short[atv.Type.String()]
			if !ok {
				name = atv.Type.String()
			}
			parts = append(parts, fmt.Sprintf("%s=%v", name, atv.Value))
		}
	}
	return strings.Join(parts, ",")
}

func listCertificates(c *call) []instance {
	var out []instance
	for _, e := range c.d.fw.staged.certs {
		out = append(out, instance{class: "AMT_PublicKeyCertificate", uri: classURI("AMT_PublicKeyCertificate"), props: []prop{
			p("ElementName", "Intel(r) AMT Certificate"),
			p("InstanceID", certID(e.handle)),
			p("Issuer", rdnString(e.cert.RawIssuer)),
			p("Subject", rdnString(e.cert.RawSubject)),
			p("TrustedRootCertficate", b2s(e.trustedRoot)), // sic, as firmware spells it
			p("X509Certificate", base64.StdEncoding.EncodeToString(e.cert.Raw)),
		}})
	}
	return out
}

func deleteCertificate(c *call, target instance) *wsFault {
	id, _ := target.value("InstanceID")
	h, _ := handleOf(id, certIDPrefix)
	fw := &c.d.fw
	if fw.staged.tlsContext == h || fw.committed.tlsContext == h {
		return faultAccessDenied() // in use by the TLS credential context
	}
	c.write(false, func(s *store) {
		for i, e := range s.certs {
			if e.handle == h {
				s.certs = append(s.certs[:i:i], s.certs[i+1:]...)
				return
			}
		}
	})
	return nil
}

// listKeyPairs renders DERKey as firmware does: base64 of the PKCS#1
// RSAPublicKey (fixture amt/publicprivate/get.xml decodes to SEQUENCE{n,e};
// MeshCommander strips the SubjectPublicKeyInfo header before comparing).
func listKeyPairs(c *call) []instance {
	var out []instance
	for _, k := range c.d.fw.staged.keys {
		out = append(out, instance{class: "AMT_PublicPrivateKeyPair", uri: classURI("AMT_PublicPrivateKeyPair"), props: []prop{
			p("DERKey", base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(&k.key.PublicKey))),
			p("ElementName", "Intel(r) AMT Key"),
			p("InstanceID", keyID(k.handle)),
		}})
	}
	return out
}

func deleteKeyPair(c *call, target instance) *wsFault {
	id, _ := target.value("InstanceID")
	h, _ := handleOf(id, keyIDPrefix)
	k, _ := c.d.fw.staged.key(h)
	for _, st := range []*store{&c.d.fw.staged, &c.d.fw.committed} {
		for _, e := range st.certs {
			if !e.trustedRoot && e.handle == st.tlsContext {
				if pub, ok := e.cert.PublicKey.(*rsa.PublicKey); ok && k.key != nil && pub.Equal(&k.key.PublicKey) {
					return faultAccessDenied() // its certificate serves TLS
				}
			}
		}
	}
	c.write(false, func(s *store) {
		for i, e := range s.keys {
			if e.handle == h {
				s.keys = append(s.keys[:i:i], s.keys[i+1:]...)
				return
			}
		}
	})
	return nil
}

// --- AMT_TLSSettingData (fixtures amt/tls/settingdata/*) ---

func tlsSettingInstance(id string, t tlsSetting) instance {
	ps := []prop{
		p("AcceptNonSecureConnections", b2s(t.acceptNonSecure)),
		p("ElementName", id),
		p("Enabled", b2s(t.enabled)),
		p("InstanceID", id),
		p("MutualAuthentication", b2s(t.mutualAuth)),
	}
	if len(t.trustedCN) > 0 {
		ps = append(ps, p("TrustedCN", t.trustedCN...))
	}
	return instance{class: "AMT_TLSSettingData", uri: classURI("AMT_TLSSettingData"), props: ps}
}

func listTLSSettings(c *call) []instance {
	s := &c.d.fw.staged
	return []instance{tlsSettingInstance(tlsRemoteID, s.remoteTLS), tlsSettingInstance(tlsLocalID, s.localTLS)}
}

// putTLSSetting stages TLS settings; they take effect at CommitChanges.
func putTLSSetting(c *call, target instance) (instance, *wsFault) {
	id, _ := target.value("InstanceID")
	body := c.req.body
	cur := c.d.fw.staged.remoteTLS
	if id == tlsLocalID {
		cur = c.d.fw.staged.localTLS
	}
	next := tlsSetting{acceptNonSecure: cur.acceptNonSecure}
	for _, f := range []struct {
		name string
		dst  *bool
		req  bool
	}{{"Enabled", &next.enabled, true}, {"MutualAuthentication", &next.mutualAuth, false}, {"AcceptNonSecureConnections", &next.acceptNonSecure, false}} {
		v, ok := body.value(f.name)
		if !ok {
			if f.req {
				return instance{}, faultSchemaValidation(f.name + " is required")
			}
			continue
		}
		b, ok := parseBool(v)
		if !ok {
			return instance{}, faultSchemaValidation(f.name + " must be true or false")
		}
		*f.dst = b
	}
	for _, cn := range body.children("TrustedCN") {
		if v := strings.TrimSpace(cn.text); v != "" {
			next.trustedCN = append(next.trustedCN, v)
		}
	}
	c.write(true, func(s *store) {
		if id == tlsLocalID {
			s.localTLS = next
		} else {
			s.remoteTLS = next
		}
	})
	return tlsSettingInstance(id, next), nil
}

// --- AMT_TLSCredentialContext (fixtures amt/tls/credentialcontext/*) ---

func collectionRef() *eprRef {
	return &eprRef{uri: classURI("AMT_TLSProtocolEndpointCollection"), selectors: []eprSel{{name: "ElementName", value: tlsCollectionID}}}
}

func listCredentialContexts(c *call) []instance {
	s := &c.d.fw.staged
	if s.tlsContext < 0 {
		return nil
	}
	return []instance{{class: "AMT_TLSCredentialContext", uri: classURI("AMT_TLSCredentialContext"), props: []prop{
		pref("ElementInContext", certRef(s.tlsContext)),
		pref("ElementProvidingContext", collectionRef()),
	}}}
}

// credentialCert reads and checks the certificate a Create/Put names: it
// must exist, not be a trusted root, and have its key pair on the device.
func credentialCert(c *call) (int, *wsFault) {
	body := c.req.body
	ctx := eprSelectors(body.child("ElementInContext"))["InstanceID"]
	h, ok := handleOf(ctx, certIDPrefix)
	if !ok {
		return 0, faultInvalidSelectors()
	}
	e, ok := c.d.fw.staged.certByHandle(h)
	if !ok {
		return 0, faultInvalidSelectors()
	}
	if e.trustedRoot {
		return 0, faultSchemaValidation("a trusted root cannot serve TLS")
	}
	if _, ok := c.d.fw.staged.keyFor(e.cert.PublicKey); !ok {
		return 0, faultSchemaValidation("no key pair for the certificate")
	}
	prov := eprSelectors(body.child("ElementProvidingContext"))["ElementName"]
	if prov != tlsCollectionID && prov != gwmCollectionID {
		return 0, faultInvalidSelectors()
	}
	return h, nil
}

func createCredentialContext(c *call) (*eprRef, *wsFault) {
	if c.d.fw.staged.tlsContext >= 0 {
		return nil, faultAlreadyExists()
	}
	h, f := credentialCert(c)
	if f != nil {
		return nil, f
	}
	c.write(true, func(s *store) { s.tlsContext = h })
	return &eprRef{uri: classURI("AMT_TLSCredentialContext"), selectors: []eprSel{
		{name: "ElementInContext", ref: certRef(h)},
		{name: "ElementProvidingContext", ref: collectionRef()},
	}}, nil
}

func putCredentialContext(c *call, _ instance) (instance, *wsFault) {
	h, f := credentialCert(c)
	if f != nil {
		return instance{}, f
	}
	c.write(true, func(s *store) { s.tlsContext = h })
	return listCredentialContexts(c)[0], nil
}

func deleteCredentialContext(c *call, _ instance) *wsFault {
	if c.d.fw.staged.remoteTLS.enabled {
		return faultAccessDenied() // TLS still enabled: nothing would serve it
	}
	c.write(true, func(s *store) { s.tlsContext = -1 })
	return nil
}

func listTLSCollection(c *call) []instance {
	return []instance{{class: "AMT_TLSProtocolEndpointCollection", uri: classURI("AMT_TLSProtocolEndpointCollection"), props: []prop{
		p("ElementName", tlsCollectionID),
	}}}
}

// --- AMT_RedirectionService, CIM_KVMRedirectionSAP, IPS_OptInService
// (fixtures amt/redirectionservice/*, cim/kvm/*, ips/optin/*; §2.5, §7.7) ---

func redirectionService() classDef {
	uri := classURI("AMT_RedirectionService")
	list := func(c *call) []instance {
		s := &c.d.fw.staged
		return []instance{{class: "AMT_RedirectionService", uri: uri, props: serviceProps(
			"AMT_RedirectionService", "Intel(r) AMT Redirection Service",
			p("EnabledState", itoa(s.redirection)),
			p("ListenerEnabled", b2s(s.listenerEnabled)),
			p("Name", "Intel(r) AMT Redirection Service"),
			p("SystemCreationClassName", "CIM_ComputerSystem"),
			p("SystemName", "Intel(r) AMT"),
		)}}
	}
	return classDef{
		uri:  uri,
		list: list,
		put: func(c *call, _ instance) (instance, *wsFault) {
			v, ok := c.req.body.value("ListenerEnabled")
			if !ok {
				return instance{}, faultSchemaValidation("ListenerEnabled is required")
			}
			b, ok := parseBool(v)
			if !ok {
				return instance{}, faultSchemaValidation("ListenerEnabled must be true or false")
			}
			c.write(false, func(s *store) { s.listenerEnabled = b })
			return list(c)[0], nil
		},
		methods: map[string]method{
			"RequestStateChange": {run: func(c *call, in *xnode) (response, *wsFault) {
				v, _ := in.value("RequestedState")
				n, err := strconv.Atoi(v)
				if err != nil || n < redirectionDisabled || n > redirectionSOLIDER {
					return methodResponse(uri, "RequestStateChange", ptInvalidParameter), nil
				}
				c.write(false, func(s *store) { s.redirection = n })
				return methodResponse(uri, "RequestStateChange", ptSuccess), nil
			}},
		},
	}
}

func kvmRedirection() classDef {
	uri := classURI("CIM_KVMRedirectionSAP")
	return classDef{
		uri: uri,
		list: func(c *call) []instance {
			// EnabledState 2 enabled, 3 disabled; 6 "enabled but offline"
			// while the redirection listener is off (fixture cim/kvm/get.xml).
			state, req := "3", "3"
			if c.d.fw.staged.kvmEnabled {
				state, req = "2", "2"
				if !c.d.fw.staged.listenerEnabled {
					state = "6"
				}
			}
			return []instance{{class: "CIM_KVMRedirectionSAP", uri: uri, props: serviceProps(
				"CIM_KVMRedirectionSAP", "KVM Redirection Service Access Point",
				p("EnabledState", state),
				p("KVMProtocol", "4"),
				p("Name", "KVM Redirection Service Access Point"),
				p("RequestedState", req),
				p("SystemCreationClassName", "CIM_ComputerSystem"),
				p("SystemName", "ManagedSystem"),
			)}}
		},
		methods: map[string]method{
			"RequestStateChange": {run: func(c *call, in *xnode) (response, *wsFault) {
				v, _ := in.value("RequestedState")
				if v != "2" && v != "3" {
					return methodResponse(uri, "RequestStateChange", ptInvalidParameter), nil
				}
				c.write(false, func(s *store) { s.kvmEnabled = v == "2" })
				return methodResponse(uri, "RequestStateChange", ptSuccess), nil
			}},
		},
	}
}

func optInInstance(s *store) instance {
	return instance{class: "IPS_OptInService", uri: classURI("IPS_OptInService"), props: []prop{
		p("CanModifyOptInPolicy", "1"),
		p("CreationClassName", "IPS_OptInService"),
		p("ElementName", "Intel(r) AMT OptIn Service"),
		p("Name", "Intel(r) AMT OptIn Service"),
		p("OptInCodeTimeout", "120"),
		p("OptInDisplayTimeout", "300"),
		p("OptInRequired", strconv.FormatUint(uint64(s.optInRequired), 10)),
		p("OptInState", "0"),
		p("SystemCreationClassName", "CIM_ComputerSystem"),
		p("SystemName", "Intel(r) AMT"),
	}}
}

func listOptIn(c *call) []instance { return []instance{optInInstance(&c.d.fw.staged)} }

func putOptIn(c *call, _ instance) (instance, *wsFault) {
	v, _ := c.req.body.value("OptInRequired")
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || (n != 0 && n != 1 && n != optInAll) {
		return instance{}, faultSchemaValidation("OptInRequired must be 0, 1 or 4294967295")
	}
	c.write(false, func(s *store) { s.optInRequired = uint32(n) })
	return optInInstance(&c.d.fw.staged), nil
}

// --- Inventory: CIM_SoftwareIdentity, CIM_ComputerSystemPackage,
// CIM_Chassis, AMT_EthernetPortSettings (fixtures cim/software/identity,
// cim/computer/systempackage, cim/chassis, amt/ethernetport) ---

func listSoftware(c *call) []instance {
	cfg := &c.d.cfg
	parts := strings.Split(cfg.AMTVersion, ".")
	short := strings.Join(parts[:min(3, len(parts))], ".")
	build := "0"
	if len(parts) == 4 {
		build = parts[3]
	}
	sku := cfg.SKU
	if sku == "" {
		sku = "16392"
	}
	var out []instance
	for _, kv := range [][2]string{
		{"Flash", short}, {"Netstack", short}, {"AMTApps", short}, {"AMT", short}, {"Sku", sku},
		{"VendorID", "8086"}, {"Build Number", build}, {"Recovery Version", short},
		{"Recovery Build Num", build}, {"Legacy Mode", "False"}, {"AMT FW Core Version", short},
	} {
		out = append(out, instance{class: "CIM_SoftwareIdentity", uri: classURI("CIM_SoftwareIdentity"), props: []prop{
			p("InstanceID", kv[0]), p("IsEntity", "true"), p("VersionString", kv[1]),
		}})
	}
	return out
}

func listSystemPackage(c *call) []instance {
	u := c.d.uuid
	return []instance{{class: "CIM_ComputerSystemPackage", uri: classURI("CIM_ComputerSystemPackage"), props: []prop{
		pref("Antecedent", &eprRef{uri: classURI("CIM_Chassis"), selectors: []eprSel{{name: "CreationClassName", value: "CIM_Chassis"}, {name: "Tag", value: "CIM_Chassis"}}}),
		pref("Dependent", &eprRef{uri: classURI("CIM_ComputerSystem"), selectors: []eprSel{{name: "CreationClassName", value: "CIM_ComputerSystem"}, {name: "Name", value: "ManagedSystem"}}}),
		// PlatformGUID is the SMBIOS UUID bytes in hex (fixture: same bytes as GetUuid).
		p("PlatformGUID", strings.ToUpper(hex.EncodeToString(u[:]))),
	}}}
}

func listChassis(c *call) []instance {
	u := c.d.uuid
	return []instance{{class: "CIM_Chassis", uri: classURI("CIM_Chassis"), props: []prop{
		p("ChassisPackageType", "0"),
		p("CreationClassName", "CIM_Chassis"),
		p("ElementName", "Managed System Chassis"),
		p("Manufacturer", "Intel(R) Client Systems"),
		p("Model", "NUC9V7QNX"),
		p("OperationalStatus", "0"),
		p("PackageType", "3"),
		p("SerialNumber", fmt.Sprintf("SIM%X", u[10:16])),
		p("Tag", "CIM_Chassis"),
		p("Version", "K47174-402"),
	}}}
}

func listEthernet(c *call) []instance {
	mac := strings.ToLower(strings.ReplaceAll(c.d.cfg.MAC, ":", "-"))
	uri := classURI("AMT_EthernetPortSettings")
	return []instance{
		{class: "AMT_EthernetPortSettings", uri: uri, props: []prop{
			p("DHCPEnabled", "true"),
			p("DefaultGateway", "192.168.0.1"),
			p("ElementName", "Intel(r) AMT Ethernet Port Settings"),
			p("InstanceID", "Intel(r) AMT Ethernet Port Settings 0"),
			p("IpSyncEnabled", "true"),
			p("LinkIsUp", "true"),
			p("LinkPolicy", "1", "14"),
			p("MACAddress", mac),
			p("PhysicalConnectionType", "0"),
			p("PrimaryDNS", "192.168.0.1"),
			p("SecondaryDNS", "192.168.0.2"),
			p("SharedDynamicIP", "true"),
			p("SharedMAC", "true"),
			p("SharedStaticIp", "false"),
			p("SubnetMask", "255.255.255.0"),
		}},
		{class: "AMT_EthernetPortSettings", uri: uri, props: []prop{
			p("ConsoleTcpMaxRetransmissions", "5"),
			p("DHCPEnabled", "true"),
			p("ElementName", "Intel(r) AMT Ethernet Port Settings"),
			p("InstanceID", "Intel(r) AMT Ethernet Port Settings 1"),
			p("LinkControl", "2"),
			p("LinkIsUp", "false"),
			p("LinkPreference", "2"),
			p("MACAddress", "00-00-00-00-00-00"),
			p("PhysicalConnectionType", "3"),
			p("SharedMAC", "true"),
			p("WLANLinkProtectionLevel", "1"),
		}},
	}
}

// --- IPS_HostBasedSetupService (fixture ips/hostbasedsetup/get.xml, §2.3) ---

// hostBasedSetup exposes the service for reading. Its setup methods are
// host-based: firmware takes them only from the local host interface
// (LMS/MEI, §7), never over the network this simulator models, so over
// the network they are refused: AccessDenied before provisioning, the
// InvalidState return value after it.
func hostBasedSetup() classDef {
	uri := classURI("IPS_HostBasedSetupService")
	refuse := func(name string, invalidState int) method {
		return method{run: func(c *call, _ *xnode) (response, *wsFault) {
			if c.d.fw.state == amt.PostProvisioning {
				return methodResponse(uri, name, invalidState), nil
			}
			return response{}, faultAccessDenied()
		}}
	}
	return classDef{
		uri: uri,
		list: func(c *call) []instance {
			return []instance{{class: "IPS_HostBasedSetupService", uri: uri, props: []prop{
				p("AllowedControlModes", "2", "1"),
				p("CertChainStatus", "0"),
				p("ConfigurationNonce", base64.StdEncoding.EncodeToString(c.d.cfgNonce)),
				p("CreationClassName", "IPS_HostBasedSetupService"),
				p("CurrentControlMode", itoa(int(c.d.fw.mode))),
				p("ElementName", "Intel(r) AMT Host Based Setup Service"),
				p("Name", "Intel(r) AMT Host Based Setup Service"),
				p("SystemCreationClassName", "CIM_ComputerSystem"),
				p("SystemName", "Intel(r) AMT"),
			}}}
		},
		methods: map[string]method{
			"Setup":                refuse("Setup", hbsInvalidState),
			"AdminSetup":           refuse("AdminSetup", hbsInvalidState),
			"UpgradeClientToAdmin": refuse("UpgradeClientToAdmin", hbsInvalidState),
			"AddNextCertInChain":   refuse("AddNextCertInChain", 3),
		},
	}
}
