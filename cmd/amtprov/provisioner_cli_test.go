package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/libs/service"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/provisioner"
)

// startProvisioner runs a real provisioner (database, NATS) with no
// provisioning domain, so every hello fails with
// NO_MATCHING_PROVISIONING_CERT before any device is contacted.
func startProvisioner(t *testing.T) (url string, pool *pgxpool.Pool, keys *secrets.Keyring, js jetstream.JetStream) {
	t.Helper()
	url = bustest.RunServer(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	_, js = bustest.ConnectTo(t, url)
	pool = storetest.New(t)
	keys, err = secrets.NewKeyring("k", map[string][]byte{"k": []byte(strings.Repeat("y", 32))})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := provisioner.New(provisioner.Config{Instance: "cli-test", Workers: 4}, provisioner.Deps{Pool: pool, JS: js, NC: nc, Keys: keys,
		Domains: noDomains{}, Signer: noSigner{}, Tel: telemetry.Providers{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("provisioner: %v", err)
		}
	})
	// Ready once its admin verbs are subscribed (7 subjects).
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ps []provisioner.Profile
		err := provCall(ctx, nc, provisioner.SubjectProfileList, struct{}{}, &ps)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("provisioner admin verbs not answering: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return url, pool, keys, js
}

// noDomains has no provisioning domain; noSigner refuses to sign.
type (
	noDomains struct{}
	noSigner  struct{}
)

func (noDomains) Domains(context.Context) ([]provisioner.Domain, error) { return nil, nil }
func (noSigner) SignDeviceCert(context.Context, provisioner.CertRequest) (provisioner.Cert, error) {
	return provisioner.Cert{}, errors.New("no CA in this test")
}

const cliDevice = "939b524b-13d4-1d18-e487-1c697a6b7a2b"

func TestProvisionerCommands(t *testing.T) {
	url, pool, keys, js := startProvisioner(t)
	ctx := context.Background()

	// Profiles.
	if out, errOut, err := runCLI(t, "--nats", url, "profile", "create", "office", "--default", "--kvm", "--user-consent", "kvm"); err != nil || !strings.Contains(out, "profile office created (default)") {
		t.Fatalf("profile create: %v %q %q", err, out, errOut)
	}
	if _, _, err := runCLI(t, "--nats", url, "profile", "create", "bad", "--user-consent", "sometimes"); !errors.Is(err, service.ErrUsage) {
		t.Fatalf("invalid profile: %v (want a usage error)", err)
	}
	if _, _, err := runCLI(t, "--nats", url, "profile", "create", "lab", "--domain-suffix", "lab.example.com", "--sol"); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, "--nats", url, "profile", "list")
	if err != nil || !strings.Contains(out, "office") || !strings.Contains(out, "lab.example.com") {
		t.Fatalf("profile list: %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, "--nats", url, "profile", "assign", "lab", "--uuid", strings.ToUpper(cliDevice)); err != nil || !strings.Contains(out, "assigned to "+cliDevice) {
		t.Fatalf("profile assign: %v %q", err, out)
	}
	if _, _, err := runCLI(t, "--nats", url, "profile", "assign", "nope", "--uuid", cliDevice); err == nil || !strings.Contains(err.Error(), "NOT_FOUND") {
		t.Fatalf("assign unknown profile: %v", err)
	}

	// Before any hello: explain says so.
	out, _, err = runCLI(t, "--nats", url, "explain", cliDevice)
	if err != nil || !strings.Contains(out, "no provisioning job") {
		t.Fatalf("explain without a job: %v %q", err, out)
	}

	// A hello whose root hash no domain has: the job fails with
	// NO_MATCHING_PROVISIONING_CERT, and jobs/explain show it.
	pub := bus.NewPublisher(js, "/test", telemetry.Providers{})
	hello := &events.DeviceHello{UUID: cliDevice, SourceIP: "127.11.200.1", SourcePort: 1, InterfaceVersion: 3, Listener: "t",
		RootHashes: []events.RootHash{{Alg: "sha256", Hex: strings.Repeat("ab", 32)}}, ReceivedAt: time.Now().UTC()}
	if err := pub.Publish(ctx, hello, events.HelloID(cliDevice, 0)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, err = runCLI(t, "--nats", url, "--json", "jobs", "list", "--state", "failed")
		var jobs []provisioner.Job
		if err == nil && json.Unmarshal([]byte(out), &jobs) == nil && len(jobs) == 1 {
			if jobs[0].ErrorCode != "NO_MATCHING_PROVISIONING_CERT" || jobs[0].UUID != cliDevice {
				t.Fatalf("job %+v", jobs[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed job: %v %s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, _, err = runCLI(t, "--nats", url, "jobs", "show", cliDevice)
	if err != nil || !strings.Contains(out, "NO_MATCHING_PROVISIONING_CERT") || !strings.Contains(out, "connect") || !strings.Contains(out, "fix:") {
		t.Fatalf("jobs show: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "--nats", url, "explain", cliDevice)
	if err != nil || !strings.Contains(out, "failed at step connect with NO_MATCHING_PROVISIONING_CERT") ||
		!strings.Contains(out, "fix: add a provisioning certificate whose root the device trusts") {
		t.Fatalf("explain: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, "--nats", url, "explain", "not-a-uuid"); !errors.Is(err, service.ErrUsage) {
		t.Fatalf("explain with a bad uuid: %v", err)
	}

	// Credentials: none yet, then a stored row is decrypted and the read audited.
	if _, _, err := runCLI(t, "--nats", url, "device", "credentials", cliDevice); err == nil || !strings.Contains(err.Error(), "NOT_FOUND") {
		t.Fatalf("credentials before any: %v", err)
	}
	pw, _ := keys.Seal([]byte("Adm1n!pass"), secrets.CredentialAAD(cliDevice, 1, "password_enc"))
	// Sealed as before the version was bound (2026-11-27): still readable.
	mebx, _ := keys.Seal([]byte("Mebx!pass9"), secrets.AAD("device_credentials", cliDevice, "mebx_password_enc"))
	if _, err := pool.Exec(ctx, `INSERT INTO device_credentials (uuid, version, username, password_enc, mebx_password_enc, key_id, tls_cert_sha256, active)
		VALUES ($1, 1, 'admin', $2, $3, 'k', 'ab12', true)`, cliDevice, pw, mebx); err != nil {
		t.Fatal(err)
	}
	out, _, err = runCLI(t, "--nats", url, "--json", "device", "credentials", cliDevice)
	var c map[string]string
	if err != nil || json.Unmarshal([]byte(out), &c) != nil {
		t.Fatalf("credentials: %v %q", err, out)
	}
	want := map[string]string{"uuid": cliDevice, "username": "admin", "password": "Adm1n!pass", "mebx_password": "Mebx!pass9", "tls_cert_sha256": "ab12"}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("credentials %s = %q, want %q", k, c[k], v)
		}
	}
	if len(c) != len(want) {
		t.Errorf("credentials JSON has keys %v", c)
	}
	var audits int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'device.credentials.read' AND subject = $1 AND actor <> ''`, cliDevice).Scan(&audits); err != nil {
		t.Fatal(err)
	}
	if audits != 1 {
		t.Fatalf("%d audit rows for one read", audits)
	}
}
