package firmware

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	gwmamt "github.com/open-amt-cloud-toolkit/go-wsman-messages/pkg/amt"
	"github.com/open-amt-cloud-toolkit/go-wsman-messages/pkg/amt/publickey"
	"github.com/open-amt-cloud-toolkit/go-wsman-messages/pkg/amt/redirection"
	gwmcim "github.com/open-amt-cloud-toolkit/go-wsman-messages/pkg/cim"
	gwmips "github.com/open-amt-cloud-toolkit/go-wsman-messages/pkg/ips"
	"github.com/open-amt-cloud-toolkit/go-wsman-messages/pkg/ips/hostbasedsetup"
	"github.com/open-amt-cloud-toolkit/go-wsman-messages/pkg/wsman"
)

// shape is the structure of an element: its children by {namespace}name,
// repeated siblings merged (Pull items, multi-valued properties).
type shape map[string]shape

func shapeOf(n *xnode) shape {
	s := shape{}
	for _, k := range n.kids {
		key := "{" + k.name.Space + "}" + k.name.Local
		sub := shapeOf(k)
		if prev, ok := s[key]; ok {
			mergeShape(prev, sub)
		} else {
			s[key] = sub
		}
	}
	return s
}

func mergeShape(dst, src shape) {
	for k, v := range src {
		if prev, ok := dst[k]; ok {
			mergeShape(prev, v)
		} else {
			dst[k] = v
		}
	}
}

// shapeDiff lists the paths present in only one of a (want) and b (got).
func shapeDiff(path string, want, got shape) []string {
	var out []string
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			out = append(out, "missing "+path+"/"+k)
			continue
		}
		out = append(out, shapeDiff(path+"/"+k, w, g)...)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, "extra "+path+"/"+k)
		}
	}
	sort.Strings(out)
	return out
}

// fixtureDiff compares an answer with its fixture. Every element of the
// fixture must be answered. The answer may carry an element the fixture
// lacks only if another recording of the same class has it: get.xml and
// pull.xml come from different firmware versions (the GeneralSettings Get
// has ThunderboltDockEnabled, the Pull of an older device does not), and a
// device is one version.
func fixtureDiff(t *testing.T, dir, fixture string, want, got []byte) []string {
	t.Helper()
	wantShape, gotShape := bodyShape(t, want), bodyShape(t, got)
	widened := bodyShape(t, want)
	recorded := shape{}
	for _, f := range []string{"get.xml", "pull.xml", "put.xml"} {
		b, err := os.ReadFile(filepath.Join(dir, filepath.Dir(fixture), f))
		if err != nil {
			continue
		}
		collectInstances(bodyShape(t, b), recorded)
	}
	widenInstances(widened, recorded)
	var out []string
	for _, d := range shapeDiff("Body", wantShape, gotShape) {
		if strings.HasPrefix(d, "missing ") {
			out = append(out, d)
		}
	}
	for _, d := range shapeDiff("Body", widened, gotShape) {
		if strings.HasPrefix(d, "extra ") {
			out = append(out, d)
		}
	}
	return out
}

// collectInstances merges every element named like a class (AMT_, CIM_,
// IPS_) found in s into out, by key.
func collectInstances(s, out shape) {
	for k, v := range s {
		local := k[strings.LastIndexByte(k, '}')+1:]
		if classURI(local) != "" {
			if prev, ok := out[k]; ok {
				mergeShape(prev, v)
			} else {
				out[k] = copyShape(v)
			}
			continue
		}
		collectInstances(v, out)
	}
}

// widenInstances merges the recorded instance shapes into s's instances.
func widenInstances(s, recorded shape) {
	for k, v := range s {
		if r, ok := recorded[k]; ok {
			mergeShape(v, copyShape(r))
			continue
		}
		widenInstances(v, recorded)
	}
}

func copyShape(s shape) shape {
	c := shape{}
	for k, v := range s {
		c[k] = copyShape(v)
	}
	return c
}

// bodyShape is the shape of an envelope's Body.
func bodyShape(t *testing.T, b []byte) shape {
	t.Helper()
	root, err := parseTree(b)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	body := root.child("Body")
	if body == nil {
		t.Fatalf("no Body in\n%s", b)
	}
	return shapeOf(body)
}

// putXML is a Put as MeshCentral and RPS render it (§8.1): header selector,
// namespaced class element, properties in the class namespace.
func putXML(class, selName, selValue string, props ...[2]string) string {
	uri := classURI(class)
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="utf-8"?><Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns="http://www.w3.org/2003/05/soap-envelope"><Header><a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/Put</a:Action><a:To>/wsman</a:To><w:ResourceURI>%s</w:ResourceURI><a:MessageID>77</a:MessageID><a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo><w:OperationTimeout>PT60S</w:OperationTimeout>`, uri)
	if selName != "" {
		fmt.Fprintf(&b, `<w:SelectorSet><w:Selector Name="%s">%s</w:Selector></w:SelectorSet>`, selName, selValue)
	}
	fmt.Fprintf(&b, `</Header><Body><h:%s xmlns:h="%s">`, class, uri)
	for _, kv := range props {
		fmt.Fprintf(&b, "<h:%s>%s</h:%s>", kv[0], kv[1], kv[0])
	}
	fmt.Fprintf(&b, "</h:%s></Body></Envelope>", class)
	return b.String()
}

// credentialContextPut re-points the TLS credential context (GWM v1.8.1 has
// no Put builder for it).
func credentialContextPut(certID string) string {
	return strings.Replace(strings.Replace(gwmamt.NewMessages().TLSCredentialContext.Create(certID),
		"http://schemas.xmlsoap.org/ws/2004/09/transfer/Create", "http://schemas.xmlsoap.org/ws/2004/09/transfer/Put", 1),
		"<a:MessageID>0</a:MessageID>", "<a:MessageID>78</a:MessageID>", 1)
}

// fixtureStep sends one request whose answer must have the fixture's shape.
type fixtureStep struct {
	fixture string // path under wsman-responses
	msg     func(w *walk) string
	after   func(t *testing.T, w *walk, r parsed)
}

// walk carries what earlier steps learned.
type walk struct {
	m      gwmamt.Messages
	cim    gwmcim.Messages
	ips    gwmips.Messages
	enum   map[string]string // class → last EnumerationContext
	keyID  string
	key2ID string
	certID string
	rootID string
	ca     *testCA
	d      *Device
}

func enumStep(fixture, class string, msg func(w *walk) string) fixtureStep {
	return fixtureStep{fixture: fixture, msg: msg, after: func(t *testing.T, w *walk, r parsed) {
		w.enum[class] = r.body.mustValue(t, "EnumerationContext")
	}}
}

func pullStep(fixture, class string, pull func(w *walk, ctx string) string) fixtureStep {
	return fixtureStep{fixture: fixture, msg: func(w *walk) string { return pull(w, w.enum[class]) }}
}

// threeSteps is get, enumerate, pull of a class.
func threeSteps(dir, class string, get, enum func(w *walk) string, pull func(w *walk, ctx string) string) []fixtureStep {
	return []fixtureStep{
		{fixture: dir + "/get.xml", msg: get},
		enumStep(dir+"/enumerate.xml", class, enum),
		pullStep(dir+"/pull.xml", class, pull),
	}
}

// setupSteps run in the §6.1 session of a device in setup mode.
func setupSteps() []fixtureStep {
	var s []fixtureStep
	s = append(s, threeSteps("amt/general", "AMT_GeneralSettings",
		func(w *walk) string { return w.m.GeneralSettings.Get() }, func(w *walk) string { return w.m.GeneralSettings.Enumerate() },
		func(w *walk, c string) string { return w.m.GeneralSettings.Pull(c) })...)
	s = append(s, threeSteps("amt/setupandconfiguration", "AMT_SetupAndConfigurationService",
		func(w *walk) string { return w.m.SetupAndConfigurationService.Get() }, func(w *walk) string { return w.m.SetupAndConfigurationService.Enumerate() },
		func(w *walk, c string) string { return w.m.SetupAndConfigurationService.Pull(c) })...)
	s = append(s, threeSteps("amt/authorization", "AMT_AuthorizationService",
		func(w *walk) string { return w.m.AuthorizationService.Get() }, func(w *walk) string { return w.m.AuthorizationService.Enumerate() },
		func(w *walk, c string) string { return w.m.AuthorizationService.Pull(c) })...)
	s = append(s, threeSteps("amt/timesynchronization", "AMT_TimeSynchronizationService",
		func(w *walk) string { return w.m.TimeSynchronizationService.Get() }, func(w *walk) string { return w.m.TimeSynchronizationService.Enumerate() },
		func(w *walk, c string) string { return w.m.TimeSynchronizationService.Pull(c) })...)
	s = append(s, threeSteps("amt/publickey/management", "AMT_PublicKeyManagementService",
		func(w *walk) string { return w.m.PublicKeyManagementService.Get() }, func(w *walk) string { return w.m.PublicKeyManagementService.Enumerate() },
		func(w *walk, c string) string { return w.m.PublicKeyManagementService.Pull(c) })...)
	s = append(s,
		fixtureStep{fixture: "amt/setupandconfiguration/setmebxpassword.xml", msg: func(w *walk) string { return w.m.SetupAndConfigurationService.SetMEBXPassword("Mebx-Pa55!") }},
		fixtureStep{fixture: "amt/authorization/setadminaclentryex.xml", msg: func(w *walk) string {
			return w.m.AuthorizationService.SetAdminACLEntryEx("admin", digestPassword("admin", testRealm, "Adm1n-Pa55!"))
		}},
		fixtureStep{fixture: "amt/authorization/getadminaclentry.xml", msg: func(w *walk) string { return w.m.AuthorizationService.GetAdminAclEntry() }},
		fixtureStep{fixture: "amt/timesynchronization/getlowaccuracytimesynch.xml", msg: func(w *walk) string { return w.m.TimeSynchronizationService.GetLowAccuracyTimeSynch() }},
		fixtureStep{fixture: "amt/timesynchronization/sethighaccuracytimesynch.xml", msg: func(w *walk) string {
			return w.m.TimeSynchronizationService.SetHighAccuracyTimeSynch(1700000000, 1700000001, 1700000002)
		}},
		fixtureStep{fixture: "amt/publickey/management/generatekeypair.xml", msg: func(w *walk) string {
			return w.m.PublicKeyManagementService.GenerateKeyPair(publickey.GenerateKeyPair_INPUT{KeyAlgorithm: 0, KeyLength: 2048})
		}, after: func(t *testing.T, w *walk, r parsed) { w.keyID = eprSelectors(r.body.child("KeyPair"))["InstanceID"] }},
		fixtureStep{fixture: "amt/publickey/management/generatepkcs10requestex.xml", msg: func(w *walk) string {
			// RPS's form: the KeyPair EPR as markup inside h:KeyPair.
			return strings.Replace(w.m.PublicKeyManagementService.GeneratePKCS10RequestEx(publickey.PKCS10Request{
				KeyPair: "KEYPAIR", NullSignedCertificateRequest: w.nullCSR(), SigningAlgorithm: publickey.SHA256RSA}),
				"<h:KeyPair>KEYPAIR</h:KeyPair>",
				`<h:KeyPair><a:Address>/wsman</a:Address><a:ReferenceParameters><w:ResourceURI>http://intel.com/wbem/wscim/1/amt-schema/1/AMT_PublicPrivateKeyPair</w:ResourceURI><w:SelectorSet><w:Selector Name="InstanceID">`+w.keyID+`</w:Selector></w:SelectorSet></a:ReferenceParameters></h:KeyPair>`, 1)
		}, after: func(t *testing.T, w *walk, r parsed) {
			der, err := base64.StdEncoding.DecodeString(r.body.mustValue(t, "SignedCertificateRequest"))
			if err != nil {
				t.Fatal(err)
			}
			csr, err := x509.ParseCertificateRequest(der)
			if err != nil || csr.CheckSignature() != nil {
				t.Fatalf("SignedCertificateRequest is not a valid signed CSR: %v", err)
			}
		}},
		fixtureStep{fixture: "amt/publickey/management/addtrustedrootcertificate.xml", msg: func(w *walk) string {
			return w.m.PublicKeyManagementService.AddTrustedRootCertificate(base64.StdEncoding.EncodeToString(w.ca.cert.Raw))
		}, after: func(t *testing.T, w *walk, r parsed) {
			w.rootID = eprSelectors(r.body.child("CreatedCertificate"))["InstanceID"]
		}},
		fixtureStep{fixture: "amt/publickey/management/addcertificate.xml", msg: func(w *walk) string {
			return w.m.PublicKeyManagementService.AddCertificate(base64.StdEncoding.EncodeToString(w.leafFor(w.keyID).Raw))
		}, after: func(t *testing.T, w *walk, r parsed) {
			w.certID = eprSelectors(r.body.child("CreatedCertificate"))["InstanceID"]
		}},
	)
	s = append(s, threeSteps("amt/publicprivate", "AMT_PublicPrivateKeyPair",
		func(w *walk) string { return w.m.PublicPrivateKeyPair.Get() }, func(w *walk) string { return w.m.PublicPrivateKeyPair.Enumerate() },
		func(w *walk, c string) string { return w.m.PublicPrivateKeyPair.Pull(c) })...)
	s = append(s, threeSteps("amt/publickey/certificate", "AMT_PublicKeyCertificate",
		func(w *walk) string { return w.m.PublicKeyCertificate.Get() }, func(w *walk) string { return w.m.PublicKeyCertificate.Enumerate() },
		func(w *walk, c string) string { return w.m.PublicKeyCertificate.Pull(c) })...)
	s = append(s,
		fixtureStep{fixture: "amt/tls/credentialcontext/create.xml", msg: func(w *walk) string { return w.m.TLSCredentialContext.Create(w.certID) }},
		enumStep("amt/tls/credentialcontext/enumerate.xml", "AMT_TLSCredentialContext", func(w *walk) string { return w.m.TLSCredentialContext.Enumerate() }),
		pullStep("amt/tls/credentialcontext/pull.xml", "AMT_TLSCredentialContext", func(w *walk, c string) string { return w.m.TLSCredentialContext.Pull(c) }),
		fixtureStep{fixture: "amt/tls/credentialcontext/put.xml", msg: func(w *walk) string { return credentialContextPut(w.certID) }},
	)
	s = append(s, threeSteps("amt/tls/settingdata", "AMT_TLSSettingData",
		func(w *walk) string { return w.m.TLSSettingData.Get() }, func(w *walk) string { return w.m.TLSSettingData.Enumerate() },
		func(w *walk, c string) string { return w.m.TLSSettingData.Pull(c) })...)
	s = append(s, fixtureStep{fixture: "amt/tls/settingdata/put.xml", msg: func(w *walk) string { return tlsSettingsPut(79, true, false) }})
	s = append(s, threeSteps("amt/tls/protocolendpointcollection", "AMT_TLSProtocolEndpointCollection",
		func(w *walk) string { return getXML("AMT_TLSProtocolEndpointCollection") }, func(w *walk) string { return enumXML("AMT_TLSProtocolEndpointCollection") },
		func(w *walk, c string) string { return pullXML("AMT_TLSProtocolEndpointCollection", c) })...)
	s = append(s, threeSteps("amt/redirectionservice", "AMT_RedirectionService",
		func(w *walk) string { return w.m.RedirectionService.Get() }, func(w *walk) string { return w.m.RedirectionService.Enumerate() },
		func(w *walk, c string) string { return w.m.RedirectionService.Pull(c) })...)
	s = append(s,
		fixtureStep{fixture: "amt/redirectionservice/requeststatechange.xml", msg: func(w *walk) string { return w.m.RedirectionService.RequestStateChange(redirection.EnableIDERAndSOL) }},
		fixtureStep{fixture: "amt/redirectionservice/put.xml", msg: func(w *walk) string {
			return putXML("AMT_RedirectionService", "Name", "Intel(r) AMT Redirection Service",
				[2]string{"CreationClassName", "AMT_RedirectionService"}, [2]string{"ElementName", "Intel(r) AMT Redirection Service"},
				[2]string{"EnabledState", "32771"}, [2]string{"ListenerEnabled", "true"}, [2]string{"Name", "Intel(r) AMT Redirection Service"},
				[2]string{"SystemCreationClassName", "CIM_ComputerSystem"}, [2]string{"SystemName", "Intel(r) AMT"})
		}},
	)
	s = append(s, threeSteps("cim/kvm", "CIM_KVMRedirectionSAP",
		func(w *walk) string { return w.cim.KVMRedirectionSAP.Get() }, func(w *walk) string { return w.cim.KVMRedirectionSAP.Enumerate() },
		func(w *walk, c string) string { return w.cim.KVMRedirectionSAP.Pull(c) })...)
	s = append(s, threeSteps("ips/optin", "IPS_OptInService",
		func(w *walk) string { return w.ips.OptInService.Get() }, func(w *walk) string { return w.ips.OptInService.Enumerate() },
		func(w *walk, c string) string { return w.ips.OptInService.Pull(c) })...)
	s = append(s, threeSteps("cim/software/identity", "CIM_SoftwareIdentity",
		func(w *walk) string { return w.cim.SoftwareIdentity.Get() }, func(w *walk) string { return w.cim.SoftwareIdentity.Enumerate() },
		func(w *walk, c string) string { return w.cim.SoftwareIdentity.Pull(c) })...)
	s = append(s, threeSteps("cim/computer/systempackage", "CIM_ComputerSystemPackage",
		func(w *walk) string { return w.cim.ComputerSystemPackage.Get() }, func(w *walk) string { return w.cim.ComputerSystemPackage.Enumerate() },
		func(w *walk, c string) string { return w.cim.ComputerSystemPackage.Pull(c) })...)
	s = append(s, threeSteps("cim/chassis", "CIM_Chassis",
		func(w *walk) string { return w.cim.Chassis.Get() }, func(w *walk) string { return w.cim.Chassis.Enumerate() },
		func(w *walk, c string) string { return w.cim.Chassis.Pull(c) })...)
	s = append(s, threeSteps("amt/ethernetport", "AMT_EthernetPortSettings",
		func(w *walk) string { return w.m.EthernetPortSettings.Get() }, func(w *walk) string { return w.m.EthernetPortSettings.Enumerate() },
		func(w *walk, c string) string { return w.m.EthernetPortSettings.Pull(c) })...)
	s = append(s, threeSteps("ips/hostbasedsetup", "IPS_HostBasedSetupService",
		func(w *walk) string { return w.ips.HostBasedSetupService.Get() }, func(w *walk) string { return w.ips.HostBasedSetupService.Enumerate() },
		func(w *walk, c string) string { return w.ips.HostBasedSetupService.Pull(c) })...)
	s = append(s,
		fixtureStep{fixture: "amt/publickey/certificate/delete.xml", msg: func(w *walk) string { return w.m.PublicKeyCertificate.Delete(w.rootID) }},
		fixtureStep{fixture: "amt/publickey/management/generatekeypair.xml", msg: func(w *walk) string {
			return w.m.PublicKeyManagementService.GenerateKeyPair(publickey.GenerateKeyPair_INPUT{KeyAlgorithm: 0, KeyLength: 2048})
		}, after: func(t *testing.T, w *walk, r parsed) { w.key2ID = eprSelectors(r.body.child("KeyPair"))["InstanceID"] }},
		fixtureStep{fixture: "amt/publicprivate/delete.xml", msg: func(w *walk) string { return w.m.PublicPrivateKeyPair.Delete(w.key2ID) }},
		fixtureStep{fixture: "amt/setupandconfiguration/commitchanges.xml", msg: func(w *walk) string { return w.m.SetupAndConfigurationService.CommitChanges() }},
	)
	return s
}

// provisionedSteps run with digest auth on a device another console
// provisioned.
func provisionedSteps() []fixtureStep {
	return []fixtureStep{
		{fixture: "ips/hostbasedsetup/setup.xml", msg: func(w *walk) string {
			return w.ips.HostBasedSetupService.Setup(hostbasedsetup.AdminPassEncryptionTypeHTTPDigestMD5A1, testRealm, "Adm1n-Pa55!")
		}},
		{fixture: "ips/hostbasedsetup/adminsetup.xml", msg: func(w *walk) string {
			return w.ips.HostBasedSetupService.AdminSetup(hostbasedsetup.AdminPassEncryptionTypeHTTPDigestMD5A1, testRealm, "Adm1n-Pa55!", "ZxxE0cFy590zDBIR39q6QU6iuII=", hostbasedsetup.SigningAlgorithmRSASHA2256, "c2ln")
		}},
		{fixture: "ips/hostbasedsetup/upgradeclienttoadmin.xml", msg: func(w *walk) string {
			return w.ips.HostBasedSetupService.UpgradeClientToAdmin("ZxxE0cFy590zDBIR39q6QU6iuII=", hostbasedsetup.SigningAlgorithmRSASHA2256, "c2ln")
		}},
		{fixture: "ips/hostbasedsetup/addnextcertinchain.xml", msg: func(w *walk) string {
			return w.ips.HostBasedSetupService.AddNextCertInChain(base64.StdEncoding.EncodeToString(w.ca.cert.Raw), true, false)
		}},
		{fixture: "amt/setupandconfiguration/unprovision.xml", msg: func(w *walk) string { return w.m.SetupAndConfigurationService.Unprovision(1) }},
	}
}

// fixtureExclusions are fixtures of supported classes that the simulator
// does not answer in their shape, with the reason.
var fixtureExclusions = map[string]string{
	"amt/setupandconfiguration/getuuid.xml":            "hand-made in request form (unprefixed UUID in the SOAP namespace); firmware answers g:GetUuid_OUTPUT/g:UUID, checked in TestGetUuid",
	"amt/setupandconfiguration/getuuid-bad.xml":        "hand-made negative sample (UUID 'baduuid') in request form",
	"amt/setupandconfiguration/partialunprovision.xml": "PartialUnprovision is not modelled (answered ActionNotSupported)",
	"amt/authorization/setaclenabledstate.xml":         "user ACL methods are not modelled",
	"amt/authorization/removeuseraclentry.xml":         "user ACL methods are not modelled",
	"amt/authorization/getaclenabledstate.xml":         "user ACL methods are not modelled",
	"amt/authorization/getuseraclentryex.xml":          "user ACL methods are not modelled",
	"amt/authorization/getadminaclentrystatus.xml":     "not modelled",
	"amt/authorization/getadminnetaclentrystatus.xml":  "not modelled",
	"amt/authorization/enumerateuseraclentries.xml":    "user ACL methods are not modelled",
	"amt/publickey/management/addkey.xml":              "AddKey (importing a private key) is not modelled",
	"amt/publickey/management/delete.xml":              "Delete of the service singleton is not meaningful",
	"amt/publickey/certificate/put.xml":                "certificates are immutable in the simulator (Put answered ActionNotSupported)",
	"amt/ethernetport/put.xml":                         "network settings are not writable in the simulator",
	"ips/optin/canceloptin.xml":                        "user-consent code flow is not modelled",
	"ips/optin/startoptin.xml":                         "user-consent code flow is not modelled",
	"ips/optin/sendoptincode.xml":                      "user-consent code flow is not modelled",
}

// supportedFixtureDirs are the fixture folders of the classes the
// simulator implements; every file in them is either walked or excluded.
var supportedFixtureDirs = []string{
	"amt/general", "amt/setupandconfiguration", "amt/authorization", "amt/timesynchronization",
	"amt/publickey/management", "amt/publickey/certificate", "amt/publicprivate", "amt/tls/settingdata",
	"amt/tls/credentialcontext", "amt/tls/protocolendpointcollection", "amt/redirectionservice", "cim/kvm",
	"ips/optin", "cim/software/identity", "cim/computer/systempackage", "cim/chassis", "amt/ethernetport",
	"ips/hostbasedsetup",
}

// TestFixtureShapes walks the recorded firmware responses: for every
// operation the simulator supports, its answer has the same body elements
// and namespaces as the fixture, recursively (values may differ).
func TestFixtureShapes(t *testing.T) {
	dir := fixtureDir(t)
	ca := newTestCA(t, "fixture walk root")
	newWalk := func(d *Device) *walk {
		return &walk{m: gwmamt.NewMessages(), cim: gwmcim.NewMessages(), ips: gwmips.NewMessages(), enum: map[string]string{}, ca: ca, d: d}
	}
	covered := map[string]bool{}
	run := func(t *testing.T, w *walk, steps []fixtureStep, send func(t *testing.T, msg string) []byte) {
		for i, st := range steps {
			want, err := os.ReadFile(filepath.Join(dir, st.fixture))
			if err != nil {
				t.Fatalf("fixture %s: %v", st.fixture, err)
			}
			covered[st.fixture] = true
			msg := st.msg(w)
			got := send(t, msg)
			r := parseResponse(t, got)
			if r.body != nil && r.body.name.Local == "Fault" {
				t.Fatalf("step %d (%s): fault\n%s\nrequest:\n%s", i, st.fixture, got, msg)
			}
			reqID := parseRequestID(t, msg)
			if r.relatesTo != reqID || !strings.HasSuffix(r.action, "Response") {
				t.Errorf("step %d (%s): RelatesTo %q (want %q), Action %q", i, st.fixture, r.relatesTo, reqID, r.action)
			}
			if diff := fixtureDiff(t, dir, st.fixture, want, got); len(diff) > 0 {
				t.Errorf("step %d (%s): body shape differs from the fixture:\n  %s\nanswer:\n%s", i, st.fixture, strings.Join(diff, "\n  "), got)
			}
			if st.after != nil {
				st.after(t, w, r)
			}
		}
	}

	t.Run("setup session", func(t *testing.T) {
		d := newTestDevice(t, nil)
		srv := startDevice(t, d)
		c := setupClient(provisioningChain(t, ca))
		run(t, newWalk(d), setupSteps(), func(t *testing.T, msg string) []byte {
			t.Helper()
			status, b, _ := postXML(t, c, srv.URL+"/wsman", msg)
			if status != http.StatusOK {
				t.Fatalf("status %d:\n%s\nrequest:\n%s", status, b, msg)
			}
			return b
		})
	})
	t.Run("provisioned, digest", func(t *testing.T) {
		d := newTestDevice(t, func(c *Config) { c.Provisioned, c.AdminUser, c.AdminPassword = true, "admin", "Adm1n-Pa55!" })
		srv := startDevice(t, d)
		wc := wsman.NewClient(srv.URL+"/wsman", "admin", "Adm1n-Pa55!", true)
		wc.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // another console's certificate
		run(t, newWalk(d), provisionedSteps(), func(t *testing.T, msg string) []byte {
			t.Helper()
			b, err := wc.Post(msg)
			if err != nil {
				t.Fatalf("%v\nrequest:\n%s", err, msg)
			}
			return b
		})
	})

	// Every fixture of a supported class was walked or is excused.
	for _, sub := range supportedFixtureDirs {
		files, err := filepath.Glob(filepath.Join(dir, sub, "*.xml"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no fixtures in %s (%v)", sub, err)
		}
		for _, f := range files {
			rel := filepath.ToSlash(strings.TrimPrefix(f, dir+string(filepath.Separator)))
			if !covered[rel] && fixtureExclusions[rel] == "" {
				t.Errorf("fixture %s is neither walked nor excluded with a reason", rel)
			}
		}
	}
}

func parseRequestID(t *testing.T, msg string) string {
	t.Helper()
	req, err := parseEnvelope([]byte(msg))
	if err != nil {
		t.Fatalf("request does not parse: %v", err)
	}
	return req.messageID
}

// deviceKey is the private half of a key pair the device generated (the
// test owns the key source, so it can look).
func (w *walk) deviceKey(keyID string) *rsa.PrivateKey {
	h, _ := handleOf(keyID, keyIDPrefix)
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	k, ok := w.d.fw.staged.key(h)
	if !ok {
		panic("no key pair " + keyID)
	}
	return k.key
}

// nullCSR is the CSR a provisioner builds for the device key before
// GeneratePKCS10RequestEx; firmware re-signs it with the key pair.
func (w *walk) nullCSR() string {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "sim-0001.vprodemo.com"}}, w.deviceKey(w.keyID))
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// leafFor issues a certificate for the device key pair with this ID.
func (w *walk) leafFor(keyID string) *x509.Certificate {
	return w.ca.issueNoT(&w.deviceKey(keyID).PublicKey, "sim-0001.vprodemo.com")
}

func getXML(class string) string {
	return wsmanXML(actionGet, class, "<Body></Body>")
}

func enumXML(class string) string {
	return wsmanXML(actionEnumerate, class, `<Body><Enumerate xmlns="http://schemas.xmlsoap.org/ws/2004/09/enumeration" /></Body>`)
}

func pullXML(class, ctx string) string {
	return wsmanXML(actionPull, class, `<Body><Pull xmlns="http://schemas.xmlsoap.org/ws/2004/09/enumeration"><EnumerationContext>`+ctx+`</EnumerationContext><MaxElements>999</MaxElements><MaxCharacters>99999</MaxCharacters></Pull></Body>`)
}

func wsmanXML(action, class, body string) string {
	return `<?xml version="1.0" encoding="utf-8"?><Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns="http://www.w3.org/2003/05/soap-envelope"><Header><a:Action>` + action +
		`</a:Action><a:To>/wsman</a:To><w:ResourceURI>` + classURI(class) + `</w:ResourceURI><a:MessageID>5</a:MessageID><a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo><w:OperationTimeout>PT60S</w:OperationTimeout></Header>` + body + `</Envelope>`
}
