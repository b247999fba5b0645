package jobstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/outbox"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/services/provisioner/internal/jobstore"
)

// outboxRow is what the relay would publish of one outbox row.
type outboxRow struct {
	topic, msgID string
	event        events.Provisioning
}

func outboxRows(t *testing.T, pool *pgxpool.Pool) []outboxRow {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT topic, msg_id, headers, data FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		var h map[string][]string
		var data []byte
		if err := rows.Scan(&r.topic, &r.msgID, &h, &data); err != nil {
			t.Fatal(err)
		}
		env, err := events.Parse(r.topic, h, data)
		if err != nil {
			t.Fatalf("outbox row %s: %v", r.msgID, err)
		}
		p, err := env.Decode()
		if err != nil {
			t.Fatal(err)
		}
		r.event = *p.(*events.Provisioning)
		out = append(out, r)
	}
	return out
}

// TestFinishStepWithAndWithoutItsAttempt: FinishStep given BeginStep's
// attempt and FinishStep left to read it leave the same step row and the
// same event in libs/outbox's table, wake the relay, and refuse (writing
// nothing) a non-owner and an attempt that is not the step's latest.
func TestFinishStepWithAndWithoutItsAttempt(t *testing.T) {
	ctx := context.Background()
	results := map[bool][]outboxRow{}
	for _, known := range []bool{false, true} {
		pool := storetest.New(t)
		s := jobstore.New(pool, "/provisioner/test")
		var took []time.Duration
		s.StepFinished = func(_ context.Context, _, _ string, d time.Duration) { took = append(took, d) }
		job, _, err := s.Acquire(ctx, hello(time.Now()), "w1", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		n, err := s.BeginStep(ctx, job.ID, "w1", time.Minute, "connect", 0)
		if err != nil {
			t.Fatal(err)
		}
		rv := 2066
		res := jobstore.StepResult{Outcome: jobstore.OutcomeRetry, ReturnValue: &rv, ErrorCode: "AMT_NOT_PERMITTED",
			State: []byte(`{"x":1}`)}
		if known {
			res.Attempt = n
		}
		if err := s.FinishStep(ctx, job, "w2", "connect", res); !errors.Is(err, jobstore.ErrLeaseLost) {
			t.Fatalf("attempt known=%v: FinishStep by a non-owner: %v, want ErrLeaseLost", known, err)
		}
		if known {
			stale := res
			stale.Attempt = n + 1
			if err := s.FinishStep(ctx, job, "w1", "connect", stale); !errors.Is(err, jobstore.ErrLeaseLost) {
				t.Fatalf("FinishStep of an attempt not begun: %v, want ErrLeaseLost", err)
			}
		}
		// The relay is woken by NOTIFY, as after outbox.Add.
		lc, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lc.Exec(ctx, "LISTEN "+outbox.NotifyChannel); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishStep(ctx, job, "w1", "connect", res); err != nil {
			t.Fatalf("attempt known=%v: %v", known, err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if _, err := lc.Conn().WaitForNotification(wctx); err != nil {
			t.Fatalf("attempt known=%v: no outbox notification after FinishStep: %v", known, err)
		}
		cancel()
		lc.Release()
		steps, err := s.Steps(ctx, job.ID)
		if err != nil {
			t.Fatal(err)
		}
		st := steps[0]
		if len(steps) != 1 || st.Outcome != jobstore.OutcomeRetry || st.ReturnValue == nil || *st.ReturnValue != rv ||
			st.ErrorCode != "AMT_NOT_PERMITTED" || st.Finished == nil || string(st.State) != `{"x": 1}` || st.AttemptNo != 1 {
			t.Fatalf("attempt known=%v: step row %+v", known, st)
		}
		if len(took) != 1 || took[0] < 0 || took[0] > time.Minute {
			t.Fatalf("attempt known=%v: StepFinished saw %v", known, took)
		}
		results[known] = outboxRows(t, pool)
	}
	a, b := results[false], results[true]
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("attempt read: %d outbox rows, attempt given: %d", len(a), len(b))
	}
	for i := range a {
		ea, eb := a[i].event, b[i].event
		if ea.At.IsZero() || eb.At.IsZero() || eb.At.Sub(ea.At) > time.Minute {
			t.Errorf("row %d: event times %v and %v", i, ea.At, eb.At)
		}
		ea.At, eb.At = time.Time{}, time.Time{}
		if (ea.ReturnValue == nil) != (eb.ReturnValue == nil) || ea.ReturnValue != nil && *ea.ReturnValue != *eb.ReturnValue {
			t.Errorf("row %d: return values differ", i)
		}
		ea.ReturnValue, eb.ReturnValue = nil, nil
		// Two fresh databases: the same job id, so the same event ids.
		if a[i].topic != b[i].topic || a[i].msgID != b[i].msgID || fmt.Sprintf("%+v", ea) != fmt.Sprintf("%+v", eb) {
			t.Errorf("row %d:\nattempt read  %s %s %+v\nattempt given %s %s %+v", i, a[i].topic, a[i].msgID, ea, b[i].topic, b[i].msgID, eb)
		}
	}
	if last := b[len(b)-1]; last.event.Event != events.ProvisioningStep || last.event.Step != "connect" || last.event.ErrorCode != "AMT_NOT_PERMITTED" {
		t.Errorf("step event %+v", last.event)
	}
}
