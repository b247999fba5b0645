package provisioner_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/certauthority"
	"github.com/amtprov/amtprov/services/provisioner/internal/provtest"
	"github.com/amtprov/amtprov/tools/amtsim"
)

// TestKill9ReplicaLeavesNothingUnfinished runs two cmd/provisioner
// processes against one database and NATS server, with the real
// certauthority in this process, and kills one with SIGKILL while it holds
// jobs. The survivor must take the dead replica's jobs over once their
// leases expire and finish every device, each committed once.
func TestKill9ReplicaLeavesNothingUnfinished(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the provisioner binary")
	}
	n := 40
	if long() {
		n = 300
	}
	bin := filepath.Join(t.TempDir(), "provisioner")
	build := exec.Command("go", "build", "-o", bin, "./cmd/provisioner")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build provisioner: %v\n%s", err, out)
	}
	// The NATS server runs in a child process: the SIGKILLed replica's
	// abrupt disconnect has made nats-server v2.15.2 report an internal data
	// race (CI, 2026-11-26) that -race would pin on this test.
	h := newHarnessOn(t, bustest.RunServerProcess(t))
	// A keyring both processes and the CA share.
	key := []byte(strings.Repeat("k", 32))
	keys, err := secrets.NewKeyring("kill", map[string][]byte{"kill": key})
	if err != nil {
		t.Fatal(err)
	}
	h.keys = keys
	ctx := context.Background()
	caNC, err := nats.Connect(h.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(caNC.Close)
	caTel, _ := telemetry.NewForTest("certauthority")
	ca, err := certauthority.New(ctx, certauthority.Config{}, h.pool, keys, caNC, h.js, caTel, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	cdone := make(chan error, 1)
	go func() { cdone <- ca.Run(cctx) }()
	t.Cleanup(func() { ccancel(); <-cdone })
	root, err := certauthority.EnsureDevDomain(ctx, h.pool, keys, amtsim.DefaultDNSSuffix)
	if err != nil {
		t.Fatal(err)
	}

	start := func(name string) *exec.Cmd {
		cmd := exec.Command(bin, "--instance", name, "--workers", "16", "--lease", "3s", "--ack-wait", "2s",
			"--device-port", fmt.Sprint(provtest.TLSPort), "--post-commit-pause", "100ms", "--call-timeout", "10s",
			"--ops-addr", "127.13.255.253:0", "--log-level", "warn")
		cmd.Env = append(os.Environ(), "DATABASE_URL="+h.pool.Config().ConnString(), "NATS_URL="+h.natsURL,
			"AMTPROV_SECRET_KEYS=kill:"+base64.StdEncoding.EncodeToString(key), "OTEL_SDK_DISABLED=true")
		if os.Getenv("AMTPROV_TEST_LOG") == "1" {
			cmd.Stderr = os.Stderr
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				_ = cmd.Wait()
			}
		})
		return cmd
	}
	a := start("killed")
	start("survivor")

	o := provtest.FleetOptions(t, n, 50, h.hello)
	o.TrustHashes = append(o.TrustHashes, root)
	o.LegacyShare, o.ProvisionedShare, o.TimeScale, o.Latency = 0, 0, 3000, 10*time.Millisecond
	f := provtest.StartFleet(t, o)

	// Kill "killed" while it holds running jobs that are not finished.
	eventually(t, "the doomed replica holds jobs", 5*time.Minute, func() (bool, string) {
		var held, done int
		err := h.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'running' AND lease_owner LIKE 'killed/%'),
			count(*) FILTER (WHERE state = 'succeeded') FROM provisioning_jobs`).Scan(&held, &done)
		return err == nil && held >= 3 && done >= 1, fmt.Sprintf("held %d, done %d, err %v", held, done, err)
	})
	if err := a.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = a.Wait()
	var orphaned int
	if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM provisioning_jobs WHERE state = 'running' AND lease_owner LIKE 'killed/%'`).Scan(&orphaned); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed with %d jobs running", orphaned)

	eventually(t, "the survivor finishes every device", 5*time.Minute, func() (bool, string) { return h.jobsSettled(n) })
	outs := h.outcomes()
	for u, o := range outs {
		if o.state != "succeeded" {
			t.Errorf("%s: %s %s", u, o.state, o.code)
		}
	}
	var resumed int
	if err := h.pool.QueryRow(ctx, `SELECT count(DISTINCT job_id) FROM provisioning_steps WHERE attempt_no > 1`).Scan(&resumed); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d jobs had a step started twice (taken over)", resumed)
	// Sessions are not checked here: the killed process's connections are
	// closed by the kernel, but the simulator counts them until it notices,
	// which can be after the survivor connects.
	h.checkProvisioned(f.Devices(), outs, 0)
}
