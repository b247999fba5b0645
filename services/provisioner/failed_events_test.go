package provisioner_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/services/provisioner/errcode"
	"github.com/amtprov/amtprov/services/provisioner/internal/provtest"
	"github.com/amtprov/amtprov/tools/amtsim"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
)

// provisioningEvents reads every provisioning event on the bus once the
// outbox has nothing left to publish.
func (h *harness) provisioningEvents() []*events.Provisioning {
	t := h.t
	t.Helper()
	ctx := context.Background()
	eventually(t, "outbox published", 30*time.Second, func() (bool, string) {
		var left int
		err := h.pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE failed_at IS NULL`).Scan(&left)
		return err == nil && left == 0, fmt.Sprintf("%d rows left (%v)", left, err)
	})
	cons, err := h.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectProvisioning + ".>"}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*events.Provisioning
	for left := info.NumPending; left > 0; {
		batch, err := cons.Fetch(int(min(left, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			env, err := events.Parse(m.Subject(), m.Headers(), m.Data())
			if err != nil {
				t.Fatalf("%s: %v", m.Subject(), err)
			}
			p, err := env.Decode()
			if err != nil {
				t.Fatalf("%s: %v", m.Subject(), err)
			}
			out = append(out, p.(*events.Provisioning))
		}
		if batch.Error() != nil || got == 0 {
			t.Fatalf("read provisioning events: %d of %d left, %v", left, info.NumPending, batch.Error())
		}
		left -= uint64(got)
	}
	return out
}

// TestFailedEventMeansTheJobFailed: a provisioning.failed event is
// published only for a job that ended failed, at most once per job, and a
// transient failure (DEVICE_UNREACHABLE, DEVICE_BUSY, ...) ends a job only
// after the job itself was tried MaxDeliver times: a retry announces
// nothing but steps.
//
// Two replicas with few workers each: hellos wait in the replicas' pull
// buffers past AckWait and JetStream hands them to the other replica too,
// so a hello's delivery count runs ahead of its job's tries (as in the
// 4-replica cluster bench, where 38 devices got a failed event on the
// first transient failure and were then provisioned on their next hello).
// The devices drop connections, answer 503 or vanish for a moment, some
// right after CommitChanges; a device whose job fails gets a new attempt
// on its next hello (RetryFailedAfter < 0), as it would after the cooldown.
func TestFailedEventMeansTheJobFailed(t *testing.T) {
	n := 24
	if long() {
		n = 120
	}
	const maxDeliver = 4
	h := newHarness(t)
	for _, name := range []string{"pa", "pb"} {
		cfg := testConfig(name)
		cfg.Workers, cfg.AckWait, cfg.MaxDeliver, cfg.RetryFailedAfter = 2, 500*time.Millisecond, maxDeliver, -1
		cfg.Workflow.StepRetry, cfg.Workflow.VerifyWait = 300*time.Millisecond, 500*time.Millisecond
		h.startReplicaWith(name, cfg, provtest.Domains{h.domain}, h.signer)
	}
	f := h.startFleet(n, 50, func(o *amtsim.Options) {
		o.Latency = 60 * time.Millisecond
		o.TimeScale = 20 // a hello every 3 s: redeliveries drive most retries, as at real speed
		o.Faults = []amtsim.FaultSpec{
			{Kind: firmware.FaultSlow, Share: 0.4, For: 4 * time.Second},
			{Kind: firmware.FaultReset, Share: 0.15, For: 6 * time.Second},
			{Kind: firmware.FaultTransient5xx, Share: 0.4, For: 10 * time.Second},
		}
	})
	// Once a device has committed, its faults end (a job that gives up
	// after its commit is another story: the device would be provisioned
	// and its job failed), and a third of the devices vanish for a moment:
	// their verification is retried on a later delivery.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		hit := map[string]bool{}
		devs := f.Devices()
		for watchCtx.Err() == nil {
			for i, d := range devs {
				u := d.Config().UUID
				if hit[u] || d.State() != amt.PostProvisioning {
					continue
				}
				hit[u] = true
				for _, k := range []firmware.FaultKind{firmware.FaultSlow, firmware.FaultReset, firmware.FaultTransient5xx} {
					if d.HasFault(k) {
						_ = f.InjectFault(u, k, time.Nanosecond) // ends now
					}
				}
				if i%3 == 0 {
					_ = f.InjectFault(u, firmware.FaultUnreachable, 700*time.Millisecond)
				}
			}
			select {
			case <-watchCtx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { stopWatch(); <-watchDone })
	eventually(t, "every device's job finished", 3*time.Minute, func() (bool, string) { return h.jobsSettled(n) })
	// A device whose job failed starts a new attempt on its next hello.
	lastFailed := func() (bool, string) {
		rows, err := h.pool.Query(context.Background(), `SELECT l.uuid::text, l.id, l.error_code, l.detail FROM (SELECT DISTINCT ON (uuid) uuid, id, state, error_code, detail
			FROM provisioning_jobs ORDER BY uuid, attempt DESC) l WHERE state IN ('failed', 'queued', 'running')`)
		if err != nil {
			return false, err.Error()
		}
		defer rows.Close()
		var bad []string
		for rows.Next() {
			var u, code, detail string
			var id int64
			if err := rows.Scan(&u, &id, &code, &detail); err != nil {
				return false, err.Error()
			}
			bad = append(bad, fmt.Sprintf("%s job %d %s (%s)", u, id, code, detail))
		}
		return len(bad) == 0, fmt.Sprintf("devices whose last job is not succeeded: %v", bad)
	}
	deadline := time.Now().Add(time.Minute)
	for ok, status := lastFailed(); !ok; ok, status = lastFailed() {
		if time.Now().After(deadline) {
			t.Error(status)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopWatch()
	<-watchDone

	ctx := context.Background()
	type jobRow struct {
		uuid, state, code string
		tries             int
	}
	jobs := map[string]jobRow{} // job id → row; tries = runs of the job (its connect step)
	rows, err := h.pool.Query(ctx, `SELECT j.id::text, j.uuid::text, j.state, j.error_code, coalesce(s.attempt_no, 0)
		FROM provisioning_jobs j LEFT JOIN provisioning_steps s ON s.job_id = j.id AND s.step = 'connect'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var j jobRow
		if err := rows.Scan(&id, &j.uuid, &j.state, &j.code, &j.tries); err != nil {
			t.Fatal(err)
		}
		jobs[id] = j
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	failedEvents := map[string]int{} // job id → failed events
	evs := h.provisioningEvents()
	for _, e := range evs {
		if e.Event != events.ProvisioningFailed {
			continue
		}
		failedEvents[e.JobID]++
		j := jobs[e.JobID]
		switch {
		case j.state != "failed":
			t.Errorf("failed event for job %s of %s (step %s, %s) but the job is %q", e.JobID, e.UUID, e.Step, e.ErrorCode, j.state)
		case errcode.Lookup(errcode.Code(e.ErrorCode)).Retryable && j.tries < maxDeliver:
			t.Errorf("job %s of %s failed with the transient %s at step %s after %d tries, want %d tries first",
				e.JobID, e.UUID, e.ErrorCode, e.Step, j.tries, maxDeliver)
		}
	}
	var failedJobs, failedTotal int
	for id, j := range jobs {
		if j.state == "failed" {
			failedJobs++
			if failedEvents[id] != 1 {
				t.Errorf("job %s of %s failed (%s) with %d failed events, want 1", id, j.uuid, j.code, failedEvents[id])
			}
		}
		failedTotal += failedEvents[id]
	}
	var retook int
	if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM provisioning_steps WHERE attempt_no > 1 AND step <> 'connect'`).Scan(&retook); err != nil {
		t.Fatal(err)
	}
	if retook == 0 {
		t.Error("no step was repeated: the faults did not take effect")
	}
	t.Logf("%d devices, %d jobs, %d provisioning events, %d failed events, %d failed jobs, %d steps repeated",
		n, len(jobs), len(evs), failedTotal, failedJobs, retook)
	if failedTotal != failedJobs {
		t.Errorf("%d failed events for %d failed jobs", failedTotal, failedJobs)
	}
	h.checkProvisioned(f.Devices(), h.outcomes(), 0)
}
