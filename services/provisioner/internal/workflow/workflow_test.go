package workflow_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/wsman"
	"github.com/amtprov/amtprov/services/provisioner/errcode"
	"github.com/amtprov/amtprov/services/provisioner/internal/jobstore"
	"github.com/amtprov/amtprov/services/provisioner/internal/provtest"
	"github.com/amtprov/amtprov/services/provisioner/internal/workflow"
	"github.com/amtprov/amtprov/tools/amtsim"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// maxSessions is the most concurrent sessions a device may see (see the
// check in TestProvisionsSimulatedDevices).
const maxSessions = 2

type env struct {
	store  *jobstore.Store
	engine *workflow.Engine
	signer *provtest.Signer
	keys   *secrets.Keyring
}

func newEnv(t *testing.T, domains ...workflow.Domain) env {
	t.Helper()
	st := jobstore.New(storetest.New(t), "/provisioner/test")
	if _, err := st.CreateProfile(context.Background(), jobstore.Profile{Name: "default", IsDefault: true,
		Settings: jobstore.Settings{SOL: true, KVM: true, UserConsent: "kvm"}}); err != nil {
		t.Fatal(err)
	}
	signer := provtest.NewSigner(t)
	keys := provtest.Keyring(t)
	eng := workflow.New(workflow.Config{DevicePort: provtest.TLSPort, StepRetry: 3 * time.Second, VerifyWait: 5 * time.Second,
		CallTimeout: 15 * time.Second, PostCommitPause: 100 * time.Millisecond}, st, provtest.Domains(domains), signer, keys)
	return env{store: st, engine: eng, signer: signer, keys: keys}
}

func helloOf(d *firmware.Device, hashes ...amt.RootHash) *events.DeviceHello {
	cfg := d.Config()
	h := &events.DeviceHello{UUID: cfg.UUID, SourceIP: cfg.IP, InterfaceVersion: 3, ReceivedAt: time.Now()}
	for _, rh := range hashes {
		h.RootHashes = append(h.RootHashes, events.RootHash{Alg: rh.Alg.String(), Hex: rh.Hex()})
	}
	if cfg.Legacy {
		h.InterfaceVersion = 2
	}
	return h
}

func (e env) run(t *testing.T, h *events.DeviceHello, owner string) (jobstore.Job, workflow.Result) {
	t.Helper()
	ctx := context.Background()
	job, dec, err := e.store.Acquire(ctx, jobstore.Hello{UUID: h.UUID, SourceIP: h.SourceIP, ReceivedAt: h.ReceivedAt}, owner, time.Minute)
	if err != nil || (dec != jobstore.Started && dec != jobstore.Resumed) {
		t.Fatalf("acquire: %v %v", dec, err)
	}
	return job, e.engine.Run(ctx, job, owner, h)
}

// finish applies a result as the service does: Finish, or Requeue on Retry.
func (e env) finish(t *testing.T, job jobstore.Job, owner string, res workflow.Result) {
	t.Helper()
	ctx := context.Background()
	var err error
	if res.Retry {
		err = e.store.Requeue(ctx, job.ID, owner, res.Outcome.Code, res.Outcome.Detail)
	} else {
		err = e.store.Finish(ctx, job, owner, res.Outcome)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func adminLogin(t *testing.T, e env, dev *firmware.Device) {
	t.Helper()
	ctx := context.Background()
	c, err := e.store.DeviceCredentials(ctx, dev.Config().UUID)
	if err != nil || !c.Active {
		t.Fatalf("credentials: %+v %v", c, err)
	}
	u := dev.Config().UUID
	// Bound to the device, the version and the column: a value moved to
	// another version of the same device, or opened without its row's aad,
	// does not open.
	for what, wrong := range map[string][]byte{
		"no aad":                    nil,
		"the aad without a version": secrets.AAD("device_credentials", u, "password_enc"),
		"the next version's aad":    secrets.CredentialAAD(u, c.Version+1, "password_enc"),
		"the MEBx column's aad":     secrets.CredentialAAD(u, c.Version, "mebx_password_enc"),
	} {
		if _, err := e.keys.Open(c.PasswordEnc, wrong); err == nil {
			t.Fatalf("credentials open with %s", what)
		}
	}
	pw, err := e.keys.Open(c.PasswordEnc, secrets.CredentialAAD(u, c.Version, "password_enc"))
	if err != nil {
		t.Fatal(err)
	}
	pin, _ := hex.DecodeString(c.TLSCertSHA256)
	tlsConf, err := wsman.PinnedTLSConfig(pin)
	if err != nil {
		t.Fatal(err)
	}
	wc, err := wsman.New(wsman.Config{Address: dev.Config().IP + ":" + strconv.Itoa(provtest.TLSPort), TLS: tlsConf, Username: c.Username, Password: string(pw)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := wc.SetupAndConfiguration(ctx)
	wc.Close()
	if err != nil || st.ProvisioningState != amt.PostProvisioning {
		t.Fatalf("digest login with the stored password: %v %v", st.ProvisioningState, err)
	}
	bad, _ := wsman.New(wsman.Config{Address: dev.Config().IP + ":" + strconv.Itoa(provtest.TLSPort), TLS: tlsConf, Username: c.Username, Password: string(pw) + "x"})
	defer bad.Close()
	if _, err := bad.SetupAndConfiguration(ctx); !errors.Is(err, wsman.ErrUnauthorized) {
		t.Fatalf("a wrong password is not refused: %v", err)
	}
}

func TestProvisionsSimulatedDevices(t *testing.T) {
	dom := provtest.NewDomain(t, "corp", "corp.example.com", provtest.LeafOptions{})
	other := provtest.NewDomain(t, "other", "other.example.org", provtest.LeafOptions{})
	e := newEnv(t, dom)
	o := provtest.FleetOptions(t, 2, 1, "127.0.0.1:1", dom, other)
	f := provtest.StartFleet(t, o)
	for _, dev := range f.Devices() {
		h := helloOf(dev, provtest.RootHash(t, dom), provtest.RootHash(t, other))
		job, res := e.run(t, h, "w1")
		if res.Retry || !res.Outcome.Succeeded {
			t.Fatalf("%s: %+v", dev.Config().UUID, res)
		}
		e.finish(t, job, "w1", res)
		d := res.Outcome.Device
		if dev.State() != amt.PostProvisioning || dev.ControlMode() != amt.ControlACM || !dev.TLSEnabled() {
			t.Fatalf("device after run: %v %v tls=%v", dev.State(), dev.ControlMode(), dev.TLSEnabled())
		}
		if d.ControlMode != "acm" || !d.TLSEnabled || !d.SOL || d.IDER || !d.KVM || d.Domain != "corp.example.com" ||
			!strings.HasPrefix(d.Hostname, "amt-") || d.AMTVersion == "" {
			t.Fatalf("reported device %+v", d)
		}
		// One session at a time, except that libs/wsman's transport may dial
		// a second connection when it answers the digest challenge of the
		// first post-commit request before the first connection is back in
		// its idle pool (requested fix: MaxConnsPerHost 1 in wsman.New).
		if n := dev.Info().SessionsMaxConcurrent; n < 1 || n > maxSessions {
			t.Fatalf("sessions_max_concurrent %d, want at most %d", n, maxSessions)
		}
		adminLogin(t, e, dev) // after the sessions check: the test's own clients count too
		steps, err := e.store.Steps(context.Background(), job.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(steps) != len(workflow.StepNames()) {
			t.Fatalf("%d steps recorded, want %d", len(steps), len(workflow.StepNames()))
		}
		for _, s := range steps {
			if s.Outcome != jobstore.OutcomeOK {
				t.Errorf("step %s: %s", s.Step, s.Outcome)
			}
		}
		cert := dev.ServerCertificate()
		sum := sha256.Sum256(cert.Certificate[0])
		if hex.EncodeToString(sum[:]) != d.TLSCertSHA256 {
			t.Fatal("device serves another certificate than the one reported")
		}
	}
	if e.signer.Issued() != 2 {
		t.Fatalf("%d certificates issued", e.signer.Issued())
	}
}

func TestFailuresHaveTheirCodes(t *testing.T) {
	dom := provtest.NewDomain(t, "corp", "corp.example.com", provtest.LeafOptions{})
	wrongSuffix := provtest.NewDomain(t, "elsewhere", "elsewhere.org", provtest.LeafOptions{})
	badChain := provtest.NewDomain(t, "bad", "corp.example.com", provtest.LeafOptions{NoSetupMark: true})
	unknown := provtest.NewDomain(t, "unknown", "corp.example.com", provtest.LeafOptions{})
	e := newEnv(t, dom, wrongSuffix, badChain)
	o := provtest.FleetOptions(t, 5, 2, "127.0.0.1:1", dom, wrongSuffix, badChain)
	o.LegacyShare = 0
	f := provtest.StartFleet(t, o)
	devs := f.Devices()
	tests := []struct {
		name   string
		hello  *events.DeviceHello
		code   errcode.Code
		detail string
	}{
		{"no matching root", helloOf(devs[0], provtest.RootHash(t, unknown)), errcode.NoMatchingProvisioningCert, "trusts 1 root hashes"},
		{"suffix mismatch", helloOf(devs[1], provtest.RootHash(t, wrongSuffix)), errcode.DomainSuffixMismatch, "elsewhere (suffix elsewhere.org)"},
		{"chain without setup mark", helloOf(devs[2], provtest.RootHash(t, badChain)), errcode.CertRejectedByDevice, "neither the Intel OID"},
		{"v2 hello", func() *events.DeviceHello { h := helloOf(devs[3]); h.InterfaceVersion = 2; return h }(), errcode.PSKNotSupported, "version 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			job, res := e.run(t, tc.hello, "w")
			if res.Retry || res.Outcome.Succeeded || res.Outcome.Code != string(tc.code) {
				t.Fatalf("result %+v, want failure %s", res.Outcome, tc.code)
			}
			if !strings.Contains(res.Outcome.Detail, tc.detail) || res.Outcome.Hint == "" {
				t.Fatalf("detail %q (want %q), hint %q", res.Outcome.Detail, tc.detail, res.Outcome.Hint)
			}
			e.finish(t, job, "w", res)
		})
	}
	// Unreachable: retryable, and the step row says so.
	if err := f.InjectFault(devs[4].Config().UUID, firmware.FaultUnreachable, time.Minute); err != nil {
		t.Fatal(err)
	}
	job, res := e.run(t, helloOf(devs[4], provtest.RootHash(t, dom)), "w")
	if !res.Retry || res.Outcome.Code != string(errcode.DeviceUnreachable) {
		t.Fatalf("unreachable: %+v", res.Outcome)
	}
	steps, _ := e.store.Steps(context.Background(), job.ID)
	if len(steps) != 1 || steps[0].Outcome != jobstore.OutcomeRetry || steps[0].ErrorCode != string(errcode.DeviceUnreachable) {
		t.Fatalf("steps %+v", steps)
	}
}

func TestRebootBeforeCommitRestartsAndCommitsOnce(t *testing.T) {
	dom := provtest.NewDomain(t, "corp", "corp.example.com", provtest.LeafOptions{})
	e := newEnv(t, dom)
	o := provtest.FleetOptions(t, 1, 3, "127.0.0.1:1", dom)
	o.LegacyShare = 0
	f := provtest.StartFleet(t, o)
	dev := f.Devices()[0]
	if err := f.InjectFault(dev.Config().UUID, firmware.FaultReboot, time.Hour); err != nil {
		t.Fatal(err)
	}
	h := helloOf(dev, provtest.RootHash(t, dom))
	job, res := e.run(t, h, "w1")
	if !res.Retry || res.Outcome.Code != string(errcode.DeviceRebooted) || res.Outcome.Step != workflow.StepCommit {
		t.Fatalf("first run: %+v %v", res.Outcome, res.Err)
	}
	e.finish(t, job, "w1", res)
	if dev.State() != amt.InProvisioning {
		t.Fatalf("state %v", dev.State())
	}
	// The fault ends; the next delivery redoes the lost steps and commits.
	if err := f.InjectFault(dev.Config().UUID, firmware.FaultReboot, time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	job2, res := e.run(t, h, "w2")
	if job2.ID != job.ID || !res.Outcome.Succeeded {
		t.Fatalf("second run (job %d vs %d): %+v %v", job2.ID, job.ID, res.Outcome, res.Err)
	}
	e.finish(t, job2, "w2", res)
	steps, _ := e.store.Steps(context.Background(), job.ID)
	for _, s := range steps {
		want := 1
		switch s.Step {
		case workflow.StepConnect, workflow.StepRead, workflow.StepCredentials, workflow.StepMEBx, workflow.StepAdminACL,
			workflow.StepHostname, workflow.StepClock, workflow.StepKeyPair, workflow.StepSign, workflow.StepAddCert,
			workflow.StepContext, workflow.StepTLSSettings, workflow.StepFeatures, workflow.StepCommit:
			want = 2
		}
		if s.AttemptNo != want || s.Outcome != jobstore.OutcomeOK {
			t.Errorf("step %s: attempt %d outcome %s, want attempt %d ok", s.Step, s.AttemptNo, s.Outcome, want)
		}
	}
	adminLogin(t, e, dev)
}

// TestCommitNotRecordedIsVerifiedNotRepeated: a worker that died between
// CommitChanges and recording it leaves the commit step unfinished; the
// next run finds the device provisioned (it asks for digest), verifies
// with the pinned certificate and records the commit without a second call.
func TestCommitNotRecordedIsVerifiedNotRepeated(t *testing.T) {
	dom := provtest.NewDomain(t, "corp", "corp.example.com", provtest.LeafOptions{})
	e := newEnv(t, dom)
	o := provtest.FleetOptions(t, 1, 5, "127.0.0.1:1", dom)
	o.LegacyShare = 0
	f := provtest.StartFleet(t, o)
	dev := f.Devices()[0]
	h := helloOf(dev, provtest.RootHash(t, dom))
	job, res := e.run(t, h, "w1")
	if !res.Outcome.Succeeded {
		t.Fatalf("first run: %+v", res.Outcome)
	}
	// Rewind the record to "commit started, never finished" and hand the
	// job to another worker, as a lease takeover would.
	ctx := context.Background()
	pool := e.store.Pool()
	if _, err := pool.Exec(ctx, `UPDATE provisioning_steps SET outcome = 'running', finished = NULL WHERE job_id = $1 AND step = 'commit'`, job.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM provisioning_steps WHERE job_id = $1 AND step = 'verify'`, job.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Requeue(ctx, job.ID, "w1", "", ""); err != nil {
		t.Fatal(err)
	}
	calls := dev.Counters.WSManCalls.Load()
	job2, res := e.run(t, h, "w2")
	if job2.ID != job.ID || !res.Outcome.Succeeded || res.Outcome.Device.AMTVersion == "" {
		t.Fatalf("second run: %+v %v", res.Outcome, res.Err)
	}
	e.finish(t, job2, "w2", res)
	steps, _ := e.store.Steps(ctx, job.ID)
	for _, s := range steps {
		if s.Step == workflow.StepCommit && (s.Outcome != jobstore.OutcomeOK || s.AttemptNo != 2) {
			t.Fatalf("commit step %+v", s)
		}
	}
	if n := dev.Counters.WSManCalls.Load() - calls; n > 10 {
		t.Fatalf("%d WS-Man calls to verify: the workflow was repeated", n)
	}
	adminLogin(t, e, dev)
}

// vanishAfterCommit makes dev unreachable for an hour as soon as it is
// post-provisioning; the channel reports the injection.
func vanishAfterCommit(t *testing.T, f *amtsim.Fleet, dev *firmware.Device) <-chan error {
	t.Helper()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	t.Cleanup(stopWatch)
	vanished := make(chan error, 1)
	go func() {
		for dev.State() != amt.PostProvisioning {
			select {
			case <-watchCtx.Done():
				vanished <- watchCtx.Err()
				return
			case <-time.After(time.Millisecond):
			}
		}
		vanished <- f.InjectFault(dev.Config().UUID, firmware.FaultUnreachable, time.Hour)
	}()
	return vanished
}

// TestVerifyTriesCountFromTheCommittingRun: a job whose commit goes
// through in its second run counts that run as verification's first try,
// and the next as its second, so verification gets a full set of tries
// whichever run committed.
func TestVerifyTriesCountFromTheCommittingRun(t *testing.T) {
	dom := provtest.NewDomain(t, "corp", "corp.example.com", provtest.LeafOptions{})
	e := newEnv(t, dom)
	e.engine = workflow.New(workflow.Config{DevicePort: provtest.TLSPort, StepRetry: time.Second, VerifyWait: 300 * time.Millisecond,
		CallTimeout: 15 * time.Second, PostCommitPause: time.Second}, e.store, provtest.Domains{dom}, e.signer, e.keys)
	o := provtest.FleetOptions(t, 1, 7, "127.0.0.1:1", dom)
	o.LegacyShare = 0
	f := provtest.StartFleet(t, o)
	dev := f.Devices()[0]
	h := helloOf(dev, provtest.RootHash(t, dom))

	// Run 1: the device reboots as the commit arrives; nothing is committed.
	dev.InjectFault(firmware.FaultReboot, time.Now().Add(time.Hour))
	job, res := e.run(t, h, "w1")
	if !res.Retry || res.Outcome.Step != workflow.StepCommit || res.Tries != 1 || dev.State() == amt.PostProvisioning {
		t.Fatalf("run 1: retry=%v step=%s tries=%d state=%v %v", res.Retry, res.Outcome.Step, res.Tries, dev.State(), res.Err)
	}
	e.finish(t, job, "w1", res)
	dev.InjectFault(firmware.FaultReboot, time.Now()) // over

	// Run 2 commits, then the device vanishes before verify.
	vanished := vanishAfterCommit(t, f, dev)
	job, res = e.run(t, h, "w2")
	if err := <-vanished; err != nil {
		t.Fatal(err)
	}
	if !res.Retry || res.Outcome.Code != string(errcode.ProvisionedUnverified) || res.Tries != 1 {
		t.Fatalf("run 2 (commits): retry=%v tries=%d %+v %v; want verification's first try", res.Retry, res.Tries, res.Outcome, res.Err)
	}
	e.finish(t, job, "w2", res)
	_, res = e.run(t, h, "w3")
	if !res.Retry || res.Outcome.Code != string(errcode.ProvisionedUnverified) || res.Tries != 2 {
		t.Fatalf("run 3: retry=%v tries=%d %+v %v; want verification's second try", res.Retry, res.Tries, res.Outcome, res.Err)
	}
}

// TestVerifyFailingAfterCommitKeepsTheDevicesCredentials: the device
// vanishes right after CommitChanges and stays away through every try of
// the verification, so the job ends failed. The device holds the job's
// admin password all the same: from the recorded commit on, the job's
// credentials are the device's only active ones, with the certificate pin,
// and the failure says the device is provisioned (PROVISIONED_UNVERIFIED).
// A later hello starts an attempt that is refused before it could make
// new credentials.
func TestVerifyFailingAfterCommitKeepsTheDevicesCredentials(t *testing.T) {
	dom := provtest.NewDomain(t, "corp", "corp.example.com", provtest.LeafOptions{})
	e := newEnv(t, dom)
	// A long pause after the commit: the watcher below has all of it to
	// take the device away before verify dials.
	e.engine = workflow.New(workflow.Config{DevicePort: provtest.TLSPort, StepRetry: time.Second, VerifyWait: 300 * time.Millisecond,
		CallTimeout: 15 * time.Second, PostCommitPause: time.Second}, e.store, provtest.Domains{dom}, e.signer, e.keys)
	o := provtest.FleetOptions(t, 1, 6, "127.0.0.1:1", dom)
	o.LegacyShare = 0
	f := provtest.StartFleet(t, o)
	dev := f.Devices()[0]
	uuid := dev.Config().UUID
	ctx := context.Background()

	vanished := vanishAfterCommit(t, f, dev)

	h := helloOf(dev, provtest.RootHash(t, dom))
	const tries = 3 // the service's MaxDeliver: the job fails after this many runs
	var job jobstore.Job
	var res workflow.Result
	for i := 1; i <= tries; i++ {
		job, res = e.run(t, h, "w"+strconv.Itoa(i))
		// The first run fails in verify; the later ones at connect (a
		// resumed run reconnects first), counted as tries of verify.
		wantStep := workflow.StepConnect
		if i == 1 {
			wantStep = workflow.StepVerify
		}
		if !res.Retry || res.Outcome.Code != string(errcode.ProvisionedUnverified) || res.Outcome.Step != wantStep || res.Tries != i {
			t.Fatalf("run %d: retry=%v tries=%d %+v %v", i, res.Retry, res.Tries, res.Outcome, res.Err)
		}
		if i == 1 {
			if err := <-vanished; err != nil {
				t.Fatal(err)
			}
		}
		if i < tries {
			e.finish(t, job, "w"+strconv.Itoa(i), res)
		}
	}
	if res.Outcome.Hint != errcode.Lookup(errcode.ProvisionedUnverified).Hint ||
		!strings.Contains(res.Outcome.Detail, "holds this job's credentials") {
		t.Fatalf("outcome does not say the device is provisioned: %+v", res.Outcome)
	}
	// Out of tries: the service ends the job failed with this outcome.
	if err := e.store.Finish(ctx, job, "w"+strconv.Itoa(tries), res.Outcome); err != nil {
		t.Fatal(err)
	}
	if dev.State() != amt.PostProvisioning {
		t.Fatalf("device state %v", dev.State())
	}
	jc, err := e.store.JobCredentials(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(dev.ServerCertificate().Certificate[0])
	checkActive := func(when string) {
		t.Helper()
		rows, err := e.store.Pool().Query(ctx, `SELECT version, tls_cert_sha256 FROM device_credentials WHERE uuid = $1 AND active`, uuid)
		if err != nil {
			t.Fatal(err)
		}
		type row struct {
			version int
			pin     string
		}
		var active []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.version, &r.pin); err != nil {
				t.Fatal(err)
			}
			active = append(active, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(active) != 1 || active[0].version != jc.Version || active[0].pin != hex.EncodeToString(sum[:]) {
			t.Fatalf("%s: active credentials %+v, want only version %d pinned to the device's certificate", when, active, jc.Version)
		}
	}
	checkActive("job failed after commit")

	// The device is back: the stored password logs in, a wrong one does not.
	if err := f.InjectFault(uuid, firmware.FaultUnreachable, time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	adminLogin(t, e, dev)

	// A later hello (RetryFailedAfter passed) starts a new attempt: the
	// device is provisioned, the attempt fails before its credentials step.
	var versions int
	count := func() int {
		t.Helper()
		var n int
		if err := e.store.Pool().QueryRow(ctx, `SELECT count(*) FROM device_credentials WHERE uuid = $1`, uuid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	versions = count()
	h2 := helloOf(dev, provtest.RootHash(t, dom))
	job2, res2 := e.run(t, h2, "w-next")
	if job2.ID == job.ID || res2.Retry || res2.Outcome.Code != string(errcode.AMTNotPermitted) ||
		!strings.Contains(res2.Outcome.Detail, "active credentials (version "+strconv.Itoa(jc.Version)+" from job "+strconv.FormatInt(job.ID, 10)) {
		t.Fatalf("new attempt (job %d after %d): %+v %v", job2.ID, job.ID, res2.Outcome, res2.Err)
	}
	e.finish(t, job2, "w-next", res2)
	if n := count(); n != versions {
		t.Fatalf("the new attempt stored credentials: %d rows, had %d", n, versions)
	}
	checkActive("after a new attempt")
	adminLogin(t, e, dev)
}
