package provisioner_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/libs/service"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/libs/wsman"
	"github.com/amtprov/amtprov/services/hello-listener/listener"
	"github.com/amtprov/amtprov/services/inventory"
	"github.com/amtprov/amtprov/services/provisioner"
	"github.com/amtprov/amtprov/services/provisioner/internal/provtest"
	"github.com/amtprov/amtprov/services/provisioner/internal/workflow"
	"github.com/amtprov/amtprov/tools/amtsim"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
)

func TestMain(m *testing.M) {
	bustest.ServeIfChild()
	storetest.Main(m)
}

// long reports whether the full-size acceptance runs were asked for.
func long() bool { return os.Getenv("AMTPROV_LONG") == "1" }

// quietLog discards logs unless AMTPROV_TEST_LOG=1 (then debug to stderr).
func quietLog() *slog.Logger {
	if os.Getenv("AMTPROV_TEST_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// harness is the whole loop in one process: real PostgreSQL, an embedded
// NATS server, the hello listener, inventory, provisioner replicas and a
// simulated fleet whose devices trust the test provisioning domain.
type harness struct {
	t       testing.TB
	pool    *pgxpool.Pool
	natsURL string
	js      jetstream.JetStream
	keys    *secrets.Keyring
	domain  workflow.Domain
	signer  *provtest.Signer
	hello   string
	fleet   *amtsim.Fleet
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	return newHarnessOn(t, bustest.RunServer(t))
}

// newHarnessOn is newHarness with the NATS server at natsURL.
func newHarnessOn(t testing.TB, natsURL string) *harness {
	t.Helper()
	h := &harness{t: t, pool: storetest.New(t), natsURL: natsURL, keys: provtest.Keyring(t),
		signer: provtest.NewSigner(t)}
	h.domain = provtest.NewDomain(t, "corp", amtsim.DefaultDNSSuffix, provtest.LeafOptions{})
	_, h.js = bustest.ConnectTo(t, h.natsURL)
	ctx := context.Background()
	if err := provisioner.EnsureDefaultProfile(ctx, h.pool, "default", provisioner.ProfileSettings{SOL: true, IDER: true, KVM: true, UserConsent: "kvm"}); err != nil {
		t.Fatal(err)
	}
	lc := service.New("test", quietLog())
	tel, _ := telemetry.NewForTest("hello-listener")
	pub := bus.NewPublisher(h.js, "/hello-listener/test", tel)
	_, addr, err := listener.Start(lc, listener.Config{Addr: "127.13.255.254:0", Name: "test", PerIPRate: 1000, PerIPBurst: 1000}, pub,
		listener.Options{Logger: quietLog(), Tracer: tel.Tracer, Meter: tel.Meter})
	if err != nil {
		t.Fatal(err)
	}
	h.hello = addr.String()
	lctx, lcancel := context.WithCancel(ctx)
	ldone := make(chan error, 1)
	go func() { ldone <- lc.Run(lctx) }()
	t.Cleanup(func() {
		lcancel()
		if err := <-ldone; err != nil {
			t.Errorf("hello listener: %v", err)
		}
	})
	invTel, _ := telemetry.NewForTest("inventory")
	inv, err := inventory.New(inventory.Config{}, h.pool, h.js, invTel, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ictx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- inv.Run(ictx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("inventory: %v", err)
		}
	})
	return h
}

func testConfig(instance string) provisioner.Config {
	return provisioner.Config{
		Instance: instance, Workers: 64, Lease: 3 * time.Second, AckWait: 2 * time.Second, MaxDeliver: 8, RetryFailedAfter: time.Hour,
		Backoff: []time.Duration{200 * time.Millisecond, 500 * time.Millisecond, time.Second},
		Workflow: workflow.Config{DevicePort: provtest.TLSPort, CallTimeout: 10 * time.Second, StepRetry: 2 * time.Second,
			VerifyWait: 5 * time.Second, PostCommitPause: 100 * time.Millisecond},
	}
}

// replica is a running provisioner with its own NATS connection.
type replica struct {
	svc    *provisioner.Service
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

func (h *harness) startReplica(name string) *replica {
	h.t.Helper()
	return h.startReplicaWith(name, testConfig(name), provtest.Domains{h.domain}, h.signer)
}

func (h *harness) startReplicaWith(name string, cfg provisioner.Config, domains provisioner.DomainSource, signer provisioner.Signer) *replica {
	h.t.Helper()
	return h.startReplicaDeps(name, cfg, provisioner.Deps{Domains: domains, Signer: signer})
}

// startReplicaDeps starts a replica with deps, whose database, bus, keys
// and (unless set) logger are the harness's.
func (h *harness) startReplicaDeps(name string, cfg provisioner.Config, deps provisioner.Deps) *replica {
	h.t.Helper()
	nc, err := nats.Connect(h.natsURL, nats.Name(name))
	if err != nil {
		h.t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		h.t.Fatal(err)
	}
	deps.Pool, deps.JS, deps.NC, deps.Keys = h.pool, js, nc, h.keys
	if deps.Log == nil {
		deps.Log = quietLog()
	}
	svc, err := provisioner.New(cfg, deps)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{svc: svc, nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	h.t.Cleanup(func() { r.stop(h.t) })
	return r
}

func (r *replica) stop(t testing.TB) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("provisioner stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("provisioner did not stop within 30s")
	}
	r.cancel = nil
	r.nc.Close()
}

func (h *harness) startFleet(n int, third byte, tweak func(*amtsim.Options)) *amtsim.Fleet {
	h.t.Helper()
	o := provtest.FleetOptions(h.t, n, third, h.hello, h.domain)
	o.LegacyShare, o.ProvisionedShare = 0, 0
	o.TimeScale = 3000 // hellos every few tens of ms after the first
	if tweak != nil {
		tweak(&o)
	}
	h.fleet = provtest.StartFleet(h.t, o)
	return h.fleet
}

func eventually(t testing.TB, what string, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, status := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, within, status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jobsSettled reports whether every device has a finished newest job and
// none is queued or running.
func (h *harness) jobsSettled(n int) (bool, string) {
	var finished, open int
	err := h.pool.QueryRow(context.Background(), `SELECT
		count(DISTINCT uuid) FILTER (WHERE state IN ('succeeded', 'failed')),
		count(*) FILTER (WHERE state IN ('queued', 'running')) FROM provisioning_jobs`).Scan(&finished, &open)
	if err != nil {
		return false, err.Error()
	}
	status := fmt.Sprintf("%d devices finished, %d jobs open", finished, open)
	if h.fleet != nil {
		st := h.fleet.Stats()
		status += fmt.Sprintf("; simulator: %d hellos sent, %d failed, states %v", st.HellosSent, st.HelloFailures, st.States)
	}
	return finished == n && open == 0, status
}

type outcome struct {
	state, code string
	attempts    int
}

func (h *harness) outcomes() map[string]outcome {
	h.t.Helper()
	rows, err := h.pool.Query(context.Background(), `SELECT DISTINCT ON (uuid) uuid::text, state, error_code, attempt
		FROM provisioning_jobs ORDER BY uuid, attempt DESC`)
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]outcome{}
	for rows.Next() {
		var u string
		var o outcome
		if err := rows.Scan(&u, &o.state, &o.code, &o.attempts); err != nil {
			h.t.Fatal(err)
		}
		out[u] = o
	}
	return out
}

// checkProvisioned asserts the device side and the stored side of every
// provisioned device: post-provisioning in ACM with TLS on, at most one
// successful commit, a distinct stored password that logs in with digest
// over the pinned certificate, and inventory agreeing with the simulator.
func (h *harness) checkProvisioned(devs []*firmware.Device, outs map[string]outcome, maxSessions int64) {
	t := h.t
	t.Helper()
	ctx := context.Background()
	seen := map[string]string{}
	for i, d := range devs {
		info := d.Info()
		if outs[info.UUID].state != "succeeded" {
			continue
		}
		if info.State != "post" || info.ControlMode != "acm" || !info.TLSEnabled {
			t.Errorf("%s: job succeeded but device is %s/%s tls=%v", info.UUID, info.State, info.ControlMode, info.TLSEnabled)
		}
		if maxSessions > 0 && info.SessionsMaxConcurrent > maxSessions {
			t.Errorf("%s: %d concurrent sessions (faults %v)", info.UUID, info.SessionsMaxConcurrent, info.Faults)
		}
		var commits int
		if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM provisioning_steps s JOIN provisioning_jobs j ON j.id = s.job_id
			WHERE j.uuid = $1 AND s.step = 'commit' AND s.outcome = 'ok'`, info.UUID).Scan(&commits); err != nil {
			t.Fatal(err)
		}
		if commits != 1 {
			t.Errorf("%s: %d successful commits recorded", info.UUID, commits)
		}
		var user, sha string
		var version int
		var pwEnc []byte
		if err := h.pool.QueryRow(ctx, `SELECT username, version, password_enc, tls_cert_sha256 FROM device_credentials WHERE uuid = $1 AND active`,
			info.UUID).Scan(&user, &version, &pwEnc, &sha); err != nil {
			t.Fatalf("%s: active credentials: %v", info.UUID, err)
		}
		pw, err := h.keys.Open(pwEnc, secrets.CredentialAAD(info.UUID, version, "password_enc"))
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := seen[string(pw)]; dup {
			t.Errorf("%s and %s share an admin password", info.UUID, other)
		}
		seen[string(pw)] = info.UUID
		// Digest login over the pinned certificate: every device in the
		// default run, a sample in the long one (same code path).
		if !long() || i%10 == 0 {
			pin, _ := hex.DecodeString(sha)
			tlsConf, err := wsman.PinnedTLSConfig(pin)
			if err != nil {
				t.Fatal(err)
			}
			c, err := wsman.New(wsman.Config{Address: net.JoinHostPort(info.IP, fmt.Sprint(provtest.TLSPort)), TLS: tlsConf, Username: user, Password: string(pw)})
			if err != nil {
				t.Fatal(err)
			}
			st, err := c.SetupAndConfiguration(ctx)
			c.Close()
			if err != nil || st.ProvisioningState != amt.PostProvisioning {
				t.Errorf("%s: digest login with the stored password: %v %v", info.UUID, st.ProvisioningState, err)
			}
		}
	}
	// Inventory agrees with the simulator (it consumes the events
	// asynchronously: poll).
	eventually(t, "inventory agrees with the simulator", 30*time.Second, func() (bool, string) {
		bad := 0
		var first string
		for _, d := range devs {
			info := d.Info()
			var state, version, mode, host string
			var tls bool
			err := h.pool.QueryRow(ctx, `SELECT coalesce(c.provisioning_state, ''), c.amt_version, c.control_mode, c.tls_enabled,
				coalesce(i.hostname, '') FROM oob_capability c LEFT JOIN device_identification i USING (uuid) WHERE c.uuid = $1`, info.UUID).
				Scan(&state, &version, &mode, &tls, &host)
			want := "in"
			if outs[info.UUID].state == "succeeded" {
				want = "post"
			}
			agree := err == nil && state == want && info.State == want && mode == info.ControlMode && tls == info.TLSEnabled
			if want == "post" {
				agree = agree && strings.HasPrefix(info.AMTVersion, version) && version != "" && host == info.Hostname
			}
			if !agree {
				bad++
				if first == "" {
					first = fmt.Sprintf("%s: inventory %q %q %q tls=%v host %q (%v), simulator %q %q %q tls=%v host %q", info.UUID, state, version, mode, tls, host, err,
						info.State, info.AMTVersion, info.ControlMode, info.TLSEnabled, info.Hostname)
				}
			}
		}
		return bad == 0, fmt.Sprintf("%d devices disagree, first %s", bad, first)
	})
}

func TestEndToEndAllDevicesProvisioned(t *testing.T) {
	// Registered first, so it runs after every other cleanup: once the
	// replica, listener, inventory and simulator have stopped, none of
	// their goroutines may be left.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	n := 40
	if long() {
		n = 500
	}
	h := newHarness(t)
	h.startReplica("p1")
	f := h.startFleet(n, 10, nil)
	eventually(t, "every device provisioned", 5*time.Minute, func() (bool, string) { return h.jobsSettled(n) })
	outs := h.outcomes()
	for u, o := range outs {
		if o.state != "succeeded" {
			t.Errorf("%s: %s %s", u, o.state, o.code)
		}
	}
	h.checkProvisioned(f.Devices(), outs, maxSessions)
	h.checkDump(f.Devices())
}

// maxSessions is the most concurrent sessions a device may see: one. A
// wsman.Client holds one connection at a time and opens the next only after
// the device has closed the previous one (AMT hangs up after each digest
// challenge, and after a reboot or a refused handshake), and the workflow
// closes one phase's client before it opens the next. checkProvisioned
// skips the check for 0.
const maxSessions = 1

func TestEndToEndWithFaults(t *testing.T) {
	n := 50
	if long() {
		n = 500
	}
	h := newHarness(t)
	// Fewer, shorter tries than the other tests, so that the devices that
	// stay broken fail within seconds.
	cfg := testConfig("p1")
	cfg.MaxDeliver, cfg.Workflow.StepRetry = 5, time.Second
	h.startReplicaWith("p1", cfg, provtest.Domains{h.domain}, h.signer)
	f := h.startFleet(n, 20, func(o *amtsim.Options) {
		o.Faults = []amtsim.FaultSpec{
			{Kind: firmware.FaultReset, Share: 0.10, For: 2 * time.Second},
			{Kind: firmware.FaultUnreachable, Share: 0.02, For: 3 * time.Second},
			// Devices that never become reachable, or reboot at every
			// commit, must fail with DEVICE_UNREACHABLE / DEVICE_REBOOTED
			// after the last delivery, not hang.
			{Kind: firmware.FaultUnreachable, Share: 0.04},
			{Kind: firmware.FaultReboot, Share: 0.04},
		}
	})
	devs := f.Devices()
	// 5% reboot before commit once: the fault is lifted as soon as the
	// provisioner has seen the reboot, so the retry must commit.
	rebootOnce := map[string]bool{}
	for _, d := range devs {
		if len(rebootOnce) < max(n/20, 1) && len(d.Info().Faults) == 0 {
			u := d.Config().UUID
			rebootOnce[u] = true
			if err := f.InjectFault(u, firmware.FaultReboot, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
	}
	liftCtx, stopLift := context.WithCancel(context.Background())
	liftDone := make(chan struct{})
	go func() {
		defer close(liftDone)
		lifted := map[string]bool{}
		for len(lifted) < len(rebootOnce) && liftCtx.Err() == nil {
			rows, err := h.pool.Query(liftCtx, `SELECT DISTINCT j.uuid::text FROM provisioning_steps s JOIN provisioning_jobs j ON j.id = s.job_id
				WHERE s.step = 'commit' AND s.error_code = 'DEVICE_REBOOTED'`)
			if err == nil {
				for rows.Next() {
					var u string
					if rows.Scan(&u) == nil && rebootOnce[u] && !lifted[u] {
						lifted[u] = true
						_ = f.InjectFault(u, firmware.FaultReboot, time.Nanosecond) // the fault ends now
					}
				}
				rows.Close()
			}
			select {
			case <-liftCtx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { stopLift(); <-liftDone })
	eventually(t, "every device provisioned or failed", 5*time.Minute, func() (bool, string) { return h.jobsSettled(n) })
	outs := h.outcomes()
	var failedUnreachable, failedReboot int
	for _, d := range devs {
		u := d.Config().UUID
		o := outs[u]
		switch {
		case o.state == "succeeded":
		case o.state == "failed" && o.code == "DEVICE_UNREACHABLE" && d.HasFault(firmware.FaultUnreachable):
			failedUnreachable++
		case o.state == "failed" && o.code == "DEVICE_REBOOTED" && d.HasFault(firmware.FaultReboot) && !rebootOnce[u]:
			failedReboot++
		default:
			t.Errorf("%s: %s %s (faults now %v, reboot once %v)", u, o.state, o.code, d.Info().Faults, rebootOnce[u])
		}
	}
	if failedUnreachable == 0 || failedReboot == 0 {
		t.Errorf("failed unreachable %d, rebooted %d: the permanent fault shares did not take effect", failedUnreachable, failedReboot)
	}
	// The faults were felt: steps retried across deliveries, by code.
	rows, err := h.pool.Query(context.Background(), `SELECT error_code, count(*), max(attempt_no) FROM provisioning_steps
		WHERE attempt_no > 1 OR error_code <> '' GROUP BY error_code`)
	if err != nil {
		t.Fatal(err)
	}
	felt := map[string]int{}
	for rows.Next() {
		var code string
		var cnt, most int
		if err := rows.Scan(&code, &cnt, &most); err != nil {
			t.Fatal(err)
		}
		felt[code] = cnt
		t.Logf("steps repeated or failed with %q: %d (most tries %d)", code, cnt, most)
	}
	// A reboot at commit makes the job start over: its commit step runs
	// again and succeeds on a later delivery.
	var recommitted int
	if err := h.pool.QueryRow(context.Background(), `SELECT count(*) FROM provisioning_steps
		WHERE step = 'commit' AND attempt_no > 1 AND outcome = 'ok'`).Scan(&recommitted); err != nil {
		t.Fatal(err)
	}
	if recommitted < len(rebootOnce) || felt["DEVICE_UNREACHABLE"] == 0 {
		t.Errorf("faults not exercised: %d commits after a reboot, repeated steps %v", recommitted, felt)
	}
	h.checkProvisioned(devs, outs, maxSessions)
}

func TestTwoReplicasShareTheWorkAndSurviveOneDying(t *testing.T) {
	n := 60
	if long() {
		n = 500
	}
	h := newHarness(t)
	a := h.startReplica("pa")
	b := h.startReplica("pb")
	f := h.startFleet(n, 30, func(o *amtsim.Options) { o.Latency = 5 * time.Millisecond })
	// Let both replicas get going, then kill one abruptly: its NATS
	// connection and its handlers' contexts go away mid-job, leaving leases
	// behind that must expire before the other replica takes over.
	eventually(t, "both replicas working", 3*time.Minute, func() (bool, string) {
		sa, sb := a.svc.Stats(), b.svc.Stats()
		return sa.Provisioned > 0 && sb.Provisioned > 0 && sa.InProgress > 0, fmt.Sprintf("a %+v b %+v", sa, sb)
	})
	a.nc.Close()
	a.cancel()
	<-a.done
	a.cancel = nil
	eventually(t, "the survivor finishes every device", 5*time.Minute, func() (bool, string) { return h.jobsSettled(n) })
	outs := h.outcomes()
	for u, o := range outs {
		if o.state != "succeeded" {
			t.Errorf("%s: %s %s", u, o.state, o.code)
		}
	}
	sa, sb := a.svc.Stats(), b.svc.Stats()
	if sa.Provisioned+sb.Provisioned < int64(n) {
		t.Errorf("replicas provisioned %d + %d of %d devices", sa.Provisioned, sb.Provisioned, n)
	}
	t.Logf("replica a (killed): %+v; replica b: %+v", sa, sb)
	h.checkProvisioned(f.Devices(), outs, maxSessions)
}

// checkDump greps a pg_dump of the database for every plaintext admin and
// MEBx password and for the provisioning key: none may appear.
func (h *harness) checkDump(devs []*firmware.Device) {
	t := h.t
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_dump")
	dump := ""
	if len(bins) > 0 {
		dump = bins[len(bins)-1]
	} else if p, err := exec.LookPath("pg_dump"); err == nil {
		dump = p
	} else {
		t.Fatal("pg_dump not found")
	}
	out, err := exec.Command(dump, "--no-owner", "--data-only", h.pool.Config().ConnString()).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	if !strings.Contains(string(out), "device_credentials") {
		t.Fatal("dump lacks device_credentials")
	}
	ctx := context.Background()
	rows, err := h.pool.Query(ctx, `SELECT uuid::text, version, password_enc, mebx_password_enc FROM device_credentials`)
	if err != nil {
		t.Fatal(err)
	}
	secretsSeen := 0
	for rows.Next() {
		var u string
		var version int
		var pw, mebx []byte
		if err := rows.Scan(&u, &version, &pw, &mebx); err != nil {
			t.Fatal(err)
		}
		for col, sealed := range map[string][]byte{"password_enc": pw, "mebx_password_enc": mebx} {
			plain, err := h.keys.Open(sealed, secrets.CredentialAAD(u, version, col))
			if err != nil {
				t.Fatal(err)
			}
			secretsSeen++
			if strings.Contains(string(out), string(plain)) {
				t.Errorf("the dump contains the plaintext %s of %s", col, u)
			}
		}
	}
	if secretsSeen < 2*len(devs) {
		t.Errorf("checked %d secrets for %d devices", secretsSeen, len(devs))
	}
}

// TestExplainNamesTheCertificateProblem: devices that trust no domain's
// root fail with NO_MATCHING_PROVISIONING_CERT, devices whose DNS suffix
// the only trusted chain does not cover fail with DOMAIN_SUFFIX_MISMATCH,
// and explain (over the admin verb, as the CLI calls it) says what to fix.
func TestExplainNamesTheCertificateProblem(t *testing.T) {
	h := newHarness(t)
	// The provisioner knows one domain, for another suffix than the
	// devices'; fleet A trusts its root, fleet B trusts nothing we have.
	h.domain = provtest.NewDomain(t, "elsewhere", "elsewhere.org", provtest.LeafOptions{})
	r := h.startReplica("p1")
	a := provtest.StartFleet(t, func() amtsim.Options {
		o := provtest.FleetOptions(t, 3, 40, h.hello, h.domain)
		o.LegacyShare, o.ProvisionedShare, o.TimeScale = 0, 0, 3000
		return o
	}())
	b := provtest.StartFleet(t, func() amtsim.Options {
		o := provtest.FleetOptions(t, 3, 41, h.hello)
		o.LegacyShare, o.ProvisionedShare, o.TimeScale = 0, 0, 3000
		return o
	}())
	eventually(t, "every device failed", 30*time.Second, func() (bool, string) { ok, s := h.jobsSettled(6); return ok, fmt.Sprintf("%s %v", s, h.outcomes()) })
	outs := h.outcomes()
	cases := []struct {
		fleet *amtsim.Fleet
		code  string
		says  []string
	}{
		{a, "DOMAIN_SUFFIX_MISMATCH", []string{"failed at step connect with DOMAIN_SUFFIX_MISMATCH", "elsewhere (suffix elsewhere.org)", "DNS suffix"}},
		{b, "NO_MATCHING_PROVISIONING_CERT", []string{"failed at step connect with NO_MATCHING_PROVISIONING_CERT", "elsewhere=sha256:", "add a provisioning certificate whose root the device trusts"}},
	}
	for _, tc := range cases {
		for _, d := range tc.fleet.Devices() {
			u := d.Config().UUID
			if outs[u].state != "failed" || outs[u].code != tc.code {
				t.Errorf("%s: %+v, want failed %s", u, outs[u], tc.code)
				continue
			}
			var e provisioner.Explanation
			if err := admin.Call(context.Background(), r.nc, provisioner.SubjectExplain, provisioner.UUIDRequest{UUID: u}, &e); err != nil {
				t.Fatal(err)
			}
			text := e.Summary + " | " + e.Detail + " | " + e.Fix
			for _, want := range tc.says {
				if !strings.Contains(text, want) {
					t.Errorf("%s: explain %q lacks %q", u, text, want)
				}
			}
			if d.State() != amt.InProvisioning {
				t.Errorf("%s: device left setup mode: %v", u, d.State())
			}
		}
	}
}
