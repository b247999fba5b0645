package jobstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/amtprov/amtprov/services/provisioner/internal/jobstore"
)

// activeVersions lists the device's active credentials versions with their pins.
func activeVersions(t *testing.T, s *jobstore.Store) []string {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), `SELECT version, tls_cert_sha256 FROM device_credentials
		WHERE uuid = $1 AND active ORDER BY version`, dev)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v int
		var pin string
		if err := rows.Scan(&v, &pin); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("v%d/%s", v, pin))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCommitStepActivatesCredentials: the step result that records the
// commit makes the job's credentials the device's only active ones in its
// own transaction; a failed job keeps them active, and a later succeeded
// job's Finish (activating its version again) is idempotent and replaces
// them. A step result that is not OK activates nothing, and an unknown
// version fails the step record as a whole.
func TestCommitStepActivatesCredentials(t *testing.T) {
	s, pool := newStore(t)
	ctx := context.Background()
	seal := func(v int, col string) ([]byte, string, error) {
		return []byte(fmt.Sprintf("sealed-%d-%s", v, col)), "k1", nil
	}
	begin := func(job jobstore.Job, owner, step string) {
		t.Helper()
		if _, err := s.BeginStep(ctx, job.ID, owner, time.Minute, step, 13); err != nil {
			t.Fatal(err)
		}
	}
	stepOutcome := func(job jobstore.Job, step string) string {
		t.Helper()
		var o string
		if err := pool.QueryRow(ctx, `SELECT outcome FROM provisioning_steps WHERE job_id = $1 AND step = $2`, job.ID, step).Scan(&o); err != nil {
			t.Fatal(err)
		}
		return o
	}

	// Job 1 commits, then fails in verify.
	start := time.Now()
	job1, _, err := s.Acquire(ctx, hello(start), "w1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := s.SaveJobCredentials(ctx, job1.ID, "w1", dev, "admin", seal)
	if err != nil {
		t.Fatal(err)
	}
	begin(job1, "w1", "commit")
	if err := s.FinishStep(ctx, job1, "w1", "commit", jobstore.StepResult{Outcome: jobstore.OutcomeRetry, CredentialsVersion: v1, TLSCertSHA256: "aa"}); err != nil {
		t.Fatal(err)
	}
	if got := activeVersions(t, s); len(got) != 0 {
		t.Fatalf("a commit step that did not finish ok activated %v", got)
	}
	begin(job1, "w1", "commit")
	if err := s.FinishStep(ctx, job1, "w1", "commit", jobstore.StepResult{Outcome: jobstore.OutcomeOK, CredentialsVersion: v1 + 5, TLSCertSHA256: "aa"}); !errors.Is(err, jobstore.ErrNotFound) {
		t.Fatalf("unknown version: %v, want ErrNotFound", err)
	}
	if o := stepOutcome(job1, "commit"); o != jobstore.OutcomeRunning {
		t.Fatalf("commit step %s after a failed activation, want it unrecorded (running)", o)
	}
	if err := s.FinishStep(ctx, job1, "w1", "commit", jobstore.StepResult{Outcome: jobstore.OutcomeOK, CredentialsVersion: v1, TLSCertSHA256: "aa"}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(activeVersions(t, s)); got != "[v1/aa]" {
		t.Fatalf("after the commit step: active %s, want [v1/aa]", got)
	}
	if err := s.Finish(ctx, job1, "w1", jobstore.Outcome{Step: "verify", Code: "PROVISIONED_UNVERIFIED"}); err != nil {
		t.Fatal(err)
	}
	c, err := s.DeviceCredentials(ctx, dev)
	if err != nil || !c.Active || c.Version != v1 || c.TLSCertSHA256 != "aa" {
		t.Fatalf("after the failed job: %+v %v", c, err)
	}

	// Job 2 (the device was reset to setup mode) commits and succeeds.
	job2, dec, err := s.Acquire(ctx, hello(time.Now().Add(time.Second)), "w2", time.Minute)
	if err != nil || dec != jobstore.Started {
		t.Fatalf("second job: %v %v", dec, err)
	}
	v2, err := s.SaveJobCredentials(ctx, job2.ID, "w2", dev, "admin", seal)
	if err != nil || v2 != v1+1 {
		t.Fatalf("second version %d %v", v2, err)
	}
	if got := fmt.Sprint(activeVersions(t, s)); got != "[v1/aa]" {
		t.Fatalf("saving new credentials changed the active ones: %s", got)
	}
	begin(job2, "w2", "commit")
	if err := s.FinishStep(ctx, job2, "w2", "commit", jobstore.StepResult{Outcome: jobstore.OutcomeOK, CredentialsVersion: v2}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(activeVersions(t, s)); got != "[v2/]" {
		t.Fatalf("after the second commit: active %s, want [v2/]", got)
	}
	if err := s.Finish(ctx, job2, "w2", jobstore.Outcome{Succeeded: true, CredentialsVersion: v2, TLSCertSHA256: "bb"}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(activeVersions(t, s)); got != "[v2/bb]" {
		t.Fatalf("after success: active %s, want [v2/bb]", got)
	}
}
