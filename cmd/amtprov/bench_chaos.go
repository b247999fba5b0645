package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/store"
	"github.com/amtprov/amtprov/libs/store/pglocal"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
)

// `amtprov bench --cluster --chaos`: once a fraction of the fleet is
// provisioned, SIGKILL one NATS node, one provisioner replica and one
// inventory replica at the same moment, let `amtprov up` restart them (its
// supervisor, up.go), and at the end check every device against the
// simulator's ground truth and the stored facts. What is checked, per
// device, and where it comes from:
//
//   - the simulator: post-provisioning, admin control mode, TLS on;
//   - the simulator, watched through Device.Changed during the whole run:
//     it entered post-provisioning exactly once and never left it (the
//     simulator keeps no per-device CommitChanges counter; a device goes
//     to post only at the commit of its first provisioning, and only an
//     Unprovision or a Reset would let it enter again);
//   - provisioning_jobs: exactly one succeeded job, none still open;
//   - provisioning_steps: exactly one commit step with outcome ok over all
//     of its jobs (the provisioner's record of CommitChanges succeeding);
//   - the AMT stream: exactly one distinct provisioning.succeeded event id
//     (a redelivery of the same id is counted, not an error);
//   - the inventory's rows: provisioning state, control mode, TLS, AMT
//     version, host name and IP equal to the simulator's, and the device's
//     provisioning block "succeeded" (the comparison of
//     services/provisioner's end-to-end tests).

// Bounds of the chaos steps.
const (
	// chaosRestartTimeout bounds the wait for up to start a killed process
	// again (its backoff starts at 1 s).
	chaosRestartTimeout = 2 * time.Minute
	// chaosReadyTimeout bounds the wait for a restarted process's /readyz
	// (a NATS node's /healthz: its JetStream caught up with the cluster).
	chaosReadyTimeout = 3 * time.Minute
	// chaosSettle is how long the verification polls for the stored facts
	// (inventory, outbox events) to agree with the simulator once every
	// device is provisioned.
	chaosSettle = 2 * time.Minute
	// chaosPoll is the polling interval of the chaos steps.
	chaosPoll = 200 * time.Millisecond
	// chaosMaxProblems bounds the problems listed in the report.
	chaosMaxProblems = 20
)

// benchChaosMethod says in the report where each check's facts come from.
const benchChaosMethod = "simulator: state, control mode, TLS (Device.Info) and transitions into post-provisioning " +
	"(watched on Device.Changed; amtsim keeps no per-device CommitChanges counter); " +
	"commits: provisioning_steps step=commit outcome=ok per device over its jobs; " +
	"jobs: provisioning_jobs state per device; events: distinct provisioning.succeeded ce-ids per device on the AMT stream; " +
	"inventory: oob_capability, device_identification, device_location, device_provisioning rows"

// benchChaosReport is the "chaos" object of a run in the --out report.
type benchChaosReport struct {
	AtFraction   float64     `json:"at_fraction"`
	AtDevices    int         `json:"at_devices"`     // provisioned (simulator) when the kills were sent
	TriggeredAtS float64     `json:"triggered_at_s"` // seconds after the run's start
	Lease        string      `json:"provisioner_lease,omitempty"`
	Kills        []benchKill `json:"kills"`
	// Exits is every upMsgExited record of up's log during
	// the run: the kills, and any later exit (a restarted process that
	// failed again, a survivor that crashed), each followed by a restart.
	Exits []benchExit `json:"exits"`
	// ExtraExits counts the exits beyond one per killed process.
	ExtraExits   int               `json:"extra_exits"`
	Verification benchVerification `json:"verification"`
}

// benchExit is one process exit `amtprov up` logged.
type benchExit struct {
	Process string  `json:"process"`
	AtS     float64 `json:"at_s"` // seconds after the run's start
	Err     string  `json:"err"`  // how it ended (exit status, signal)
	Ran     string  `json:"ran"`  // how long it had run
}

// benchKill is one SIGKILLed process and its way back.
type benchKill struct {
	Process      string  `json:"process"` // up's name: nats-2, provisioner-1, inventory-2
	Service      string  `json:"service"`
	Why          string  `json:"why"` // why this one of its replicas
	PID          int     `json:"pid"`
	KilledAtS    float64 `json:"killed_at_s"` // seconds after the run's start
	NewPID       int     `json:"new_pid,omitempty"`
	RestartedAtS float64 `json:"restarted_at_s,omitempty"` // up.json showed the new pid
	ReadyAtS     float64 `json:"ready_at_s,omitempty"`     // its /readyz (NATS: /healthz) answered 200
	// FinalPID is its pid in up.json at the end: not NewPID when the
	// successor exited as well and was started again (see Exits).
	FinalPID int    `json:"final_pid,omitempty"`
	Error    string `json:"error,omitempty"`
	// What the killed process had used right before the kill (ok: read).
	usage   procUsage
	usageOK bool
}

// benchVerification is the end-of-run check of every device.
type benchVerification struct {
	Passed         bool    `json:"passed"`
	Devices        int     `json:"devices"`
	ProblemDevices int     `json:"problem_devices"`
	SettledAfterS  float64 `json:"settled_after_s"` // from the start of the verification to its verdict
	// Devices that pass each check.
	SimProvisioned  int `json:"sim_provisioned"`       // post, ACM, TLS on
	SimEnteredOnce  int `json:"sim_entered_post_once"` // one transition into post, none out
	JobSucceededOne int `json:"jobs_succeeded_once"`   // exactly one succeeded job, none open
	CommitOne       int `json:"commits_once"`          // exactly one ok commit step
	EventOne        int `json:"succeeded_events_once"` // exactly one distinct succeeded event id
	InventoryMatch  int `json:"inventory_matches"`     // inventory rows equal the simulator
	// Recovery at work (not errors).
	FailedJobs            int      `json:"failed_jobs"`                   // jobs that failed and were retried
	CommitStepsRestarted  int      `json:"commit_steps_restarted"`        // commit steps started more than once in their job (taken over)
	StepsRestarted        int      `json:"devices_with_a_step_restarted"` // devices whose jobs had some step started twice (taken over, or retried after an error)
	SucceededRedeliveries int      `json:"succeeded_event_redeliveries"`  // same succeeded event id read again
	Method                string   `json:"method"`
	Problems              []string `json:"problems,omitempty"` // the first few, one line each
}

// watchedDevice is what the chaos run needs of a simulated device.
type watchedDevice interface {
	UUID() amt.UUID
	State() amt.ProvisioningState
	Changed() <-chan struct{}
}

// postWatcher follows every device's provisioning state as the simulator
// reports it: the ground truth of a benchmark, independent of events
// reaching the stream. It counts, per device, the transitions into and out
// of post-provisioning, and records when each device first entered it.
type postWatcher struct {
	mu      sync.Mutex
	entered map[string]int
	left    map[string]int
	first   map[string]time.Time // when each device first entered post
	post    int                  // devices post-provisioning now
	total   int
	allPost chan struct{} // closed once every device has entered post
	wg      sync.WaitGroup
	cancel  context.CancelFunc
}

// watched is devs as the watcher sees them.
func watched(devs []*firmware.Device) []watchedDevice {
	wd := make([]watchedDevice, len(devs))
	for i, d := range devs {
		wd[i] = d
	}
	return wd
}

// watchPost starts one goroutine per device; stop ends them. A state is
// read after taking the change channel, so no change is slept through;
// changes closer together than the goroutine is scheduled collapse into
// one (a device needs many WS-Man round trips to leave post-provisioning
// and come back, so a re-provisioning is seen).
func watchPost(ctx context.Context, devs []watchedDevice) *postWatcher {
	ctx, cancel := context.WithCancel(ctx)
	w := &postWatcher{entered: map[string]int{}, left: map[string]int{}, first: map[string]time.Time{},
		total: len(devs), allPost: make(chan struct{}), cancel: cancel}
	if len(devs) == 0 {
		close(w.allPost)
	}
	for _, d := range devs {
		id := d.UUID().String()
		w.wg.Go(func() {
			prev, first := amt.ProvisioningState(0), true
			for {
				ch := d.Changed()
				st := d.State()
				w.observe(id, prev, st, first)
				prev, first = st, false
				select {
				case <-ch:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	return w
}

func (w *postWatcher) observe(id string, prev, st amt.ProvisioningState, first bool) {
	isPost := st == amt.PostProvisioning
	wasPost := !first && prev == amt.PostProvisioning
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case isPost && !wasPost:
		w.entered[id]++
		w.post++
		if _, ok := w.first[id]; !ok {
			w.first[id] = time.Now()
			if len(w.first) == w.total {
				close(w.allPost)
			}
		}
	case !isPost && wasPost:
		w.left[id]++
		w.post--
	}
}

// postCount is the devices post-provisioning now.
func (w *postWatcher) postCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.post
}

// everPost is the devices that have entered post at least once.
func (w *postWatcher) everPost() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.first)
}

// firstPost copies when each device first entered post.
func (w *postWatcher) firstPost() map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.first)
}

// transitions returns a device's transitions into and out of post.
func (w *postWatcher) transitions(id string) (entered, left int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.entered[id], w.left[id]
}

func (w *postWatcher) stop() {
	w.cancel()
	w.wg.Wait()
}

// benchChaos is the chaos part of one cluster run.
type benchChaos struct {
	o     benchOptions
	dir   string // the up run dir (up.json)
	nc    *nats.Conn
	js    jetstream.JetStream
	pool  *pgxpool.Pool
	devs  []*firmware.Device
	watch *postWatcher
	up    *upProc // amtprov up: its log and exit

	mu      sync.Mutex
	start   time.Time // the run's start (set by run)
	rep     benchChaosReport
	done    chan struct{} // closed when run returned
	ended   chan struct{} // closed when the measurement ended: no kill after it
	endOnce sync.Once
}

// newBenchChaos connects to the cluster's database and starts watching the
// fleet; close releases both.
func newBenchChaos(ctx context.Context, o benchOptions, dir string, up *upProc, nc *nats.Conn, js jetstream.JetStream, devs []*firmware.Device, log *slog.Logger) (*benchChaos, error) {
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// up.json redacts the user of the database URL; the cluster's private
	// PostgreSQL under the run dir is already running, and pglocal.Start
	// returns its URL without starting another (the cluster stops it).
	dbURL, _, err := pglocal.Start(octx, filepath.Join(dir, "pg"), log)
	if err != nil {
		return nil, fmt.Errorf("--chaos: the cluster's database: %w", err)
	}
	pool, err := store.Open(octx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("--chaos: the cluster's database: %w", err)
	}
	c := &benchChaos{
		o: o, dir: dir, up: up, nc: nc, js: js, pool: pool, devs: devs,
		watch: watchPost(ctx, watched(devs)),
		done:  make(chan struct{}),
		ended: make(chan struct{}),
		rep:   benchChaosReport{AtFraction: o.chaosAt, Kills: []benchKill{}},
	}
	if o.lease > 0 {
		c.rep.Lease = o.lease.String()
	}
	return c, nil
}

func (c *benchChaos) close() {
	c.watch.stop()
	c.pool.Close()
}

// run waits for the threshold, kills the three processes and waits for up
// to bring each back; everything is recorded in c.rep.
func (c *benchChaos) run(ctx context.Context, start time.Time) {
	defer close(c.done)
	c.mu.Lock()
	c.start = start
	c.mu.Unlock()
	threshold := max(1, int(math.Ceil(c.o.chaosAt*float64(c.o.devices))))
	tick := time.NewTicker(chaosPoll)
	defer tick.Stop()
	for c.watch.postCount() < threshold {
		select {
		case <-ctx.Done():
			return
		case <-c.ended:
			return // the run ended (--timeout) before the threshold: nothing killed
		case <-tick.C:
		}
	}
	targets, err := c.pickTargets(ctx)
	c.mu.Lock()
	c.rep.AtDevices, c.rep.TriggeredAtS = c.watch.postCount(), since(start)
	c.mu.Unlock()
	if err != nil {
		c.mu.Lock()
		c.rep.Kills = append(c.rep.Kills, benchKill{Error: err.Error()})
		c.mu.Unlock()
		return
	}
	// All three at once: the harshest moment for the survivors.
	for i := range targets {
		k := &targets[i]
		if u, _, err := readProcUsage("/proc", k.PID, false); err == nil {
			k.usage, k.usageOK = u, true
		}
		k.KilledAtS = since(start)
		if err := syscall.Kill(-k.PID, syscall.SIGKILL); err != nil {
			k.Error = fmt.Sprintf("kill -9 process group %d: %v", k.PID, err)
		}
	}
	fmt.Fprintf(c.o.progress, "bench: chaos at %d provisioned: kill -9 %s\n", c.rep.AtDevices, killNames(targets))
	var wg sync.WaitGroup
	for i := range targets {
		if targets[i].Error != "" {
			continue
		}
		wg.Go(func() { c.awaitReturn(ctx, start, &targets[i]) })
	}
	wg.Wait()
	for _, k := range targets {
		if k.Error == "" {
			fmt.Fprintf(c.o.progress, "bench: chaos: %s back as pid %d after %.1f s, ready after %.1f s\n",
				k.Process, k.NewPID, k.RestartedAtS-k.KilledAtS, k.ReadyAtS-k.KilledAtS)
		}
	}
	c.mu.Lock()
	c.rep.Kills = targets
	c.mu.Unlock()
}

func killNames(ks []benchKill) string {
	names := make([]string, len(ks))
	for i, k := range ks {
		names[i] = fmt.Sprintf("%s (pid %d, %s)", k.Process, k.PID, k.Why)
	}
	return strings.Join(names, ", ")
}

// pickTargets chooses the NATS node (the AMT stream's leader unless the
// bench's own connection is on it, else another node the bench is not
// connected to), the provisioner replica holding the most running jobs and
// the first inventory replica, with their current pids from up.json.
func (c *benchChaos) pickTargets(ctx context.Context) ([]benchKill, error) {
	st, err := readUpState(c.dir)
	if err != nil {
		return nil, err
	}
	var out []benchKill
	nk, err := c.pickNATS(ctx, st)
	if err != nil {
		return nil, err
	}
	out = append(out, nk)
	pk, err := c.pickProvisioner(ctx, st)
	if err != nil {
		return nil, err
	}
	out = append(out, pk)
	for _, p := range st.Processes {
		if p.Service == "inventory" {
			out = append(out, benchKill{Process: p.Name, Service: p.Service, PID: p.PID, Why: "first inventory replica"})
			break
		}
	}
	if len(out) != 3 {
		return nil, errors.New("--chaos: the cluster runs no inventory replica")
	}
	return out, nil
}

func (c *benchChaos) pickNATS(ctx context.Context, st upState) (benchKill, error) {
	var nodes []upInstance
	for _, p := range st.Processes {
		if p.Service == "nats" {
			nodes = append(nodes, p)
		}
	}
	if len(nodes) < 2 {
		return benchKill{}, fmt.Errorf("--chaos: the cluster has %d NATS node(s); killing one needs at least 2 (up --nats-nodes 3)", len(nodes))
	}
	// Which node the bench reads from: the port of its connection.
	mine := ""
	if u, err := url.Parse(c.nc.ConnectedUrl()); err == nil {
		for i, pub := range st.NATS {
			if pu, err := url.Parse(pub); err == nil && pu.Port() == u.Port() && i < len(nodes) {
				mine = nodes[i].Name
			}
		}
	}
	leader := ""
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s, err := c.js.Stream(ictx, events.StreamName); err == nil {
		if info, err := s.Info(ictx); err == nil && info.Cluster != nil {
			leader = info.Cluster.Leader
		}
	}
	for _, n := range nodes {
		if n.Name == leader && n.Name != mine {
			return benchKill{Process: n.Name, Service: n.Service, PID: n.PID, Why: "AMT stream leader; the bench reads from " + mine}, nil
		}
	}
	for _, n := range nodes {
		if n.Name != mine {
			return benchKill{Process: n.Name, Service: n.Service, PID: n.PID,
				Why: fmt.Sprintf("not the node the bench reads from (%s), which leads the AMT stream (%s)", mine, leader)}, nil
		}
	}
	return benchKill{}, errors.New("--chaos: no NATS node but the bench's own")
}

// pickProvisioner returns the replica holding the most running jobs. A
// job's lease_owner is "<instance>/<n>" and a replica's default instance
// is "<host>-<pid>-<random>" (services/provisioner).
func (c *benchChaos) pickProvisioner(ctx context.Context, st upState) (benchKill, error) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := c.pool.Query(qctx, `SELECT lease_owner FROM provisioning_jobs WHERE state = 'running'`)
	if err != nil {
		return benchKill{}, fmt.Errorf("--chaos: read running jobs: %w", err)
	}
	held := map[int]int{}
	total := 0
	for rows.Next() {
		var owner string
		if err := rows.Scan(&owner); err != nil {
			rows.Close()
			return benchKill{}, fmt.Errorf("--chaos: read running jobs: %w", err)
		}
		if pid, ok := ownerPID(owner); ok {
			held[pid]++
		}
		total++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return benchKill{}, fmt.Errorf("--chaos: read running jobs: %w", err)
	}
	var best *upInstance
	for i, p := range st.Processes {
		if p.Service == "provisioner" && (best == nil || held[p.PID] > held[best.PID]) {
			best = &st.Processes[i]
		}
	}
	if best == nil {
		return benchKill{}, errors.New("--chaos: the cluster runs no provisioner replica")
	}
	return benchKill{Process: best.Name, Service: best.Service, PID: best.PID,
		Why: fmt.Sprintf("held %d of %d running jobs", held[best.PID], total)}, nil
}

// ownerPID reads the pid out of a lease owner "<host>-<pid>-<hex>/<n>".
func ownerPID(owner string) (int, bool) {
	inst, _, ok := strings.Cut(owner, "/")
	if !ok {
		return 0, false
	}
	parts := strings.Split(inst, "-")
	if len(parts) < 3 {
		return 0, false
	}
	pid, err := strconv.Atoi(parts[len(parts)-2])
	return pid, err == nil && pid > 0
}

// awaitReturn waits for up.json to show k's process with a new pid, then
// for its readiness endpoint to answer 200.
func (c *benchChaos) awaitReturn(ctx context.Context, start time.Time, k *benchKill) {
	var inst upInstance
	st, err := waitUpState(ctx, c.up, c.dir, chaosRestartTimeout, "restart of "+k.Process, func(st upState) bool {
		i := slices.IndexFunc(st.Processes, func(p upInstance) bool { return p.Name == k.Process })
		if i < 0 || st.Processes[i].PID == k.PID {
			return false
		}
		inst = st.Processes[i]
		return true
	})
	if err != nil {
		k.Error = err.Error()
		if ctx.Err() != nil {
			k.Error = "interrupted waiting for the restart"
		}
		return
	}
	k.NewPID, k.RestartedAtS = inst.PID, since(start)
	ready := inst.Ops + "/readyz"
	if inst.Service == "nats" {
		i, err := strconv.Atoi(strings.TrimPrefix(inst.Name, "nats-"))
		if err != nil || i < 1 || i > len(st.NATSMonitor) {
			k.Error = fmt.Sprintf("no monitoring address for %s in %s", inst.Name, upStateFile)
			return
		}
		ready = st.NATSMonitor[i-1] + "/healthz"
	}
	if err := waitHTTP(ctx, ready, chaosReadyTimeout, c.up.done); err != nil {
		switch {
		case ctx.Err() != nil:
			k.Error = "interrupted waiting for readiness"
		case errors.Is(err, errUpProcExited):
			k.Error = fmt.Sprintf("%s restarted but amtprov up exited before it was ready", k.Process)
		default:
			k.Error = fmt.Sprintf("%s restarted but not ready: %v", k.Process, err)
		}
		return
	}
	k.ReadyAtS = since(start)
}

// readUpState reads up.json of a running cluster (written atomically).
func readUpState(dir string) (upState, error) {
	var st upState
	b, err := os.ReadFile(filepath.Join(dir, upStateFile))
	if err != nil {
		return st, fmt.Errorf("read %s: %w", upStateFile, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read %s: %w", upStateFile, err)
	}
	return st, nil
}

// measurementEnded tells run that no kill may start any more and waits
// for the kills under way to end (their own timeouts bound it).
func (c *benchChaos) measurementEnded(ctx context.Context) {
	c.endOnce.Do(func() { close(c.ended) })
	select {
	case <-c.done:
	case <-ctx.Done():
	}
}

// withoutKilled returns procs without the killed processes (their pids
// are gone, or another process's by now).
func (c *benchChaos) withoutKilled(procs []benchProc) []benchProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(procs), func(p benchProc) bool {
		return slices.ContainsFunc(c.rep.Kills, func(k benchKill) bool { return k.PID == p.pid && k.Service == p.service })
	})
}

// addReplacedUsage adds to after (the services' usage at the end of the
// measurement, read from the processes that were started with it) what a
// killed process had used up to its kill and everything its successor
// used: the successor started during the run. Peak RSS is the larger of
// the three. The replacement is the same replica, so the process count
// stays.
func (c *benchChaos) addReplacedUsage(after map[string]svcUsage, log *slog.Logger) {
	c.mu.Lock()
	kills := slices.Clone(c.rep.Kills)
	c.mu.Unlock()
	for _, k := range kills {
		if k.Service == "" {
			continue
		}
		s := after[k.Service]
		if k.usageOK {
			s.CPUSeconds += k.usage.CPUSeconds
			s.PeakRSSMB = max(s.PeakRSSMB, k.usage.PeakRSSMB)
			s.procs++
		}
		if k.NewPID > 0 {
			if u, _, err := readProcUsage("/proc", k.NewPID, false); err == nil {
				s.CPUSeconds += u.CPUSeconds
				s.PeakRSSMB = max(s.PeakRSSMB, u.PeakRSSMB)
			} else {
				log.Warn("bench: restarted process not measured", "process", k.Process, "err", err)
			}
		}
		after[k.Service] = s
	}
}

// finish verifies every device and puts the verdict and the kills'
// outcome in r.Chaos; the error says what went wrong, if anything did.
// Call it after measurementEnded, with ctx not ended: run has returned.
func (c *benchChaos) finish(ctx context.Context, col *benchCollector, r *benchRun) error {
	v := c.verify(ctx, col)
	exits, exitErr := upExits(c.up.logPath, c.start)
	final, stateErr := readUpState(c.dir)
	c.mu.Lock()
	c.rep.Verification = v
	c.rep.Exits = exits
	c.rep.ExtraExits = max(len(exits)-len(c.rep.Kills), 0)
	for i, k := range c.rep.Kills {
		if j := slices.IndexFunc(final.Processes, func(p upInstance) bool { return p.Name == k.Process }); j >= 0 {
			c.rep.Kills[i].FinalPID = final.Processes[j].PID
		}
	}
	rep := c.rep
	c.mu.Unlock()
	r.Chaos = &rep
	var errs []error
	if exitErr != nil || stateErr != nil {
		errs = append(errs, fmt.Errorf("chaos: the restart record: %w", errors.Join(exitErr, stateErr)))
	}
	if rep.ExtraExits > 0 {
		fmt.Fprintf(c.o.progress, "bench: chaos: %d process exits beyond the %d kills (see exits in the report)\n", rep.ExtraExits, len(rep.Kills))
	}
	if len(rep.Kills) == 0 {
		errs = append(errs, fmt.Errorf("chaos: nothing was killed: fewer than %.0f%% of the devices were provisioned", 100*c.o.chaosAt))
	}
	for _, k := range rep.Kills {
		if k.Error != "" {
			errs = append(errs, fmt.Errorf("chaos: %s: %s", k.Process, k.Error))
		}
	}
	if !v.Passed {
		first := ""
		if len(v.Problems) > 0 {
			first = "; first: " + v.Problems[0]
		}
		errs = append(errs, fmt.Errorf("chaos verification failed for %d of %d devices%s", v.ProblemDevices, v.Devices, first))
	}
	fmt.Fprintf(c.o.progress, "bench: chaos verification: passed=%v, %d of %d devices with problems (settled after %.1f s)\n",
		v.Passed, v.ProblemDevices, v.Devices, v.SettledAfterS)
	return errors.Join(errs...)
}

// maxUpLog bounds the part of up's log read for its exit records.
const maxUpLog = 64 << 20

// upExits reads the upMsgExited records of up's log
// (JSON lines, libs/telemetry) in the order they were logged.
func upExits(path string, start time.Time) ([]benchExit, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read up's log: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxUpLog))
	if err != nil {
		return nil, fmt.Errorf("read up's log: %w", err)
	}
	out := []benchExit{}
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.Contains(line, upMsgExited) {
			continue
		}
		var rec struct {
			Time    time.Time `json:"time"`
			Msg     string    `json:"msg"`
			Process string    `json:"process"`
			Err     string    `json:"err"`
			Ran     string    `json:"ran"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != upMsgExited {
			continue // not a record of up's own (a line cut by the size bound)
		}
		out = append(out, benchExit{Process: rec.Process, AtS: round3(rec.Time.Sub(start).Seconds()), Err: rec.Err, Ran: rec.Ran})
	}
	return out, nil
}

// verify polls until every device passes every check or chaosSettle
// passes, and returns the last verdict.
func (c *benchChaos) verify(ctx context.Context, col *benchCollector) benchVerification {
	start := time.Now()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		facts, err := c.gather(ctx, col)
		var v benchVerification
		if err != nil {
			v = benchVerification{Devices: len(c.devs), ProblemDevices: len(c.devs), Problems: []string{err.Error()}}
		} else {
			v = evaluateChaos(facts)
		}
		v.Method = benchChaosMethod
		v.SettledAfterS = since(start)
		if v.Passed || time.Since(start) > chaosSettle {
			return v
		}
		select {
		case <-ctx.Done():
			v.Problems = append(v.Problems, "interrupted: "+ctx.Err().Error())
			return v
		case <-tick.C:
		}
	}
}

// chaosFacts is everything known about one device at the end of a run.
type chaosFacts struct {
	Sim                firmware.Info
	Entered, Left      int // simulator transitions into / out of post
	JobsSucceeded      int
	JobsFailed         int
	JobsOpen           int
	CommitsOK          int
	CommitStartedTwice bool
	StepStartedTwice   bool // some step of its jobs
	Events             int  // distinct succeeded event ids
	Redelivered        int
	Inv                *inventoryRow // nil: no row
}

// inventoryRow is the inventory's view of a device.
type inventoryRow struct {
	State, Version, Mode string
	TLS                  bool
	Host, IP             string
	Provisioning         string // device_provisioning.state
}

// gather reads every device's facts: the simulator, the watcher, the
// collector and three queries over the whole table each.
func (c *benchChaos) gather(ctx context.Context, col *benchCollector) ([]chaosFacts, error) {
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	type jobs struct{ ok, failed, open int }
	jobsOf := map[string]*jobs{}
	rows, err := c.pool.Query(qctx, `SELECT uuid::text, state, count(*) FROM provisioning_jobs GROUP BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("verify: read provisioning_jobs: %w", err)
	}
	for rows.Next() {
		var u, state string
		var n int
		if err := rows.Scan(&u, &state, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("verify: read provisioning_jobs: %w", err)
		}
		j := jobsOf[u]
		if j == nil {
			j = &jobs{}
			jobsOf[u] = j
		}
		switch state {
		case "succeeded":
			j.ok += n
		case "failed":
			j.failed += n
		default:
			j.open += n
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("verify: read provisioning_jobs: %w", err)
	}

	type steps struct {
		commitsOK                 int
		commitRestart, anyRestart bool
	}
	stepsOf := map[string]steps{}
	rows, err = c.pool.Query(qctx, `SELECT j.uuid::text, count(*) FILTER (WHERE s.step = 'commit' AND s.outcome = 'ok'),
		coalesce(max(s.attempt_no) FILTER (WHERE s.step = 'commit'), 0), max(s.attempt_no)
		FROM provisioning_steps s JOIN provisioning_jobs j ON j.id = s.job_id GROUP BY 1`)
	if err != nil {
		return nil, fmt.Errorf("verify: read provisioning_steps: %w", err)
	}
	for rows.Next() {
		var u string
		var ok, commitAttempts, anyAttempts int
		if err := rows.Scan(&u, &ok, &commitAttempts, &anyAttempts); err != nil {
			rows.Close()
			return nil, fmt.Errorf("verify: read provisioning_steps: %w", err)
		}
		stepsOf[u] = steps{commitsOK: ok, commitRestart: commitAttempts > 1, anyRestart: anyAttempts > 1}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("verify: read provisioning_steps: %w", err)
	}

	inv := map[string]*inventoryRow{}
	rows, err = c.pool.Query(qctx, `SELECT c.uuid::text, coalesce(c.provisioning_state, ''), c.amt_version, c.control_mode, c.tls_enabled,
		coalesce(i.hostname, ''), coalesce(host(l.ip), ''), coalesce(p.state, '')
		FROM oob_capability c LEFT JOIN device_identification i USING (uuid) LEFT JOIN device_location l USING (uuid)
		LEFT JOIN device_provisioning p USING (uuid)`)
	if err != nil {
		return nil, fmt.Errorf("verify: read the inventory: %w", err)
	}
	for rows.Next() {
		var u string
		var r inventoryRow
		if err := rows.Scan(&u, &r.State, &r.Version, &r.Mode, &r.TLS, &r.Host, &r.IP, &r.Provisioning); err != nil {
			rows.Close()
			return nil, fmt.Errorf("verify: read the inventory: %w", err)
		}
		inv[u] = &r
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("verify: read the inventory: %w", err)
	}

	out := make([]chaosFacts, len(c.devs))
	for i, d := range c.devs {
		info := d.Info()
		f := chaosFacts{Sim: info, Inv: inv[info.UUID]}
		f.Entered, f.Left = c.watch.transitions(info.UUID)
		if j := jobsOf[info.UUID]; j != nil {
			f.JobsSucceeded, f.JobsFailed, f.JobsOpen = j.ok, j.failed, j.open
		}
		st := stepsOf[info.UUID]
		f.CommitsOK, f.CommitStartedTwice, f.StepStartedTwice = st.commitsOK, st.commitRestart, st.anyRestart
		f.Events, f.Redelivered = col.succeededEvents(info.UUID)
		out[i] = f
	}
	return out, nil
}

// chaosCheck names one check of a device; benchVerification counts the
// devices that pass each.
type chaosCheck int

const (
	checkSimProvisioned  chaosCheck = iota // post, ACM, TLS on
	checkSimEnteredOnce                    // one transition into post, none out
	checkJobSucceededOne                   // exactly one succeeded job, none open
	checkCommitOne                         // exactly one ok commit step
	checkEventOne                          // exactly one distinct succeeded event id
	checkInventoryMatch                    // inventory rows equal the simulator
)

// chaosResult is the outcome of one check of a device.
type chaosResult struct {
	check    chaosCheck
	problems []string // none: passed
}

// evaluateChaos checks every device and counts.
func evaluateChaos(facts []chaosFacts) benchVerification {
	v := benchVerification{Devices: len(facts)}
	passed := map[chaosCheck]*int{
		checkSimProvisioned:  &v.SimProvisioned,
		checkSimEnteredOnce:  &v.SimEnteredOnce,
		checkJobSucceededOne: &v.JobSucceededOne,
		checkCommitOne:       &v.CommitOne,
		checkEventOne:        &v.EventOne,
		checkInventoryMatch:  &v.InventoryMatch,
	}
	for _, f := range facts {
		var probs []string
		for _, r := range checkChaosDevice(f) {
			if len(r.problems) == 0 {
				*passed[r.check]++
			}
			probs = append(probs, r.problems...)
		}
		v.FailedJobs += f.JobsFailed
		if f.CommitStartedTwice {
			v.CommitStepsRestarted++
		}
		if f.StepStartedTwice {
			v.StepsRestarted++
		}
		v.SucceededRedeliveries += f.Redelivered
		if len(probs) > 0 {
			v.ProblemDevices++
			for _, p := range probs {
				if len(v.Problems) < chaosMaxProblems {
					v.Problems = append(v.Problems, f.Sim.UUID+": "+p)
				}
			}
		}
	}
	v.Passed = v.Devices > 0 && v.ProblemDevices == 0
	return v
}

// checkChaosDevice runs every check on one device: one result per check,
// in the order of the chaosCheck constants.
func checkChaosDevice(f chaosFacts) []chaosResult {
	s := f.Sim
	var inv []string
	if m := inventoryMatches(f); m != "" {
		inv = []string{m}
	}
	return []chaosResult{
		{checkSimProvisioned, problemIf(s.State != "post" || s.ControlMode != "acm" || !s.TLSEnabled,
			"simulator: %s/%s tls=%v, want post/acm tls=true", s.State, s.ControlMode, s.TLSEnabled)},
		{checkSimEnteredOnce, problemIf(f.Entered != 1 || f.Left != 0,
			"simulator: entered post-provisioning %d times and left it %d times, want once and never", f.Entered, f.Left)},
		{checkJobSucceededOne, append(problemIf(f.JobsSucceeded != 1, "%d succeeded jobs, want 1", f.JobsSucceeded),
			problemIf(f.JobsOpen != 0, "%d jobs still queued or running", f.JobsOpen)...)},
		{checkCommitOne, problemIf(f.CommitsOK != 1, "%d successful commit steps, want 1", f.CommitsOK)},
		{checkEventOne, problemIf(f.Events != 1, "%d distinct provisioning.succeeded events on the stream, want 1", f.Events)},
		{checkInventoryMatch, inv},
	}
}

// problemIf is the problem format describes when bad holds, else none.
func problemIf(bad bool, format string, args ...any) []string {
	if !bad {
		return nil
	}
	return []string{fmt.Sprintf(format, args...)}
}

// inventoryMatches compares the inventory's rows with the simulator ("":
// they agree).
func inventoryMatches(f chaosFacts) string {
	s, r := f.Sim, f.Inv
	if r == nil {
		return "no inventory row"
	}
	if r.State != s.State || r.Mode != s.ControlMode || r.TLS != s.TLSEnabled || r.Host != s.Hostname || r.IP != s.IP ||
		r.Version == "" || !strings.HasPrefix(s.AMTVersion, r.Version) || r.Provisioning != "succeeded" {
		return fmt.Sprintf("inventory %s/%s tls=%v version %q host %q ip %s provisioning %q; simulator %s/%s tls=%v version %q host %q ip %s",
			r.State, r.Mode, r.TLS, r.Version, r.Host, r.IP, r.Provisioning, s.State, s.ControlMode, s.TLSEnabled, s.AMTVersion, s.Hostname, s.IP)
	}
	return ""
}
