package firmware

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testKeys are RSA-2048 keys made once per test binary: keygen is slow
// under -race and the simulator's key pool exists for the same reason.
var testKeys = sync.OnceValues(func() ([]*rsa.PrivateKey, error) {
	keys := make([]*rsa.PrivateKey, 4)
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		keys[i] = k
	}
	return keys, nil
})

// rotatingKeys hands out the test keys in turn.
type rotatingKeys struct {
	keys []*rsa.PrivateKey
	n    atomic.Int64
}

func (r *rotatingKeys) Key() (*rsa.PrivateKey, error) {
	return r.keys[int(r.n.Add(1)-1)%len(r.keys)], nil
}

func newKeySource(t *testing.T) *rotatingKeys {
	t.Helper()
	keys, err := testKeys()
	if err != nil {
		t.Fatalf("generating test keys: %v", err)
	}
	return &rotatingKeys{keys: keys}
}

const testRealm = "Digest:727734D63A1FC0423736E48DA554E462"

func testConfig() Config {
	return Config{
		UUID:         "4bac9510-04a6-4321-bae2-d45ddf07b684",
		MAC:          "a4:ae:11:1e:46:53",
		IP:           "127.10.0.1",
		Hostname:     "sim-0001",
		DNSSuffix:    "vprodemo.com",
		AMTVersion:   "16.1.25.2124",
		SKU:          "16392",
		Realm:        testRealm,
		MEBxPassword: "admin",
		TrustedRoots: []string{"sha256:82f2ed575db4abe462499cf550dbff9584980d70a0272894639c3653b9ad932c"},
		Seed:         42,
	}
}

func newTestDevice(t *testing.T, mutate func(*Config)) *Device {
	t.Helper()
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	d, err := NewDevice(cfg, Realism{}, newKeySource(t))
	if err != nil {
		t.Fatalf("NewDevice: %v", err)
	}
	return d
}

// testCA is a throwaway certificate authority for provisioning chains and
// for signing the device's TLS certificate.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"amtprov test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

// issue signs a leaf for pub.
func (ca *testCA) issue(t *testing.T, pub any, subject pkix.Name, dns []string, eku []x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  eku,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// provisioningChain is a §6.2-shaped client chain: leaf with the Intel OU
// and serverAuth, then the root.
func provisioningChain(t *testing.T, ca *testCA) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := ca.issue(t, &key.PublicKey, pkix.Name{CommonName: "vprodemo.com", OrganizationalUnit: []string{"Intel(R) Client Setup Certificate"}},
		[]string{"vprodemo.com"}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
	return tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}
}

// startDevice serves d over real TLS the way amtsim's 16993 listener does:
// the certificate d presents now, client certificates requested (chain
// policy is the listener's job, not the firmware's).
func startDevice(t *testing.T, d *Device) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(d.Handler())
	srv.TLS = &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return d.ServerCertificate(), nil },
		ClientAuth:     tls.RequestClientCert,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// setupClient is the provisioning server's side of the §6.1 session: it
// presents the chain and, like MeshCentral, does not verify the device's
// self-signed certificate.
func setupClient(chain tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates:       []tls.Certificate{chain},
		InsecureSkipVerify: true, //nolint:gosec // the setup-mode device certificate is self-signed by design (§6.1)
	}}}
}

// postXML sends one request and returns the status and body.
func postXML(t *testing.T, c *http.Client, url, msg string, header ...string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/soap+xml; charset=utf-8")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

// parsed is a response envelope read back for assertions.
type parsed struct {
	action, relatesTo string
	body              *xnode // first child of a:Body, nil when empty
	raw               []byte
}

func parseResponse(t *testing.T, b []byte) parsed {
	t.Helper()
	root, err := parseTree(b)
	if err != nil {
		t.Fatalf("response is not XML: %v\n%s", err, b)
	}
	if root.name.Space != nsSOAP || root.name.Local != "Envelope" {
		t.Fatalf("response root is %v", root.name)
	}
	var out parsed
	out.raw = b
	hdr, body := root.child("Header"), root.child("Body")
	if hdr == nil || body == nil {
		t.Fatalf("response lacks Header or Body:\n%s", b)
	}
	out.action, _ = hdr.value("Action")
	out.relatesTo, _ = hdr.value("RelatesTo")
	if len(body.kids) > 0 {
		out.body = body.kids[0]
	}
	return out
}

// find walks a path of local names below n.
func (n *xnode) find(path ...string) *xnode {
	for _, p := range path {
		n = n.child(p)
	}
	return n
}

func (n *xnode) mustValue(t *testing.T, path ...string) string {
	t.Helper()
	c := n.find(path...)
	if c == nil {
		t.Fatalf("no %s in response", strings.Join(path, "/"))
	}
	return strings.TrimSpace(c.text)
}

// digestPassword is what a provisioner sends in SetAdminAclEntryEx (§7.4).
func digestPassword(user, realm, pass string) string {
	s := md5.Sum([]byte(user + ":" + realm + ":" + pass))
	return base64.StdEncoding.EncodeToString(s[:])
}

// fixtureDir finds shared/fixtures/wsman-responses beside an ancestor of
// the package directory: /work/shared in this checkout, shared/ next to
// the clone in CI.
func fixtureDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		cand := filepath.Join(dir, "shared", "fixtures", "wsman-responses")
		if st, err := os.Stat(cand); err == nil && st.IsDir() {
			return cand
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("shared/fixtures/wsman-responses not found beside any ancestor of the package directory; the fixtures are required")
		}
		dir = parent
	}
}

func bytesContains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }

// issueNoT is issue for helpers without a *testing.T; it panics on error.
func (ca *testCA) issueNoT(pub any, cn string) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{cn},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return cert
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
