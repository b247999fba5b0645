package certauthority_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/telemetry"
	ca "github.com/amtprov/amtprov/services/certauthority"
)

const testSuffix = "corp.example.com"

// fastOrgKeyBits keeps most tests off RSA-3072 key generation (about a
// second of CPU each); TestSignIssuesRecordsAndAnnounces keeps the default
// and checks it is 3072.
const fastOrgKeyBits = 2048

func fingerprint(der []byte, alg string) string {
	if alg == "sha1" {
		s := sha1.Sum(der)
		return hex.EncodeToString(s[:])
	}
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

func keyring(t *testing.T) *secrets.Keyring { t.Helper(); return keyringB(t) }

func keyringB(t testing.TB) *secrets.Keyring {
	t.Helper()
	k, err := secrets.NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{7}, 32), "old": bytes.Repeat([]byte{9}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// env is one database and NATS server shared by CA replicas.
type env struct {
	pool *pgxpool.Pool
	keys *secrets.Keyring
	url  string
	nc   *nats.Conn // a client connection
	js   jetstream.JetStream
}

func newEnv(t *testing.T) *env {
	t.Helper()
	url := bustest.RunServer(t)
	nc, js := bustest.ConnectTo(t, url)
	return &env{pool: storetest.New(t), keys: keyring(t), url: url, nc: nc, js: js}
}

// replica starts one CA with its own NATS connection and telemetry, running
// until the test ends.
func (e *env) replica(t *testing.T, cfg ca.Config) (*ca.CA, *tracetest.SpanRecorder) {
	t.Helper()
	nc, js := bustest.ConnectTo(t, e.url)
	tel, rec := telemetry.NewForTest("certauthority")
	c, err := ca.New(context.Background(), cfg, e.pool, e.keys, nc, js, tel, nil)
	if err != nil {
		t.Fatalf("certauthority.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	// Ready when this replica's subscriptions (sign + three domain verbs)
	// are in place; the flush round trip makes sure the server has them.
	deadline := time.Now().Add(10 * time.Second)
	for nc.NumSubscriptions() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("CA replica subscribed %d subjects, want 4", nc.NumSubscriptions())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c, rec
}

func rsaPubB(b testing.TB) (*rsa.PrivateKey, string, string) { b.Helper(); return rsaPubBits(b, 2048) }

func rsaPub(t *testing.T, bits int) (*rsa.PrivateKey, string, string) {
	t.Helper()
	return rsaPubBits(t, bits)
}

func rsaPubBits(t testing.TB, bits int) (*rsa.PrivateKey, string, string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k, base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(&k.PublicKey)), base64.StdEncoding.EncodeToString(spki)
}

func devUUID(i int) string { return fmt.Sprintf("939b524b-13d4-1d18-e487-%012x", i) }

func TestSignIssuesRecordsAndAnnounces(t *testing.T) {
	e := newEnv(t)
	c, rec := e.replica(t, ca.Config{})
	ctx := admin.WithActor(context.Background(), "tester@host")
	var dom ca.Domain
	if err := admin.Call(ctx, e.nc, admin.Subject(admin.AreaDomain, ca.VerbDomainCreateDev), ca.CreateDevDomainRequest{Suffix: testSuffix}, &dom); err != nil {
		t.Fatalf("create-dev: %v", err)
	}
	key, pkcs1, spki := rsaPub(t, 2048)
	client := ca.NewClient(e.nc)
	tel, _ := telemetry.NewForTest("provisioner")
	tctx, span := tel.Tracer.Tracer("test").Start(ctx, "provision")
	defer span.End()

	for i, pub := range map[string]string{"pkcs1": pkcs1, "spki": spki} {
		t.Run(i, func(t *testing.T) {
			resp, err := client.Sign(tctx, ca.SignRequest{UUID: devUUID(1), FQDN: "Host1.Corp.Example.com", PublicKey: pub, Purpose: ca.PurposeDeviceTLS, ValidityDays: 30})
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			der, _ := base64.StdEncoding.DecodeString(resp.Certificate)
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(c.OrgCACertificate())
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "host1.corp.example.com", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Fatalf("certificate does not verify for the device name: %v", err)
			}
			if !key.PublicKey.Equal(cert.PublicKey) || cert.Subject.CommonName != "host1.corp.example.com" {
				t.Fatalf("cert CN %q / key mismatch", cert.Subject.CommonName)
			}
			if resp.FingerprintSHA256 != fingerprint(der, "sha256") || resp.Serial != fmt.Sprintf("%032x", cert.SerialNumber) {
				t.Fatalf("response fingerprint/serial do not describe the certificate")
			}
			if d := cert.NotAfter.Sub(cert.NotBefore); d < 30*24*time.Hour || d > 31*24*time.Hour {
				t.Fatalf("validity %s, want 30 days", d)
			}
			if len(resp.Chain) != 1 || resp.Chain[0] != base64.StdEncoding.EncodeToString(c.OrgCACertificate().Raw) {
				t.Fatal("chain is not the organisation CA")
			}
			var fp string
			if err := e.pool.QueryRow(ctx, `SELECT fingerprint_sha256 FROM certificates WHERE serial = $1 AND uuid = $2 AND purpose = 'device-tls'`, resp.Serial, devUUID(1)).Scan(&fp); err != nil || fp != resp.FingerprintSHA256 {
				t.Fatalf("certificates row: %q %v", fp, err)
			}
			// Announced through the outbox.
			s, _ := e.js.Stream(ctx, events.StreamName)
			deadline := time.Now().Add(10 * time.Second)
			for {
				msg, err := s.GetLastMsgForSubject(ctx, events.SubjectCertIssued+"."+devUUID(1))
				if err == nil {
					env, err := events.Parse(msg.Subject, msg.Header, msg.Data)
					if err != nil {
						t.Fatal(err)
					}
					p, err := env.Decode()
					if err != nil {
						t.Fatal(err)
					}
					if ci := p.(*events.CertIssued); ci.Serial == resp.Serial {
						if ci.FingerprintSHA256 != resp.FingerprintSHA256 || ci.Purpose != ca.PurposeDeviceTLS {
							t.Fatalf("event %+v", ci)
						}
						if tp := msg.Header.Get("traceparent"); len(tp) < 35 || tp[3:35] != span.SpanContext().TraceID().String() {
							t.Fatalf("event traceparent %q not in the caller's trace", tp)
						}
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatal("cert.issued event not published")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	if bits := c.OrgCACertificate().PublicKey.(*rsa.PublicKey).N.BitLen(); bits != 3072 {
		t.Errorf("organisation CA key has %d bits, want 3072", bits)
	}
	// The CA continued the caller's trace.
	found := false
	for _, s := range rec.Ended() {
		if s.Name() == "certauthority.sign" && s.SpanContext().TraceID() == span.SpanContext().TraceID() {
			found = true
		}
	}
	if !found {
		t.Error("no certauthority.sign span in the caller's trace")
	}
	// Two signs for one device: one active, the first superseded by the second.
	var active, superseded int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE superseded_at IS NULL), count(*) FILTER (WHERE superseded_by IS NOT NULL) FROM certificates WHERE uuid = $1`, devUUID(1)).Scan(&active, &superseded); err != nil {
		t.Fatal(err)
	}
	if active != 1 || superseded != 1 {
		t.Fatalf("active %d superseded %d, want 1 and 1", active, superseded)
	}
}

func TestSignPolicyRejections(t *testing.T) {
	e := newEnv(t)
	e.replica(t, ca.Config{AllowedSuffixes: []string{"Lab.Example.NET."}, DenyProvisioningDomainSuffixes: true, OrgKeyBits: fastOrgKeyBits})
	_, pkcs1, _ := rsaPub(t, 2048)
	_, small, _ := rsaPub(t, 1024)
	client := ca.NewClient(e.nc)
	ok := ca.SignRequest{UUID: devUUID(2), FQDN: "amt-1.lab.example.net", PublicKey: pkcs1, Purpose: ca.PurposeDeviceTLS}
	if _, err := client.Sign(context.Background(), ok); err != nil {
		t.Fatalf("allowed request refused: %v", err)
	}
	mod := func(f func(r *ca.SignRequest)) ca.SignRequest { r := ok; f(&r); return r }
	tests := []struct {
		name string
		req  ca.SignRequest
		code string
	}{
		{"fqdn outside the suffixes", mod(func(r *ca.SignRequest) { r.FQDN = "amt-1.corp.example.com" }), ca.CodeFQDNNotAllowed},
		{"suffix look-alike", mod(func(r *ca.SignRequest) { r.FQDN = "amt-1.evillab.example.net" }), ca.CodeFQDNNotAllowed},
		{"provisioning domains not allowed by config", mod(func(r *ca.SignRequest) { r.FQDN = "x." + testSuffix }), ca.CodeFQDNNotAllowed},
		{"key too small", mod(func(r *ca.SignRequest) { r.PublicKey = small }), ca.CodeKeyTooSmall},
		{"key not DER", mod(func(r *ca.SignRequest) { r.PublicKey = base64.StdEncoding.EncodeToString([]byte("not a key")) }), ca.CodeKeyInvalid},
		{"key not base64", mod(func(r *ca.SignRequest) { r.PublicKey = "***" }), ca.CodeKeyInvalid},
		{"bad uuid", mod(func(r *ca.SignRequest) { r.UUID = "nope" }), admin.CodeBadRequest},
		{"bad fqdn", mod(func(r *ca.SignRequest) { r.FQDN = "a..lab.example.net" }), admin.CodeBadRequest},
		{"other purpose", mod(func(r *ca.SignRequest) { r.Purpose = "code-signing" }), ca.CodePurposeNotAllowed},
		{"validity too long", mod(func(r *ca.SignRequest) { r.ValidityDays = 5000 }), ca.CodeValidityNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Sign(context.Background(), tc.req)
			var ae *admin.Error
			if !errors.As(err, &ae) || ae.Code != tc.code {
				t.Fatalf("err = %v, want code %s", err, tc.code)
			}
		})
	}
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM certificates WHERE purpose = 'device-tls'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d device certificates recorded (%v), want only the allowed one", n, err)
	}
}

// Two replicas in one queue group: they agree on one organisation CA
// (created once under the advisory lock), share the requests, and
// concurrent requests for one device leave exactly one active certificate.
func TestReplicasShareLoadAndOneActivePerDevice(t *testing.T) {
	e := newEnv(t)
	var (
		replicas []*ca.CA
		recs     []*tracetest.SpanRecorder
		mu       sync.Mutex
		wg       sync.WaitGroup
	)
	for range 2 {
		wg.Add(1)
		go func() { // start both at once: the advisory lock must serialise creation
			defer wg.Done()
			c, rec := e.replica(t, ca.Config{AllowedSuffixes: []string{testSuffix}, OrgKeyBits: fastOrgKeyBits})
			mu.Lock()
			replicas, recs = append(replicas, c), append(recs, rec)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(replicas) != 2 {
		t.FailNow()
	}
	if !bytes.Equal(replicas[0].OrgCACertificate().Raw, replicas[1].OrgCACertificate().Raw) {
		t.Fatal("replicas use different organisation CAs")
	}
	var orgRows int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM org_ca`).Scan(&orgRows); err != nil || orgRows != 1 {
		t.Fatalf("org_ca rows %d (%v), want 1", orgRows, err)
	}

	_, pkcs1, _ := rsaPub(t, 2048)
	client := ca.NewClient(e.nc)
	const devices, perDevice = 10, 4
	errs := make(chan error, devices*perDevice)
	for d := range devices {
		for range perDevice {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := client.Sign(context.Background(), ca.SignRequest{UUID: devUUID(100 + d), FQDN: fmt.Sprintf("amt-%d.%s", d, testSuffix), PublicKey: pkcs1})
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
	}
	for i, rec := range recs {
		n := 0
		for _, s := range rec.Ended() {
			if s.Name() == "certauthority.sign" {
				n++
			}
		}
		if n == 0 {
			t.Errorf("replica %d served no sign request", i)
		}
		t.Logf("replica %d served %d of %d", i, n, devices*perDevice)
	}
	rows, err := e.pool.Query(context.Background(), `SELECT uuid::text, count(*) FILTER (WHERE superseded_at IS NULL), count(*) FROM certificates WHERE purpose = 'device-tls' GROUP BY uuid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var u string
		var active, total int
		if err := rows.Scan(&u, &active, &total); err != nil {
			t.Fatal(err)
		}
		seen++
		if active != 1 || total != perDevice {
			t.Errorf("device %s: %d active of %d, want 1 of %d", u, active, total, perDevice)
		}
	}
	if seen != devices {
		t.Fatalf("%d devices have certificates, want %d", seen, devices)
	}
}

func TestDomainsAdminVerbsAndNoPlaintextKeys(t *testing.T) {
	e := newEnv(t)
	c, _ := e.replica(t, ca.Config{OrgKeyBits: fastOrgKeyBits})
	ctx := admin.WithActor(context.Background(), "alice@ops")
	createDev := admin.Subject(admin.AreaDomain, ca.VerbDomainCreateDev)

	var first, again ca.Domain
	if err := admin.Call(ctx, e.nc, createDev, ca.CreateDevDomainRequest{Suffix: testSuffix}, &first); err != nil {
		t.Fatal(err)
	}
	if err := admin.Call(ctx, e.nc, createDev, ca.CreateDevDomainRequest{Suffix: "CORP.example.com."}, &again); err != nil {
		t.Fatal(err)
	}
	if !first.Created || again.Created || first.RootSHA256 != again.RootSHA256 {
		t.Fatalf("create-dev not idempotent: %+v then %+v", first, again)
	}
	root, err := ca.EnsureDevDomain(ctx, e.pool, e.keys, testSuffix)
	if err != nil || root.Hex() != first.RootSHA256 {
		t.Fatalf("EnsureDevDomain = %s, %v; want the existing root %s", root.Hex(), err, first.RootSHA256)
	}
	if err := admin.Call(ctx, e.nc, createDev, ca.CreateDevDomainRequest{Suffix: "bad_suffix"}, nil); admin.CodeOf(err) != admin.CodeBadRequest {
		t.Fatalf("bad suffix: %v", err)
	}

	// The dev chain passes the same checks an import does, i.e. what firmware checks.
	doms, err := ca.LoadProvisioningDomains(ctx, e.pool, e.keys)
	if err != nil || len(doms) != 1 {
		t.Fatalf("LoadProvisioningDomains: %d, %v", len(doms), err)
	}
	pd := doms[0]
	var chain []*x509.Certificate
	for _, der := range pd.Certificate.Certificate {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, cert)
	}
	if _, err := ca.ValidateProvisioningChain(chain, pd.Certificate.PrivateKey.(crypto.Signer), "branch."+testSuffix, time.Now()); err != nil {
		t.Fatalf("dev chain fails the firmware checks: %v", err)
	}
	if pd.RootHashes[0].Hex() != first.RootSHA256 || fingerprint(chain[1].Raw, "sha1") != first.RootSHA1 {
		t.Fatal("root hashes do not match the root certificate")
	}
	if chain[0].Subject.CommonName != testSuffix || len(chain[0].DNSNames) != 1 || chain[0].DNSNames[0] != testSuffix || chain[0].IsCA {
		t.Fatalf("leaf %+v", chain[0].Subject)
	}

	// Import: a good PFX, a duplicate, a replacement, a firmware rule.
	goodLeafTmpl := leafTmpl("vendor.example.org")
	goodLeafTmpl.NotBefore, goodLeafTmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().AddDate(1, 0, 0)
	rootTmplNow := rootTmpl("Vendor Root")
	rootTmplNow.NotBefore, rootTmplNow.NotAfter = time.Now().Add(-time.Hour), time.Now().AddDate(5, 0, 0)
	vroot := issue(t, rootTmplNow, nil)
	vleaf := issue(t, goodLeafTmpl, &vroot)
	good := pfx(t, vleaf.key, vleaf.cert, vroot.cert)
	add := admin.Subject(admin.AreaDomain, ca.VerbDomainAdd)
	var imported ca.Domain
	if err := admin.Call(ctx, e.nc, add, ca.AddDomainRequest{Suffix: "vendor.example.org", PFX: good, Password: "pw"}, &imported); err != nil {
		t.Fatalf("add: %v", err)
	}
	if imported.Source != ca.SourceImported || imported.RootSHA256 != fingerprint(vroot.cert.Raw, "sha256") {
		t.Fatalf("imported %+v", imported)
	}
	if err := admin.Call(ctx, e.nc, add, ca.AddDomainRequest{Suffix: "vendor.example.org", PFX: good, Password: "pw"}, nil); admin.CodeOf(err) != admin.CodeConflict {
		t.Fatalf("duplicate add: %v", err)
	}
	if err := admin.Call(ctx, e.nc, add, ca.AddDomainRequest{Suffix: "vendor.example.org", PFX: good, Password: "pw", Replace: true}, nil); err != nil {
		t.Fatalf("replace: %v", err)
	}
	if err := admin.Call(ctx, e.nc, add, ca.AddDomainRequest{Suffix: "other.example.org", PFX: pfx(t, vleaf.key, vleaf.cert), Password: "pw"}, nil); admin.CodeOf(err) != ca.CodeChainTooShort {
		t.Fatalf("one-cert PFX: %v", err)
	}
	if err := admin.Call(ctx, e.nc, createDev, ca.CreateDevDomainRequest{Suffix: "vendor.example.org"}, nil); admin.CodeOf(err) != ca.CodeDomainNotDevKey {
		t.Fatalf("create-dev over an import: %v", err)
	}
	var list ca.ListDomainsResponse
	if err := admin.Call(ctx, e.nc, admin.Subject(admin.AreaDomain, ca.VerbDomainList), nil, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Domains) != 2 || list.Domains[0].Name != testSuffix || list.Domains[1].Name != "vendor.example.org" || list.Domains[0].LeafSubject == "" {
		t.Fatalf("list %+v", list.Domains)
	}

	// Audit rows name the operator.
	var audits int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE actor = 'alice@ops' AND action IN ('domain.create-dev', 'domain.add')`).Scan(&audits); err != nil || audits != 3 {
		t.Fatalf("%d audit rows by alice (%v), want 3 (create-dev, add, replace)", audits, err)
	}

	// No private key in clear: every key column is a sealed value under the
	// active key, and none contains the key's DER.
	keyDERs := [][]byte{c.OrgKeyPKCS8ForTest()}
	doms, err = ca.LoadProvisioningDomains(ctx, e.pool, e.keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range doms {
		der, err := x509.MarshalPKCS8PrivateKey(d.Certificate.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDERs = append(keyDERs, der)
	}
	rows, err := e.pool.Query(ctx, `SELECT 'org_ca', key_enc, key_id FROM org_ca UNION ALL SELECT 'domains', key_enc, key_id FROM domains`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var table, keyID string
		var enc []byte
		if err := rows.Scan(&table, &enc, &keyID); err != nil {
			t.Fatal(err)
		}
		n++
		if secrets.KeyID(enc) != "k1" || keyID != "k1" {
			t.Errorf("%s key is not sealed with the active key (id %q, column %q)", table, secrets.KeyID(enc), keyID)
		}
		for _, der := range keyDERs {
			if bytes.Contains(enc, der[len(der)-64:]) {
				t.Errorf("%s key_enc contains private key bytes", table)
			}
		}
	}
	if n != 3 {
		t.Fatalf("%d key rows, want 3", n)
	}
	var pemKeys int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM domains WHERE chain_pem LIKE '%PRIVATE KEY%'`).Scan(&pemKeys); err != nil || pemKeys != 0 {
		t.Fatalf("chain_pem holds a private key (%d, %v)", pemKeys, err)
	}
}

func TestOrgCAKeyRotation(t *testing.T) {
	pool := storetest.New(t)
	old, err := secrets.NewKeyring("old", map[string][]byte{"old": bytes.Repeat([]byte{9}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	first, err := ca.NewService(context.Background(), ca.Config{OrgKeyBits: fastOrgKeyBits}, pool, old, telemetry.Providers{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A new active key with the old one still in the ring: the CA loads.
	second, err := ca.NewService(context.Background(), ca.Config{OrgKeyBits: fastOrgKeyBits}, pool, keyring(t), telemetry.Providers{}, nil)
	if err != nil {
		t.Fatalf("load with rotated keyring: %v", err)
	}
	if !bytes.Equal(first.OrgCACertificate().Raw, second.OrgCACertificate().Raw) {
		t.Fatal("a second organisation CA was created")
	}
	// Without the sealing key it refuses to start, and says why.
	wrong, _ := secrets.NewKeyring("x", map[string][]byte{"x": bytes.Repeat([]byte{1}, 32)})
	if _, err := ca.NewService(context.Background(), ca.Config{OrgKeyBits: fastOrgKeyBits}, pool, wrong, telemetry.Providers{}, nil); !errors.Is(err, secrets.ErrUnknownKey) {
		t.Fatalf("load without the sealing key: %v", err)
	}
}
