// Package jobstore is the provisioner's PostgreSQL repository: provisioning
// jobs with their leases, the steps of each job, the devices' encrypted
// credentials and the profiles (migration 00003_provisioner.sql).
//
// Leases. A job is worked on by the worker that holds its lease
// (lease_owner, lease_expires in the database's clock). Acquire decides, in
// one transaction with the job row locked, whether a hello starts a new
// attempt, takes over a queued or expired job, is a duplicate of running
// work, or is stale; the partial unique index "one open job per device"
// makes two concurrent first hellos produce one job. Every later write
// (BeginStep, FinishStep, Requeue, Finish) names the owner and fails with
// ErrLeaseLost when the lease has passed to someone else, so a worker that
// stalled past its lease cannot write over its successor.
//
// Events that report a job change go through the outbox in the same
// transaction (Store.Outbox), so none is lost or invented by a crash.
package jobstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/outbox"
)

// Job states (provisioning_jobs.state).
const (
	StateQueued    = "queued"
	StateRunning   = "running"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
)

// Step outcomes (provisioning_steps.outcome).
const (
	OutcomeRunning = "running"
	OutcomeOK      = "ok"
	OutcomeSkipped = "skipped"
	OutcomeRetry   = "retry"
	OutcomeFailed  = "failed"
)

// ErrLeaseLost: the job's lease is no longer this worker's.
var ErrLeaseLost = errors.New("job lease lost")

// ErrNotFound: no such job, profile or credentials.
var ErrNotFound = errors.New("not found")

// Job is one provisioning_jobs row.
type Job struct {
	ID           int64      `json:"id"`
	UUID         string     `json:"uuid"`
	Attempt      int        `json:"attempt"`
	State        string     `json:"state"`
	LeaseOwner   string     `json:"lease_owner,omitempty"`
	LeaseExpires *time.Time `json:"lease_expires,omitempty"`
	Profile      string     `json:"profile"`
	Domain       string     `json:"domain"`
	SourceIP     string     `json:"source_ip"`
	// HelloEventID is the hello that drives the job: the one that started
	// it, or the one that last resumed it.
	HelloEventID string     `json:"hello_event_id"`
	ErrorCode    string     `json:"error_code,omitempty"`
	Hint         string     `json:"hint,omitempty"`
	Detail       string     `json:"detail,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	FinishedAt   *time.Time `json:"finished_at,omitempty"`
}

// IDString is the job id as events carry it.
func (j Job) IDString() string { return strconv.FormatInt(j.ID, 10) }

// Step is one provisioning_steps row.
type Step struct {
	JobID       int64           `json:"job_id"`
	Step        string          `json:"step"`
	Seq         int             `json:"seq"`
	Started     time.Time       `json:"started"`
	Finished    *time.Time      `json:"finished,omitempty"`
	Outcome     string          `json:"outcome"`
	ReturnValue *int            `json:"return_value,omitempty"`
	ErrorCode   string          `json:"error_code,omitempty"`
	AttemptNo   int             `json:"attempt_no"`
	State       json.RawMessage `json:"-"`
}

// Done reports whether the step finished in a way the workflow moves past.
func (s Step) Done() bool { return s.Outcome == OutcomeOK || s.Outcome == OutcomeSkipped }

// Store is the repository. Safe for concurrent use. The events it writes
// go to libs/outbox's table in the transaction (or statement) of the change
// they report.
type Store struct {
	pool   *pgxpool.Pool
	source string // ce-source of the events it writes
	// FailedCooldown: a hello within this long after the device's last
	// job failed is Stale instead of starting a new attempt, so a device
	// with a problem only an operator can fix does not get an attempt per
	// hello. Set it before use; zero means a new attempt on every newer hello.
	FailedCooldown time.Duration
	// StepFinished, when set, is called after FinishStep committed, with
	// the step's outcome and how long it ran by the database clock (from
	// its BeginStep to its FinishStep). Set it before use; the provisioner
	// records its step latency metric with it.
	StepFinished func(ctx context.Context, step, outcome string, took time.Duration)
}

// New returns a Store on pool whose events carry ce-source source.
func New(pool *pgxpool.Pool, source string) *Store {
	return &Store{pool: pool, source: source}
}

// Pool is the store's pool (for the outbox relay and health checks).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

const jobColumns = `id, uuid::text, attempt, state, lease_owner, lease_expires, profile, domain,
	coalesce(host(source_ip), ''), hello_event_id, error_code, hint, detail, created_at, updated_at, finished_at`

func scanJob(row pgx.Row) (Job, error) {
	var j Job
	err := row.Scan(&j.ID, &j.UUID, &j.Attempt, &j.State, &j.LeaseOwner, &j.LeaseExpires, &j.Profile, &j.Domain,
		&j.SourceIP, &j.HelloEventID, &j.ErrorCode, &j.Hint, &j.Detail, &j.CreatedAt, &j.UpdatedAt, &j.FinishedAt)
	return j, err
}

// Decision is what Acquire decided for a hello.
type Decision int

const (
	// Started: a new attempt was created and leased to the caller.
	Started Decision = iota + 1
	// Resumed: a queued job, or a running one whose lease expired, is now
	// the caller's; it resumes at its first unfinished step.
	Resumed
	// Duplicate: another worker holds the device's running job.
	Duplicate
	// Stale: the hello is not newer than the device's last finished job
	// (a redelivery, or a hello sent just before the commit).
	Stale
)

func (d Decision) String() string {
	switch d {
	case Started:
		return "started"
	case Resumed:
		return "resumed"
	case Duplicate:
		return "duplicate"
	case Stale:
		return "stale"
	}
	return "unknown"
}

// Hello is what Acquire needs from a hello.
type Hello struct {
	UUID       string
	SourceIP   string
	EventID    string
	ReceivedAt time.Time
}

// Acquire decides what hello h means for the device's jobs and, for Started
// and Resumed, leases the job to owner for lease. A Started job gets its
// "started" event in the same transaction.
func (s *Store) Acquire(ctx context.Context, h Hello, owner string, lease time.Duration) (Job, Decision, error) {
	var (
		job Job
		dec Decision
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		last, err := scanJob(tx.QueryRow(ctx, `SELECT `+jobColumns+` FROM provisioning_jobs
			WHERE uuid = $1 ORDER BY attempt DESC LIMIT 1 FOR UPDATE`, h.UUID))
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			last = Job{}
		case err != nil:
			return fmt.Errorf("read last job of %s: %w", h.UUID, err)
		}
		if last.ID != 0 {
			switch last.State {
			case StateQueued, StateRunning:
				var free bool
				if err := tx.QueryRow(ctx, `SELECT state = 'queued' OR lease_expires IS NULL OR lease_expires <= now()
					FROM provisioning_jobs WHERE id = $1`, last.ID).Scan(&free); err != nil {
					return fmt.Errorf("check lease of job %d: %w", last.ID, err)
				}
				if !free {
					job, dec = last, Duplicate
					return nil
				}
				// The resuming hello drives the job now: only its own
				// redelivery may wait for this lease (a dead worker's job is
				// taken over); the hello that drove it before is a duplicate.
				job, err = scanJob(tx.QueryRow(ctx, `UPDATE provisioning_jobs
					SET state = 'running', lease_owner = $2, lease_expires = now() + $3::interval, updated_at = now(),
						hello_event_id = $4
					WHERE id = $1 RETURNING `+jobColumns, last.ID, owner, lease, h.EventID))
				if err != nil {
					return fmt.Errorf("take over job %d: %w", last.ID, err)
				}
				dec = Resumed
				return nil
			default: // finished
				if last.FinishedAt != nil && !h.ReceivedAt.After(*last.FinishedAt) {
					job, dec = last, Stale
					return nil
				}
				if last.State == StateFailed && s.FailedCooldown > 0 {
					var cooling bool
					if err := tx.QueryRow(ctx, `SELECT $1::timestamptz > now() - $2::interval`, last.FinishedAt, s.FailedCooldown).Scan(&cooling); err != nil {
						return fmt.Errorf("check cooldown of %s: %w", h.UUID, err)
					}
					if cooling {
						job, dec = last, Stale
						return nil
					}
				}
			}
		}
		var ip any
		if h.SourceIP != "" {
			ip = h.SourceIP
		}
		job, err = scanJob(tx.QueryRow(ctx, `INSERT INTO provisioning_jobs
			(uuid, attempt, state, lease_owner, lease_expires, source_ip, hello_event_id)
			VALUES ($1, $2, 'running', $3, now() + $4::interval, $5, $6)
			ON CONFLICT DO NOTHING RETURNING `+jobColumns, h.UUID, last.Attempt+1, owner, lease, ip, h.EventID))
		if errors.Is(err, pgx.ErrNoRows) {
			// Another worker created the device's job between our read and
			// our insert: its transaction committed first.
			job, dec = last, Duplicate
			return nil
		}
		if err != nil {
			return fmt.Errorf("create job for %s: %w", h.UUID, err)
		}
		dec = Started
		return s.emit(ctx, tx, job, events.ProvisioningStarted, "", 0, job.CreatedAt, nil)
	})
	if err != nil {
		return Job{}, 0, err
	}
	return job, dec, nil
}

// SetRouting records the profile and domain chosen for a job.
func (s *Store) SetRouting(ctx context.Context, jobID int64, owner, profile, domain string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE provisioning_jobs SET profile = $3, domain = $4, updated_at = now()
		WHERE id = $1 AND lease_owner = $2 AND state = 'running'`, jobID, owner, profile, domain)
	if err != nil {
		return fmt.Errorf("record profile and domain of job %d: %w", jobID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("record profile and domain of job %d: %w", jobID, ErrLeaseLost)
	}
	return nil
}

// renew extends owner's lease on jobID inside tx, or fails with ErrLeaseLost.
func renew(ctx context.Context, tx pgx.Tx, jobID int64, owner string, lease time.Duration) error {
	tag, err := tx.Exec(ctx, `UPDATE provisioning_jobs SET lease_expires = now() + $3::interval, updated_at = now()
		WHERE id = $1 AND lease_owner = $2 AND state = 'running'`, jobID, owner, lease)
	if err != nil {
		return fmt.Errorf("renew lease of job %d: %w", jobID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("job %d: %w", jobID, ErrLeaseLost)
	}
	return nil
}

// owns checks inside tx that owner still holds jobID's lease, locking the
// job row against a concurrent takeover until tx ends.
func owns(ctx context.Context, tx pgx.Tx, jobID int64, owner string) error {
	var ok bool
	err := tx.QueryRow(ctx, `SELECT true FROM provisioning_jobs WHERE id = $1 AND lease_owner = $2 AND state = 'running' FOR SHARE`,
		jobID, owner).Scan(&ok)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("job %d: %w", jobID, ErrLeaseLost)
	}
	if err != nil {
		return fmt.Errorf("check lease of job %d: %w", jobID, err)
	}
	return nil
}

// Renew extends owner's lease on jobID.
func (s *Store) Renew(ctx context.Context, jobID int64, owner string, lease time.Duration) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return renew(ctx, tx, jobID, owner, lease) })
}

// Steps returns the job's steps in workflow order.
func (s *Store) Steps(ctx context.Context, jobID int64) ([]Step, error) {
	rows, err := s.pool.Query(ctx, `SELECT job_id, step, seq, started, finished, outcome, return_value, error_code, attempt_no, state
		FROM provisioning_steps WHERE job_id = $1 ORDER BY seq`, jobID)
	if err != nil {
		return nil, fmt.Errorf("read steps of job %d: %w", jobID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Step, error) {
		var st Step
		err := r.Scan(&st.JobID, &st.Step, &st.Seq, &st.Started, &st.Finished, &st.Outcome, &st.ReturnValue, &st.ErrorCode, &st.AttemptNo, &st.State)
		return st, err
	})
	if err != nil {
		return nil, fmt.Errorf("read steps of job %d: %w", jobID, err)
	}
	return out, nil
}

// BeginStep renews the lease and records that step (at position seq) is
// starting, in one statement; it returns how many times the step has now
// been started (1 the first time), or ErrLeaseLost.
func (s *Store) BeginStep(ctx context.Context, jobID int64, owner string, lease time.Duration, step string, seq int) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `WITH l AS (
			UPDATE provisioning_jobs SET lease_expires = now() + $3::interval, updated_at = now()
			WHERE id = $1 AND lease_owner = $2 AND state = 'running' RETURNING id)
		INSERT INTO provisioning_steps (job_id, step, seq, started) SELECT id, $4, $5, now() FROM l
		ON CONFLICT (job_id, step) DO UPDATE SET started = now(), finished = NULL, outcome = 'running',
			return_value = NULL, error_code = '', attempt_no = provisioning_steps.attempt_no + 1
		RETURNING attempt_no`, jobID, owner, lease, step, seq).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("begin step %s of job %d: %w", step, jobID, ErrLeaseLost)
	}
	if err != nil {
		return 0, fmt.Errorf("begin step %s of job %d: %w", step, jobID, err)
	}
	return n, nil
}

// StepResult is how a step ended.
type StepResult struct {
	Outcome     string
	ReturnValue *int
	ErrorCode   string
	State       json.RawMessage // kept for later steps; nil keeps what was there
	// CredentialsVersion, when > 0 with Outcome OK, becomes the device's
	// active credentials in the same transaction, with TLSCertSHA256 (when
	// set) as their certificate pin. The commit step sets it: from the
	// moment the device confirmed CommitChanges it holds these credentials,
	// whatever happens to the job afterwards.
	CredentialsVersion int
	TLSCertSHA256      string
	// Attempt is the attempt number BeginStep returned for this run of the
	// step; 0 means unknown (FinishStep reads the latest, one more round
	// trip). The step's end is recorded only for that attempt.
	Attempt int
}

// FinishStep records the end of a step and, with its "step" event, reports
// it through the outbox, in one statement: the lease check, the step's end
// (only for the attempt the caller began) and the event, written only if
// the step row was updated. A commit step's credentials activate in the
// same transaction.
func (s *Store) FinishStep(ctx context.Context, job Job, owner, step string, r StepResult) error {
	n := r.Attempt
	if n == 0 {
		// The caller did not keep BeginStep's answer: the step's latest
		// attempt, which the event names.
		err := s.pool.QueryRow(ctx, `SELECT attempt_no FROM provisioning_steps WHERE job_id = $1 AND step = $2`, job.ID, step).Scan(&n)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("finish step %s of job %d: never begun: %w", step, job.ID, ErrLeaseLost)
		}
		if err != nil {
			return fmt.Errorf("finish step %s of job %d: %w", step, job.ID, err)
		}
	}
	// The event is built before the statement, so its time is this
	// process's clock; the step row keeps the database's.
	env, err := s.event(job, events.ProvisioningStep, step, n, time.Now(), func(p *events.Provisioning) {
		p.Outcome, p.ReturnValue, p.ErrorCode = r.Outcome, r.ReturnValue, r.ErrorCode
	})
	if err != nil {
		return err
	}
	evArgs, err := outbox.InsertArgs(env, ctx)
	if err != nil {
		return fmt.Errorf("finish step %s of job %d: %w", step, job.ID, err)
	}
	args := append([]any{job.ID, owner, step, r.Outcome, r.ReturnValue, clean(r.ErrorCode, 64), nullJSON(r.State), n}, evArgs...)
	var started, finished time.Time
	var notified int64
	record := func(q interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}) error {
		err := q.QueryRow(ctx, finishStepSQL, args...).Scan(&started, &finished, &notified)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("finish step %s of job %d: %w", step, job.ID, ErrLeaseLost)
		}
		if err != nil {
			return fmt.Errorf("finish step %s of job %d: %w", step, job.ID, err)
		}
		return nil
	}
	if r.Outcome == OutcomeOK && r.CredentialsVersion > 0 {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if err := record(tx); err != nil {
				return err
			}
			if err := activate(ctx, tx, job.UUID, r.CredentialsVersion, r.TLSCertSHA256); err != nil {
				return fmt.Errorf("finish step %s of job %d: %w", step, job.ID, err)
			}
			return nil
		})
	} else {
		err = record(s.pool)
	}
	if err == nil && s.StepFinished != nil {
		s.StepFinished(ctx, step, r.Outcome, max(finished.Sub(started), 0))
	}
	return err
}

// finishStepSQL is FinishStep's statement; $8 is the attempt, $9-$12 the
// event's outbox columns.
var finishStepSQL = `WITH l AS (
		SELECT id FROM provisioning_jobs WHERE id = $1 AND lease_owner = $2 AND state = 'running' FOR SHARE),
	u AS (
		UPDATE provisioning_steps SET finished = clock_timestamp(), outcome = $4, return_value = $5, error_code = $6,
			state = coalesce($7::jsonb, state)
		WHERE job_id = (SELECT id FROM l) AND step = $3 AND attempt_no = $8 RETURNING started, finished),
	` + outbox.InsertCTE("ev", "u", 9) + `
	SELECT started, finished, (SELECT count(*) FROM ev_notify) FROM u`

func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// clean makes s safe to store: valid UTF-8 (PostgreSQL text refuses
// anything else), no NUL, at most n bytes, cut on a character boundary.
func clean(s string, n int) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "?")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// Requeue hands a job back after a transient failure: it becomes queued
// with no lease, so the redelivered hello (or any later one) resumes it.
func (s *Store) Requeue(ctx context.Context, jobID int64, owner, code, detail string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE provisioning_jobs SET state = 'queued', lease_owner = '', lease_expires = NULL,
		error_code = $3, detail = $4, updated_at = now() WHERE id = $1 AND lease_owner = $2 AND state = 'running'`, jobID, owner, clean(code, 64), clean(detail, 1000))
	if err != nil {
		return fmt.Errorf("requeue job %d: %w", jobID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("requeue job %d: %w", jobID, ErrLeaseLost)
	}
	return nil
}

// Outcome is how a job ends.
type Outcome struct {
	Succeeded bool
	Step      string // the failed step
	Code      string
	Hint      string
	Detail    string
	RV        *int
	// Device is what the device reported after commit (succeeded only).
	Device *events.ProvisionedDevice
	// CredentialsVersion becomes the device's active credentials (succeeded
	// only; the commit step made them active already, see
	// StepResult.CredentialsVersion: this keeps them so and records
	// TLSCertSHA256).
	CredentialsVersion int
	TLSCertSHA256      string
}

// Finish ends owner's job with its succeeded or failed event, and on
// success makes the job's credentials the device's active ones, all in one
// transaction.
func (s *Store) Finish(ctx context.Context, job Job, owner string, o Outcome) error {
	state := StateFailed
	if o.Succeeded {
		state = StateSucceeded
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		row := tx.QueryRow(ctx, `UPDATE provisioning_jobs SET state = $3, lease_owner = '', lease_expires = NULL,
			error_code = $4, hint = $5, detail = $6, updated_at = now(), finished_at = now()
			WHERE id = $1 AND lease_owner = $2 AND state = 'running' RETURNING `+jobColumns, job.ID, owner, state, clean(o.Code, 64), clean(o.Hint, 1000), clean(o.Detail, 1000))
		fin, err := scanJob(row)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("finish job %d: %w", job.ID, ErrLeaseLost)
		}
		if err != nil {
			return fmt.Errorf("finish job %d: %w", job.ID, err)
		}
		if o.Succeeded && o.CredentialsVersion > 0 {
			if err := activate(ctx, tx, job.UUID, o.CredentialsVersion, o.TLSCertSHA256); err != nil {
				return fmt.Errorf("finish job %d: %w", job.ID, err)
			}
		}
		ev := events.ProvisioningFailed
		if o.Succeeded {
			ev = events.ProvisioningSucceeded
		}
		return s.emit(ctx, tx, fin, ev, o.Step, 0, fin.UpdatedAt, func(p *events.Provisioning) {
			p.ErrorCode, p.Hint, p.ReturnValue = o.Code, o.Hint, o.RV
			if o.Succeeded {
				p.Outcome = OutcomeOK
				p.Device = o.Device
			} else {
				p.Outcome = OutcomeFailed
			}
		})
	})
}

// activate makes version the device's only active credentials in tx, and
// records certSHA256 as their certificate pin when it is set. Activating
// the active version again changes nothing else.
func activate(ctx context.Context, tx pgx.Tx, uuid string, version int, certSHA256 string) error {
	if _, err := tx.Exec(ctx, `UPDATE device_credentials SET active = false WHERE uuid = $1 AND active AND version <> $2`, uuid, version); err != nil {
		return fmt.Errorf("deactivate old credentials of %s: %w", uuid, err)
	}
	tag, err := tx.Exec(ctx, `UPDATE device_credentials SET active = true,
			tls_cert_sha256 = CASE WHEN $3 = '' THEN tls_cert_sha256 ELSE $3 END
		WHERE uuid = $1 AND version = $2`, uuid, version, certSHA256)
	if err != nil {
		return fmt.Errorf("activate credentials v%d of %s: %w", version, uuid, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("activate credentials v%d of %s: %w", version, uuid, ErrNotFound)
	}
	return nil
}

// emit writes one provisioning event about job through the outbox in tx.
// Its id is derived from the job, event, step and the step's attempt
// number n, so a retried transaction cannot produce two different events
// for one fact; at is the database's clock.
func (s *Store) emit(ctx context.Context, tx pgx.Tx, job Job, ev events.ProvisioningEvent, step string, n int, at time.Time, fill func(*events.Provisioning)) error {
	env, err := s.event(job, ev, step, n, at, fill)
	if err != nil {
		return err
	}
	if err := outbox.Add(ctx, tx, env, ctx); err != nil {
		return fmt.Errorf("emit %s of job %d: %w", ev, job.ID, err)
	}
	return nil
}

// event builds one provisioning event about job (step and attempt n are
// optional), with an id derived from them so a retried write is the same
// event.
func (s *Store) event(job Job, ev events.ProvisioningEvent, step string, n int, at time.Time, fill func(*events.Provisioning)) (events.Envelope, error) {
	p := &events.Provisioning{Event: ev, UUID: job.UUID, JobID: job.IDString(), Attempt: job.Attempt,
		Profile: job.Profile, Step: step, At: at.UTC()}
	if fill != nil {
		fill(p)
	}
	id := fmt.Sprintf("prov-%d-%s", job.ID, ev)
	if step != "" {
		id += "-" + step
	}
	if n > 0 {
		id += "-" + strconv.Itoa(n)
	}
	env, err := events.New(s.source, p, id)
	if err != nil {
		return events.Envelope{}, fmt.Errorf("emit %s of job %d: %w", ev, job.ID, err)
	}
	return env, nil
}

// ResetSteps marks the finished steps from step first to step last (by
// their workflow position) as needing a re-run: the device lost what they
// did (a reboot before commit). Their rows stay, with outcome "retry", for
// the record.
func (s *Store) ResetSteps(ctx context.Context, jobID int64, owner, first, last string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := owns(ctx, tx, jobID, owner); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE provisioning_steps SET outcome = 'retry', error_code = 'DEVICE_REBOOTED'
			WHERE job_id = $1 AND seq BETWEEN
				(SELECT seq FROM provisioning_steps WHERE job_id = $1 AND step = $2) AND
				coalesce((SELECT seq FROM provisioning_steps WHERE job_id = $1 AND step = $3), 1 << 30)
			AND step <> $3`, jobID, first, last)
		if err != nil {
			return fmt.Errorf("reset steps of job %d: %w", jobID, err)
		}
		return nil
	})
}

// JobFilter selects jobs for ListJobs.
type JobFilter struct {
	State string // "" any
	UUID  string // "" any
	Limit int    // default 100, at most 1000
}

// ListJobs returns jobs, newest first.
func (s *Store) ListJobs(ctx context.Context, f JobFilter) ([]Job, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = min(max(f.Limit, 100), 1000)
	}
	var uuid any
	if f.UUID != "" {
		uuid = f.UUID
	}
	rows, err := s.pool.Query(ctx, `SELECT `+jobColumns+` FROM provisioning_jobs
		WHERE ($1 = '' OR state = $1) AND ($2::uuid IS NULL OR uuid = $2::uuid)
		ORDER BY updated_at DESC, id DESC LIMIT $3`, f.State, uuid, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Job, error) { return scanJob(r) })
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return out, nil
}

// Counts is how many jobs are in each state.
func (s *Store) Counts(ctx context.Context) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT state, count(*) FROM provisioning_jobs GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("count jobs: %w", err)
		}
		out[st] = n
	}
	return out, rows.Err()
}
