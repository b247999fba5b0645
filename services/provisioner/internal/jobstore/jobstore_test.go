package jobstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/services/provisioner/internal/jobstore"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// newStore returns a store on a fresh database; its events land in the
// outbox table (no relay runs), so tests see exactly the events that
// committed.
func newStore(t *testing.T) (*jobstore.Store, *pgxpool.Pool) {
	t.Helper()
	pool := storetest.New(t)
	return jobstore.New(pool, "/provisioner/test"), pool
}

// outboxTypes lists the ce-types of the outbox's events in insertion order.
func outboxTypes(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT headers->'ce-type'->>0 FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const dev = "939b524b-13d4-1d18-e487-1c697a6b7a2b"

func hello(at time.Time) jobstore.Hello {
	return jobstore.Hello{UUID: dev, SourceIP: "127.13.0.5", EventID: "hello-x", ReceivedAt: at}
}

func TestConcurrentAcquireHasOneHolder(t *testing.T) {
	s, pool := newStore(t)
	ctx := context.Background()
	const workers = 24
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		count = map[jobstore.Decision]int{}
	)
	start := make(chan struct{})
	for i := range workers {
		wg.Go(func() {
			<-start
			_, d, err := s.Acquire(ctx, hello(time.Now()), fmt.Sprintf("w%d", i), time.Minute)
			if err != nil {
				t.Errorf("worker %d: %v", i, err)
				return
			}
			mu.Lock()
			count[d]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	if count[jobstore.Started] != 1 || count[jobstore.Duplicate] != workers-1 {
		t.Fatalf("decisions %v: want exactly one started and %d duplicates", count, workers-1)
	}
	var jobs int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM provisioning_jobs`).Scan(&jobs); err != nil {
		t.Fatal(err)
	}
	if jobs != 1 {
		t.Fatalf("%d jobs", jobs)
	}
	if got := outboxTypes(t, pool); len(got) != 1 || got[0] != events.TypeProvisioningStarted {
		t.Fatalf("outbox %v: want one started event", got)
	}
}

func TestExpiredLeaseIsTakenOverAndResumesAtFirstUnfinishedStep(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	job, d, err := s.Acquire(ctx, hello(time.Now()), "dead", 300*time.Millisecond)
	if err != nil || d != jobstore.Started {
		t.Fatalf("acquire: %v %v", d, err)
	}
	for i, step := range []string{"connect", "read"} {
		if _, err := s.BeginStep(ctx, job.ID, "dead", 300*time.Millisecond, step, i); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishStep(ctx, job, "dead", step, jobstore.StepResult{Outcome: jobstore.OutcomeOK}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.BeginStep(ctx, job.ID, "dead", 300*time.Millisecond, "mebx", 2); err != nil {
		t.Fatal(err)
	}
	// While the lease lives, another worker sees a duplicate.
	if _, d, err := s.Acquire(ctx, hello(time.Now()), "alive", time.Minute); err != nil || d != jobstore.Duplicate {
		t.Fatalf("during lease: %v %v", d, err)
	}
	// After it expires, the next hello takes the job over (poll: the lease
	// is in the database's clock).
	deadline := time.Now().Add(5 * time.Second)
	var took jobstore.Job
	for {
		j, d, err := s.Acquire(ctx, hello(time.Now()), "alive", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if d == jobstore.Resumed {
			took = j
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease never expired: %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if took.ID != job.ID || took.Attempt != 1 || took.LeaseOwner != "alive" {
		t.Fatalf("took over %+v", took)
	}
	steps, err := s.Steps(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	first := ""
	for _, st := range steps {
		if !st.Done() {
			first = st.Step
			break
		}
	}
	if first != "mebx" {
		t.Fatalf("first unfinished step %q, steps %+v", first, steps)
	}
	var prev jobstore.Step
	for _, st := range steps {
		if st.Step == "mebx" {
			prev = st
		}
	}
	if prev.AttemptNo != 1 || prev.Outcome != jobstore.OutcomeRunning {
		t.Fatalf("previous run of mebx %+v: want one unfinished start", prev)
	}
	n, err := s.BeginStep(ctx, job.ID, "alive", time.Minute, "mebx", 2)
	if err != nil || n != 2 {
		t.Fatalf("second start of mebx: %d %v", n, err)
	}
	// The dead worker, waking up, cannot write any more.
	if _, err := s.BeginStep(ctx, job.ID, "dead", time.Minute, "tls", 3); !errors.Is(err, jobstore.ErrLeaseLost) {
		t.Fatalf("dead worker BeginStep: %v", err)
	}
	if err := s.Finish(ctx, job, "dead", jobstore.Outcome{Code: "X"}); !errors.Is(err, jobstore.ErrLeaseLost) {
		t.Fatalf("dead worker Finish: %v", err)
	}
}

func TestRequeueFinishAndStaleHellos(t *testing.T) {
	s, pool := newStore(t)
	ctx := context.Background()
	t0 := time.Now()
	job, _, err := s.Acquire(ctx, hello(t0), "w1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Requeue(ctx, job.ID, "w1", "DEVICE_UNREACHABLE", "dial"); err != nil {
		t.Fatal(err)
	}
	// A queued job is free at once, and the hello that resumes it drives
	// it from then on (only its redelivery waits for the lease).
	h2 := hello(t0)
	h2.EventID = "hello-resumer"
	j, d, err := s.Acquire(ctx, h2, "w2", time.Minute)
	if err != nil || d != jobstore.Resumed || j.ID != job.ID || j.HelloEventID != "hello-resumer" {
		t.Fatalf("after requeue: %v %v %+v", d, err, j)
	}
	if dup, d, err := s.Acquire(ctx, hello(t0), "w9", time.Minute); err != nil || d != jobstore.Duplicate || dup.HelloEventID != "hello-resumer" {
		t.Fatalf("the first hello while the job runs: %v %v %+v", d, err, dup)
	}
	if err := s.Finish(ctx, j, "w2", jobstore.Outcome{Code: "PSK_NOT_SUPPORTED", Hint: "h", Step: "select"}); err != nil {
		t.Fatal(err)
	}
	// The same hello redelivered is stale; a later one starts attempt 2.
	if _, d, err := s.Acquire(ctx, hello(t0), "w3", time.Minute); err != nil || d != jobstore.Stale {
		t.Fatalf("redelivered hello: %v %v", d, err)
	}
	j2, d, err := s.Acquire(ctx, hello(time.Now().Add(time.Second)), "w3", time.Minute)
	if err != nil || d != jobstore.Started || j2.Attempt != 2 {
		t.Fatalf("later hello: %v %v %+v", d, err, j2)
	}
	if err := s.Finish(ctx, j2, "w3", jobstore.Outcome{Code: "NO_MATCHING_PROVISIONING_CERT"}); err != nil {
		t.Fatal(err)
	}
	// With a cooldown, hellos right after a failure start nothing.
	s.FailedCooldown = time.Hour
	if _, d, err := s.Acquire(ctx, hello(time.Now().Add(2*time.Second)), "w4", time.Minute); err != nil || d != jobstore.Stale {
		t.Fatalf("hello during the cooldown: %v %v", d, err)
	}
	want := []string{events.TypeProvisioningStarted, events.TypeProvisioningFailed, events.TypeProvisioningStarted, events.TypeProvisioningFailed}
	if got := outboxTypes(t, pool); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("outbox %v, want %v", got, want)
	}
}

func TestCredentialsAndProfiles(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	job, _, err := s.Acquire(ctx, hello(time.Now()), "w", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	seal := func(v int, col string) ([]byte, string, error) {
		return []byte(fmt.Sprintf("sealed-%d-%s", v, col)), "k1", nil
	}
	v, err := s.SaveJobCredentials(ctx, job.ID, "w", dev, "admin", seal)
	if err != nil || v != 1 {
		t.Fatalf("save: %v %v", v, err)
	}
	c, err := s.DeviceCredentials(ctx, dev)
	if err != nil || c.Active || string(c.PasswordEnc) != "sealed-1-password_enc" {
		t.Fatalf("before success: %+v %v", c, err)
	}
	if err := s.Finish(ctx, job, "w", jobstore.Outcome{Succeeded: true, CredentialsVersion: v, TLSCertSHA256: "ab"}); err != nil {
		t.Fatal(err)
	}
	c, err = s.DeviceCredentials(ctx, dev)
	if err != nil || !c.Active || c.TLSCertSHA256 != "ab" {
		t.Fatalf("after success: %+v %v", c, err)
	}

	if _, err := s.CreateProfile(ctx, jobstore.Profile{Name: "bad name!"}); !errors.Is(err, jobstore.ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	for _, p := range []jobstore.Profile{
		{Name: "default", IsDefault: true},
		{Name: "corp", Settings: jobstore.Settings{DomainSuffix: "corp.example.com", KVM: true}},
		{Name: "example", Settings: jobstore.Settings{DomainSuffix: "example.com"}},
		{Name: "pinned"},
	} {
		if _, err := s.CreateProfile(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateProfile(ctx, jobstore.Profile{Name: "corp"}); !errors.Is(err, jobstore.ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := s.AssignProfile(ctx, "nope", dev); !errors.Is(err, jobstore.ErrNotFound) {
		t.Fatalf("assign unknown: %v", err)
	}
	for _, tc := range []struct {
		suffixes []string
		assign   bool
		want     string
	}{
		{[]string{"a.corp.example.com"}, false, "corp"},
		{[]string{"other.example.com"}, false, "example"},
		{[]string{"elsewhere.org"}, false, "default"},
		{[]string{"a.corp.example.com"}, true, "pinned"},
	} {
		if tc.assign {
			if err := s.AssignProfile(ctx, "pinned", dev); err != nil {
				t.Fatal(err)
			}
		}
		p, err := s.ProfileFor(ctx, dev, tc.suffixes)
		if err != nil || p.Name != tc.want {
			t.Errorf("ProfileFor(%v, assigned %v) = %q %v, want %q", tc.suffixes, tc.assign, p.Name, err, tc.want)
		}
	}
}

func TestFinishStoresAnyTextSafely(t *testing.T) {
	s, pool := newStore(t)
	ctx := context.Background()
	job, _, err := s.Acquire(ctx, hello(time.Now()), "w", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("é", 600) + "\x00\xff"
	if err := s.Finish(ctx, job, "w", jobstore.Outcome{Code: "X", Detail: long, Hint: "…"}); err != nil {
		t.Fatalf("finish with multi-byte, NUL and invalid bytes: %v", err)
	}
	var detail string
	if err := pool.QueryRow(ctx, `SELECT detail FROM provisioning_jobs WHERE id = $1`, job.ID).Scan(&detail); err != nil {
		t.Fatal(err)
	}
	if !utf8.ValidString(detail) || len(detail) > 1003 || !strings.HasSuffix(detail, "...") {
		t.Fatalf("stored detail of %d bytes", len(detail))
	}
}
