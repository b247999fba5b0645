package jobstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/amtprov/amtprov/services/provisioner/internal/jobstore"
)

// StepFinished hears of each step FinishStep committed, with its outcome
// and how long it ran, and of nothing that did not commit.
func TestStepFinishedReportsCommittedSteps(t *testing.T) {
	s, pool := newStore(t)
	type call struct {
		step, outcome string
		took          time.Duration
	}
	var calls []call
	s.StepFinished = func(_ context.Context, step, outcome string, took time.Duration) {
		calls = append(calls, call{step, outcome, took})
	}
	ctx := context.Background()
	job, _, err := s.Acquire(ctx, hello(time.Now()), "w1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginStep(ctx, job.ID, "w1", time.Minute, "connect", 0); err != nil {
		t.Fatal(err)
	}
	// The step "runs" for at least 30 ms of the database's clock.
	if _, err := pool.Exec(ctx, `SELECT pg_sleep(0.03)`); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishStep(ctx, job, "w1", "connect", jobstore.StepResult{Outcome: jobstore.OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginStep(ctx, job.ID, "w1", time.Minute, "read_settings", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishStep(ctx, job, "w1", "read_settings", jobstore.StepResult{Outcome: jobstore.OutcomeRetry, ErrorCode: "DEVICE_UNREACHABLE"}); err != nil {
		t.Fatal(err)
	}
	// Another worker's FinishStep is refused and not reported.
	if err := s.FinishStep(ctx, job, "w2", "read_settings", jobstore.StepResult{Outcome: jobstore.OutcomeOK}); !errors.Is(err, jobstore.ErrLeaseLost) {
		t.Fatalf("FinishStep by a non-owner: %v, want ErrLeaseLost", err)
	}
	if len(calls) != 2 {
		t.Fatalf("StepFinished called %d times (%+v), want 2", len(calls), calls)
	}
	if c := calls[0]; c.step != "connect" || c.outcome != jobstore.OutcomeOK || c.took < 30*time.Millisecond || c.took > time.Minute {
		t.Errorf("first call %+v, want connect ok after >= 30ms", c)
	}
	if c := calls[1]; c.step != "read_settings" || c.outcome != jobstore.OutcomeRetry || c.took < 0 || c.took >= time.Minute {
		t.Errorf("second call %+v, want read_settings retry", c)
	}
}
