package provisioner_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/wsman"
	"github.com/amtprov/amtprov/services/provisioner"
	"github.com/amtprov/amtprov/services/provisioner/errcode"
	"github.com/amtprov/amtprov/services/provisioner/internal/provtest"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
)

// TestDeviceGoneAfterCommitKeepsItsCredentials: the device vanishes right
// after CommitChanges and does not come back while the job has tries. The
// job ends failed after MaxDeliver runs (the runs that fail at connect
// count), with PROVISIONED_UNVERIFIED, and explain says the device is
// provisioned; `device credentials` returns the job's credentials as
// confirmed, and they log in once the device is back.
func TestDeviceGoneAfterCommitKeepsItsCredentials(t *testing.T) {
	const maxDeliver = 3
	h := newHarness(t)
	cfg := testConfig("pv")
	cfg.MaxDeliver = maxDeliver
	cfg.Workflow.StepRetry, cfg.Workflow.VerifyWait, cfg.Workflow.PostCommitPause = time.Second, 300*time.Millisecond, time.Second
	r := h.startReplicaWith("pv", cfg, provtest.Domains{h.domain}, h.signer)
	f := h.startFleet(1, 70, nil)
	dev := f.Devices()[0]
	u := dev.Config().UUID

	// Take the device away once it has committed (the post-commit pause
	// leaves a second before verify dials).
	eventually(t, "device committed", time.Minute, func() (bool, string) {
		return dev.State() == amt.PostProvisioning, fmt.Sprintf("state %v", dev.State())
	})
	if err := f.InjectFault(u, firmware.FaultUnreachable, time.Hour); err != nil {
		t.Fatal(err)
	}
	eventually(t, "job finished", 2*time.Minute, func() (bool, string) { return h.jobsSettled(1) })
	ctx := context.Background()
	var jobID int64
	var state, code, hint, detail string
	if err := h.pool.QueryRow(ctx, `SELECT id, state, error_code, hint, detail FROM provisioning_jobs WHERE uuid = $1`, u).
		Scan(&jobID, &state, &code, &hint, &detail); err != nil {
		t.Fatal(err)
	}
	if state != "failed" || code != string(errcode.ProvisionedUnverified) || hint != errcode.Lookup(errcode.ProvisionedUnverified).Hint ||
		!strings.Contains(detail, fmt.Sprintf("gave up after %d attempts", maxDeliver)) || !strings.Contains(detail, "holds this job's credentials") {
		t.Fatalf("job %d: %s %s hint %q detail %q", jobID, state, code, hint, detail)
	}
	var e provisioner.Explanation
	if err := admin.Call(ctx, r.nc, provisioner.SubjectExplain, provisioner.UUIDRequest{UUID: u}, &e); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.Summary, "the device is provisioned with the admin credentials amtprov stored") ||
		!strings.Contains(e.Fix, "amtprov device credentials UUID") || strings.Contains(e.Fix, "next hello") {
		t.Errorf("explain: %+v", e)
	}

	var c provisioner.Credentials
	if err := admin.Call(ctx, r.nc, provisioner.SubjectDeviceCredentials, provisioner.UUIDRequest{UUID: u}, &c); err != nil {
		t.Fatal(err)
	}
	var jobVersion, active int
	if err := h.pool.QueryRow(ctx, `SELECT (SELECT version FROM device_credentials WHERE job_id = $1),
		(SELECT count(*) FROM device_credentials WHERE uuid = $2 AND active)`, jobID, u).Scan(&jobVersion, &active); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(dev.ServerCertificate().Certificate[0])
	if !c.Confirmed || c.Version != jobVersion || active != 1 || c.TLSCertSHA256 != hex.EncodeToString(sum[:]) || c.Password == "" {
		t.Fatalf("device credentials: confirmed=%v version %d (job's %d), %d active, pin %q", c.Confirmed, c.Version, jobVersion, active, c.TLSCertSHA256)
	}

	// The device is back: the operator's credentials log in, over the pin.
	if err := f.InjectFault(u, firmware.FaultUnreachable, time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	tlsConf, err := wsman.PinnedTLSConfig(sum[:])
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(dev.Config().IP, fmt.Sprint(provtest.TLSPort))
	for _, tc := range []struct {
		password string
		ok       bool
	}{{c.Password, true}, {c.Password + "x", false}} {
		wc, err := wsman.New(wsman.Config{Address: addr, TLS: tlsConf, Username: c.Username, Password: tc.password})
		if err != nil {
			t.Fatal(err)
		}
		st, err := wc.SetupAndConfiguration(ctx)
		wc.Close()
		switch {
		case tc.ok && (err != nil || st.ProvisioningState != amt.PostProvisioning):
			t.Errorf("digest login with the stored password: %v %v", st.ProvisioningState, err)
		case !tc.ok && !errors.Is(err, wsman.ErrUnauthorized):
			t.Errorf("a wrong password is not refused: %v", err)
		}
	}
}
