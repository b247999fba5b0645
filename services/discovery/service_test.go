package discovery_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/discovery"
	"github.com/amtprov/amtprov/services/discovery/internal/simfleet"
	"github.com/amtprov/amtprov/services/discovery/sweep"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// harness is one database, one NATS server and a keyring shared by replicas.
type harness struct {
	t    testing.TB
	pool *pgxpool.Pool
	url  string
	keys *secrets.Keyring
	nc   *nats.Conn // the test's own (the CLI's) connection
	js   jetstream.JetStream
	// metrics serves the /metrics of the last replica started.
	metrics http.Handler
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	keys, err := secrets.NewKeyring("k1", map[string][]byte{"k1": make32(7)})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, pool: storetest.New(t), url: bustest.RunServer(t), keys: keys}
	h.nc, h.js = bustest.ConnectTo(t, h.url)
	return h
}

func make32(b byte) []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

// replica starts a discovery replica; kill stops it abruptly (its NATS
// connection is cut before anything can be handed back).
func (h *harness) replica(name string) (kill func()) { return h.replicaWith(name, nil) }

// replicaWith starts a replica whose configuration mod may change.
func (h *harness) replicaWith(name string, mod func(*discovery.Config)) (kill func()) {
	t := h.t
	t.Helper()
	nc, err := nats.Connect(h.url, nats.Name(name))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	tel, _ := telemetry.NewForTest("discovery")
	h.metrics = tel.Metrics
	cfg := discovery.Config{
		Name: name, AckWait: 2 * time.Second, ShardWorkers: 8, GlobalRate: 100000, ScheduleEvery: -1,
		Sweep: sweep.Config{
			RMCPPort: simfleet.RMCPPort, HTTPPort: simfleet.HTTPPort, TLSPort: simfleet.TLSPort,
			PerDeviceInterval: 20 * time.Millisecond, PingWait: 400 * time.Millisecond,
			ConnectTimeout: time.Second, ReadTimeout: time.Second, Concurrency: 64,
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := discovery.New(cfg, discovery.Deps{Pool: h.pool, NC: nc, JS: js, Keys: h.keys, Tel: tel, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	stopped := false
	stop := func(abrupt bool) {
		if stopped {
			return
		}
		stopped = true
		if abrupt {
			nc.Close()
		}
		cancel()
		select {
		case err := <-done:
			if err != nil && !abrupt {
				t.Errorf("replica %s: %v", name, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("replica %s did not stop", name)
		}
		nc.Close()
	}
	t.Cleanup(func() { stop(false) })
	// Ready once the admin verbs answer.
	h.eventually(10*time.Second, func() bool {
		select {
		case err := <-done:
			t.Fatalf("replica %s ended: %v", name, err)
		default:
		}
		var l discovery.ListResponse
		return admin.Call(context.Background(), h.nc, admin.Subject(admin.AreaScan, discovery.VerbList), struct{}{}, &l) == nil
	})
	return func() { stop(true) }
}

// testLogger writes warnings and errors to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func (h *harness) eventually(d time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(50 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

func (h *harness) call(verb string, req, resp any) {
	h.t.Helper()
	if err := admin.Call(context.Background(), h.nc, admin.Subject(admin.AreaScan, verb), req, resp); err != nil {
		h.t.Fatalf("admin scan.%s: %v", verb, err)
	}
}

func (h *harness) status(id string) discovery.Scan {
	h.t.Helper()
	var s discovery.Scan
	h.call(discovery.VerbStatus, discovery.StatusRequest{ID: id}, &s)
	return s
}

// subjectCount counts the messages stored under subject filter f.
func (h *harness) subjectCount(f string) int {
	h.t.Helper()
	st, err := h.js.Stream(context.Background(), events.StreamName)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(f))
	if err != nil {
		h.t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// lastEvent decodes the last message on subject filter f.
func (h *harness) lastEvent(f string) events.Payload {
	h.t.Helper()
	st, err := h.js.Stream(context.Background(), events.StreamName)
	if err != nil {
		h.t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(context.Background(), f)
	if err != nil {
		h.t.Fatal(err)
	}
	env, err := events.Parse(m.Subject, m.Header, m.Data)
	if err != nil {
		h.t.Fatal(err)
	}
	p, err := env.Decode()
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

type result struct {
	ip, uuid, state, version, method, source string
}

func (h *harness) results(scanID string) map[string]result {
	h.t.Helper()
	rows, err := h.pool.Query(context.Background(), `SELECT host(ip), COALESCE(uuid::text, ''), state, amt_version, method, source FROM discovery_results WHERE scan_id = $1`, scanID)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]result{}
	for rows.Next() {
		var r result
		if err := rows.Scan(&r.ip, &r.uuid, &r.state, &r.version, &r.method, &r.source); err != nil {
			h.t.Fatal(err)
		}
		out[r.ip] = r
	}
	return out
}

func fleetSize() int {
	if os.Getenv("AMTPROV_LONG") == "1" {
		return 2000
	}
	return 300
}

// TestScanSharedByReplicasSurvivesAKill is the acceptance test: a fleet
// scattered over a /16 (the rest empty) is found exactly, versions and
// states as the simulator says, other-console devices identified by UUID
// over WS-Man with the credentials file; two replicas share the scan and
// one is killed mid-scan; every shard is recorded once.
func TestScanSharedByReplicasSurvivesAKill(t *testing.T) {
	h := newHarness(t)
	block := netip.MustParsePrefix("127.16.0.0/16")
	_, cfgs := simfleet.Start(t, simfleet.Options{Block: block, N: fleetSize(), Seed: 11, ProvisionedEvery: 5})
	h.replica("a")
	killB := h.replica("b")

	var tgt discovery.Target
	h.call(discovery.VerbAdd, discovery.AddTargetRequest{CIDR: block.String(), RateLimit: 15000,
		RMCPPort: simfleet.RMCPPort, HTTPPort: simfleet.HTTPPort, TLSPort: simfleet.TLSPort}, &tgt)
	if tgt.CIDR != "127.16.0.0/16" || tgt.RateLimit != 15000 || !tgt.Enabled {
		t.Fatalf("target %+v", tgt)
	}
	var sc discovery.Scan
	h.call(discovery.VerbRun, discovery.RunRequest{CIDRs: []string{block.String()},
		Credentials: []discovery.CredentialRow{{Match: "127.16.0.0/16", Username: simfleet.AdminUser, Password: simfleet.AdminPassword}}}, &sc)
	if sc.ShardsTotal != 256 || sc.AddressesTotal != 65534 || sc.State != "running" {
		t.Fatalf("scan %+v", sc)
	}
	h.eventually(60*time.Second, func() bool { return h.status(sc.ID).ShardsDone >= 40 })
	killB()
	h.eventually(120*time.Second, func() bool { return h.status(sc.ID).State == "completed" })
	final := h.status(sc.ID)
	if final.ShardsDone != 256 || final.AddressesProbed != 65534 || final.Found != len(cfgs) {
		t.Errorf("final scan %+v: want 256 shards, 65534 addresses, %d found", final, len(cfgs))
	}

	got := h.results(sc.ID)
	provisioned := 0
	for _, c := range cfgs {
		r, ok := got[c.IP]
		if !ok {
			t.Errorf("device %s at %s not found", c.UUID, c.IP)
			continue
		}
		delete(got, c.IP)
		want := result{ip: c.IP, state: "in", version: c.AMTVersion, method: "http"}
		if c.Provisioned {
			provisioned++
			want = result{ip: c.IP, uuid: c.UUID, state: "post", version: c.AMTVersion, method: "wsman", source: discovery.SourceOtherConsole}
		}
		if r != want {
			t.Errorf("device at %s: %+v, want %+v", c.IP, r, want)
		}
	}
	for ip := range got {
		t.Errorf("false positive at %s", ip)
	}
	var workers int
	if err := h.pool.QueryRow(context.Background(), `SELECT count(DISTINCT worker) FROM discovery_shards WHERE scan_id = $1`, sc.ID).Scan(&workers); err != nil || workers != 2 {
		t.Errorf("shards recorded by %d replicas (err %v), want both", workers, err)
	}
	var creds int
	if err := h.pool.QueryRow(context.Background(), `SELECT count(*) FROM device_credentials WHERE source = 'other_console' AND active AND match = '127.16.0.0/16'`).Scan(&creds); err != nil || creds != provisioned {
		t.Errorf("%d other-console credentials stored (err %v), want %d", creds, err, provisioned)
	}
	var left int
	if err := h.pool.QueryRow(context.Background(), `SELECT count(*) FROM discovery_credentials WHERE scan_id = $1`, sc.ID).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d credentials-file rows kept after the scan (err %v), want 0", left, err)
	}

	// Events: one device.discovered per device (ids survive redelivery),
	// then the summary.
	h.eventually(30*time.Second, func() bool { return h.subjectCount(events.SubjectScanCompleted+".>") == 1 })
	h.eventually(30*time.Second, func() bool { return h.subjectCount(events.SubjectDeviceDiscovered+".>") == len(cfgs) })
	done, ok := h.lastEvent(events.SubjectScanCompleted + "." + sc.ID).(*events.ScanCompleted)
	if !ok || done.Found != len(cfgs) || done.Identified != provisioned || len(done.OtherConsole) != provisioned ||
		done.States.Post != provisioned || done.States.In != len(cfgs)-provisioned || done.Addresses != 65534 || len(done.Stale) != 0 {
		t.Errorf("scan.completed %+v", done)
	}
	c0 := firstProvisioned(cfgs)
	ev, ok := h.lastEvent(events.SubjectDeviceDiscovered + "." + c0.UUID).(*events.DeviceDiscovered)
	if !ok || ev.IP != c0.IP || ev.Method != "wsman" || ev.ProvisioningState != "post" || ev.AMTVersion != c0.AMTVersion || ev.ScanID != sc.ID {
		t.Errorf("device.discovered of %s: %+v", c0.UUID, ev)
	}
}

func firstProvisioned(cfgs []firmware.Config) firmware.Config {
	for _, c := range cfgs {
		if c.Provisioned {
			return c
		}
	}
	return firmware.Config{}
}

// TestOwnDevicesPinnedAndStale: a device amtprov holds credentials for is
// identified over TLS with the pinned certificate; a pin that does not
// match sends no password and identifies nothing; a provisioned device
// whose last known address no longer answers is listed stale.
func TestOwnDevicesPinnedAndStale(t *testing.T) {
	h := newHarness(t)
	block := netip.MustParsePrefix("127.16.0.0/24")
	_, cfgs := simfleet.Start(t, simfleet.Options{Block: block, N: 3, Seed: 12, ProvisionedEvery: 1})
	h.replica("a")
	ctx := context.Background()
	own := func(uuid, ip, pin string) {
		t.Helper()
		sealed, err := h.keys.Seal([]byte(simfleet.AdminPassword), secrets.CredentialAAD(uuid, 1, "password_enc"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.pool.Exec(ctx, `INSERT INTO device_credentials (uuid, version, username, password_enc, key_id, tls_cert_sha256, source, active)
VALUES ($1, 1, $2, $3, 'k1', $4, 'amtprov', true)`, uuid, simfleet.AdminUser, sealed, pin); err != nil {
			t.Fatal(err)
		}
		if _, err := h.pool.Exec(ctx, `INSERT INTO device_location (uuid, ip, last_seen) VALUES ($1, $2::inet, now())`, uuid, ip); err != nil {
			t.Fatal(err)
		}
	}
	own(cfgs[0].UUID, cfgs[0].IP, devicePin(t, cfgs[0].IP))
	own(cfgs[1].UUID, cfgs[1].IP, hex.EncodeToString(make([]byte, 32))) // wrong pin
	const gone = "5a1e0000-0000-4000-8000-00000000beef"
	own(gone, "127.16.0.254", devicePin(t, cfgs[0].IP))
	var tgt discovery.Target
	h.call(discovery.VerbAdd, discovery.AddTargetRequest{CIDR: block.String(), RMCPPort: simfleet.RMCPPort, HTTPPort: simfleet.HTTPPort, TLSPort: simfleet.TLSPort}, &tgt)
	var sc discovery.Scan
	h.call(discovery.VerbRun, discovery.RunRequest{}, &sc) // every enabled target
	h.eventually(30*time.Second, func() bool { return h.status(sc.ID).State == "completed" })
	got := h.results(sc.ID)
	if r := got[cfgs[0].IP]; r.uuid != cfgs[0].UUID || r.method != "wsman" || r.source != discovery.SourceAmtprov {
		t.Errorf("own device: %+v", r)
	}
	if r := got[cfgs[1].IP]; r.uuid != "" || r.method != "http" {
		t.Errorf("device with a wrong pin: %+v, want unidentified", r)
	}
	if r := got[cfgs[2].IP]; r.uuid != "" || r.method != "http" || r.state != "post" {
		t.Errorf("device without credentials: %+v", r)
	}
	h.eventually(30*time.Second, func() bool { return h.subjectCount(events.SubjectScanCompleted+".>") == 1 })
	done := h.lastEvent(events.SubjectScanCompleted + "." + sc.ID).(*events.ScanCompleted)
	if len(done.Stale) != 1 || done.Stale[0] != gone || done.Trigger != "cli" {
		t.Errorf("scan.completed %+v: want stale [%s]", done, gone)
	}
	rec := httptest.NewRecorder()
	h.metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{`amtprov_discovery_shards_total{`, `outcome="done"`, `amtprov_discovery_addresses_total{`,
		`amtprov_discovery_found_total{`, `method="wsman"`, `amtprov_discovery_packets_total{`, `amtprov_discovery_shard_duration_seconds_bucket{`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// devicePin reads the SHA-256 of the certificate a device presents on TLS.
func devicePin(t *testing.T, ip string) string {
	t.Helper()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // test reads the cert
	c, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort(ip, "26993"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sum := sha256.Sum256(c.(*tls.Conn).ConnectionState().PeerCertificates[0].Raw)
	return hex.EncodeToString(sum[:])
}

func TestAdminRejectsBadRequests(t *testing.T) {
	h := newHarness(t)
	h.replica("a")
	tests := []struct {
		verb string
		req  any
	}{
		{discovery.VerbAdd, discovery.AddTargetRequest{CIDR: "not-a-cidr"}},
		{discovery.VerbAdd, discovery.AddTargetRequest{CIDR: "10.0.0.0/4"}},
		{discovery.VerbAdd, discovery.AddTargetRequest{CIDR: "fd00::/64"}},
		{discovery.VerbAdd, discovery.AddTargetRequest{CIDR: "10.0.0.0/24", Schedule: "5s"}},
		{discovery.VerbAdd, discovery.AddTargetRequest{CIDR: "10.0.0.0/24", RMCPPort: 70000}},
		{discovery.VerbRun, discovery.RunRequest{}}, // no targets yet
		{discovery.VerbRun, discovery.RunRequest{CIDRs: []string{"10.0.0.0/24"}, Credentials: []discovery.CredentialRow{{Match: "nope", Username: "a", Password: "b"}}}},
		{discovery.VerbRun, discovery.RunRequest{CIDRs: []string{"10.0.0.0/24"}, Credentials: []discovery.CredentialRow{{Match: "10.0.0.0/24", Username: "a"}}}},
	}
	for _, tt := range tests {
		err := admin.Call(context.Background(), h.nc, admin.Subject(admin.AreaScan, tt.verb), tt.req, &struct{}{})
		if !errors.Is(err, &admin.Error{Code: admin.CodeBadRequest}) {
			t.Errorf("%s %+v: err = %v, want BAD_REQUEST", tt.verb, tt.req, err)
		}
	}
	err := admin.Call(context.Background(), h.nc, admin.Subject(admin.AreaScan, discovery.VerbStatus), discovery.StatusRequest{ID: "scan-nope"}, &struct{}{})
	if !errors.Is(err, &admin.Error{Code: admin.CodeNotFound}) {
		t.Errorf("status of an unknown scan: %v", err)
	}
	var l discovery.ListResponse
	h.call(discovery.VerbList, struct{}{}, &l)
	if len(l.Targets) != 0 || len(l.Scans) != 0 {
		t.Errorf("list %+v", l)
	}
	_ = sort.Strings
}
