//go:build e2e

// The chaos end-to-end test: `make test-e2e` (never `make test`). It runs
// bin/amtprov bench --cluster --chaos with a small fleet: amtprov up with
// two provisioner and two inventory replicas, and once a quarter of the
// fleet is provisioned a NATS node, a provisioner replica and an inventory
// replica get SIGKILL; up restarts them and the bench verifies every device
// against the simulator and the stored facts (bench_chaos.go).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	chaosE2EDevices = 200
	// Inside the e2e loopback range (127.17/16), clear of
	// TestE2EUpProvisionsAndTraces's devices at its start.
	chaosE2ESimBase = "127.17.128.1"
)

func TestE2EChaosKill9DuringBench(t *testing.T) {
	bin, deploy := repoPaths(t)
	work := e2eRunDir(t, "amtprov-chaos-e2e-")
	out := filepath.Join(work, "chaos.json")
	// A 15 s job lease (ack wait 7.5 s) instead of the provisioner's 60 s,
	// so the jobs of the killed replica are taken over within the test's
	// budget; the takeover path is the same.
	args := []string{"--json", "bench", "--cluster", "--chaos", "--chaos-at", "0.25",
		"--provisioners", "2", "--inventory", "2", "--devices", fmt.Sprint(chaosE2EDevices), "--lease", "15s",
		"--sim-base", chaosE2ESimBase, "--bin-dir", bin, "--deploy-dir", deploy,
		"--work-dir", work, "--keep", "--timeout", "4m", "--out", out, "--log-level", "warn"}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "amtprov"), args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	runErr := cmd.Run()
	took := time.Since(start)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("amtprov bench stderr:\n%s", stderr.String())
			if runs, _ := filepath.Glob(filepath.Join(work, "amtprov-bench-*")); len(runs) > 0 {
				dumpLogs(t, runs[0])
			}
		}
	})
	// The bench's own progress lines are the record of what happened.
	sc := bufio.NewScanner(bytes.NewReader(stderr.Bytes()))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "bench: ") {
			t.Log(sc.Text())
		}
	}
	t.Logf("amtprov %s: %v in %s", strings.Join(args, " "), runErr, took.Round(time.Second))
	if runErr != nil {
		t.Fatalf("amtprov bench --chaos: %v (the verification or a kill failed; see the report %s)", runErr, out)
	}

	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep benchReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if len(rep.Runs) != 1 || rep.Runs[0].Chaos == nil {
		t.Fatalf("report has %d runs, want 1 with a chaos object", len(rep.Runs))
	}
	r := rep.Runs[0]
	c := r.Chaos
	if r.Result.Provisioned != chaosE2EDevices {
		t.Errorf("provisioned %d of %d", r.Result.Provisioned, chaosE2EDevices)
	}
	if c.AtDevices < chaosE2EDevices/4 {
		t.Errorf("kills sent at %d provisioned, want at least a quarter of %d", c.AtDevices, chaosE2EDevices)
	}

	// One of each, every one SIGKILLed, restarted by up with a new pid
	// and ready again.
	var killed []string
	for _, k := range c.Kills {
		killed = append(killed, k.Service)
		switch {
		case k.Error != "":
			t.Errorf("%s: %s", k.Process, k.Error)
		case k.NewPID == 0 || k.NewPID == k.PID:
			t.Errorf("%s: pid %d, after the restart %d", k.Process, k.PID, k.NewPID)
		case !(k.KilledAtS < k.RestartedAtS && k.RestartedAtS <= k.ReadyAtS):
			t.Errorf("%s: killed at %.3f s, restarted at %.3f s, ready at %.3f s: out of order", k.Process, k.KilledAtS, k.RestartedAtS, k.ReadyAtS)
		}
		t.Logf("killed %s (pid %d, %s) at %.1f s; new pid %d at %.1f s, ready at %.1f s; pid at the end %d",
			k.Process, k.PID, k.Why, k.KilledAtS, k.NewPID, k.RestartedAtS, k.ReadyAtS, k.FinalPID)
		if !slices.ContainsFunc(c.Exits, func(e benchExit) bool { return e.Process == k.Process }) {
			t.Errorf("%s: no exit of it in up's log: %+v", k.Process, c.Exits)
		}
	}
	// Exits beyond the kills (a restarted process failing again) are
	// recorded, not failures: what counts is that every device ends right.
	for _, e := range c.Exits {
		t.Logf("up: %s exited at %.1f s (%s, ran %s)", e.Process, e.AtS, e.Err, e.Ran)
	}
	slices.Sort(killed)
	if !slices.Equal(killed, []string{"inventory", "nats", "provisioner"}) {
		t.Errorf("killed services %v, want one NATS node, one provisioner and one inventory replica", killed)
	}

	v := c.Verification
	t.Logf("verification: %+v", v)
	if !v.Passed || v.Devices != chaosE2EDevices || v.ProblemDevices != 0 {
		t.Fatalf("verification passed=%v for %d devices, %d with problems: %q", v.Passed, v.Devices, v.ProblemDevices, v.Problems)
	}
	// Every per-device check counted every device.
	for name, n := range map[string]int{
		"sim_provisioned": v.SimProvisioned, "sim_entered_post_once": v.SimEnteredOnce, "jobs_succeeded_once": v.JobSucceededOne,
		"commits_once": v.CommitOne, "succeeded_events_once": v.EventOne, "inventory_matches": v.InventoryMatch,
	} {
		if n != chaosE2EDevices {
			t.Errorf("%s = %d, want %d", name, n, chaosE2EDevices)
		}
	}
}
