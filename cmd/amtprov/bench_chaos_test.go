package main

import (
	"context"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
)

// goodFacts is a device the chaos verification accepts.
func goodFacts() chaosFacts {
	return chaosFacts{
		Sim: firmware.Info{UUID: "11111111-1111-1111-1111-111111111111", IP: "127.21.0.5", Hostname: "dev-5", AMTVersion: "16.1.25.2124",
			State: "post", ControlMode: "acm", TLSEnabled: true},
		Entered: 1, JobsSucceeded: 1, CommitsOK: 1, Events: 1,
		Inv: &inventoryRow{State: "post", Version: "16.1.25", Mode: "acm", TLS: true, Host: "dev-5", IP: "127.21.0.5", Provisioning: "succeeded"},
	}
}

func TestCheckChaosDevice(t *testing.T) {
	tests := []struct {
		name string
		edit func(*chaosFacts)
		want string // substring of the one problem; "" for none
	}{
		{"good", func(*chaosFacts) {}, ""},
		{"retried after a failed job", func(f *chaosFacts) { f.JobsFailed, f.CommitStartedTwice, f.Redelivered = 1, true, 2 }, ""},
		{"not provisioned", func(f *chaosFacts) {
			f.Sim.State, f.Sim.ControlMode, f.Inv.State, f.Inv.Mode = "in", "none", "in", "none"
		}, "simulator: in/none"},
		{"no TLS", func(f *chaosFacts) { f.Sim.TLSEnabled, f.Inv.TLS = false, false }, "want post/acm tls=true"},
		{"provisioned twice", func(f *chaosFacts) { f.Entered = 2; f.Left = 1 }, "entered post-provisioning 2 times and left it 1 times"},
		{"never seen entering", func(f *chaosFacts) { f.Entered = 0 }, "entered post-provisioning 0 times"},
		{"two succeeded jobs", func(f *chaosFacts) { f.JobsSucceeded = 2 }, "2 succeeded jobs"},
		{"open job", func(f *chaosFacts) { f.JobsOpen = 1 }, "1 jobs still queued or running"},
		{"two commits", func(f *chaosFacts) { f.CommitsOK = 2 }, "2 successful commit steps"},
		{"no succeeded event", func(f *chaosFacts) { f.Events = 0 }, "0 distinct provisioning.succeeded events"},
		{"two succeeded events", func(f *chaosFacts) { f.Events = 2 }, "2 distinct provisioning.succeeded events"},
		{"no inventory row", func(f *chaosFacts) { f.Inv = nil }, "no inventory row"},
		{"inventory state", func(f *chaosFacts) { f.Inv.State = "in" }, "inventory in/acm"},
		{"inventory mode", func(f *chaosFacts) { f.Inv.Mode = "ccm" }, "inventory post/ccm"},
		{"inventory TLS", func(f *chaosFacts) { f.Inv.TLS = false }, "tls=false"},
		{"inventory host", func(f *chaosFacts) { f.Inv.Host = "" }, `host ""`},
		{"inventory ip", func(f *chaosFacts) { f.Inv.IP = "127.21.0.6" }, "ip 127.21.0.6"},
		{"inventory version", func(f *chaosFacts) { f.Inv.Version = "15.0" }, `version "15.0"`},
		{"inventory version missing", func(f *chaosFacts) { f.Inv.Version = "" }, `version ""`},
		{"inventory provisioning block", func(f *chaosFacts) { f.Inv.Provisioning = "failed" }, `provisioning "failed"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := goodFacts()
			tt.edit(&f)
			results := checkChaosDevice(f)
			var got []string
			for i, r := range results {
				if r.check != chaosCheck(i) {
					t.Fatalf("result %d is of check %d, want one result per check in order", i, r.check)
				}
				got = append(got, r.problems...)
			}
			if len(results) != int(checkInventoryMatch)+1 {
				t.Fatalf("%d results, want one per check", len(results))
			}
			if tt.want == "" {
				if len(got) != 0 {
					t.Fatalf("problems %q, want none", got)
				}
				return
			}
			if len(got) != 1 || !strings.Contains(got[0], tt.want) {
				t.Fatalf("problems %q, want one containing %q", got, tt.want)
			}
		})
	}
}

func TestEvaluateChaos(t *testing.T) {
	good := goodFacts()
	retried := goodFacts()
	retried.JobsFailed, retried.CommitStartedTwice, retried.StepStartedTwice, retried.Redelivered = 2, true, true, 1
	twice := goodFacts()
	twice.Sim.UUID, twice.JobsSucceeded, twice.CommitsOK, twice.Events = "22222222-2222-2222-2222-222222222222", 2, 2, 2
	stale := goodFacts()
	stale.Inv = &inventoryRow{State: "in", Mode: "none"}

	v := evaluateChaos([]chaosFacts{good, retried})
	if !v.Passed || v.Devices != 2 || v.ProblemDevices != 0 || len(v.Problems) != 0 {
		t.Errorf("two good devices: %+v, want passed", v)
	}
	if v.FailedJobs != 2 || v.CommitStepsRestarted != 1 || v.StepsRestarted != 1 || v.SucceededRedeliveries != 1 {
		t.Errorf("recovery counts %d %d %d %d, want 2 1 1 1", v.FailedJobs, v.CommitStepsRestarted, v.StepsRestarted, v.SucceededRedeliveries)
	}

	v = evaluateChaos([]chaosFacts{good, twice, stale})
	if v.Passed || v.ProblemDevices != 2 {
		t.Fatalf("a device provisioned twice and a stale inventory row: passed=%v problem devices %d, want not passed and 2", v.Passed, v.ProblemDevices)
	}
	if v.SimProvisioned != 3 || v.SimEnteredOnce != 3 || v.JobSucceededOne != 2 || v.CommitOne != 2 || v.EventOne != 2 || v.InventoryMatch != 2 {
		t.Errorf("per-check counts %+v", v)
	}
	if len(v.Problems) != 4 || !strings.HasPrefix(v.Problems[0], twice.Sim.UUID+": 2 succeeded jobs") {
		t.Errorf("problems %q", v.Problems)
	}
	if v := evaluateChaos(nil); v.Passed {
		t.Error("no device at all passed")
	}

	many := make([]chaosFacts, 2*chaosMaxProblems)
	for i := range many {
		many[i] = goodFacts()
		many[i].Events = 0
	}
	if v := evaluateChaos(many); len(v.Problems) != chaosMaxProblems || v.ProblemDevices != len(many) {
		t.Errorf("%d problems listed for %d devices, want the first %d", len(v.Problems), v.ProblemDevices, chaosMaxProblems)
	}
}

func TestOwnerPID(t *testing.T) {
	tests := []struct {
		owner string
		pid   int
		ok    bool
	}{
		{"host-1234-0a1b2c3d/17", 1234, true},
		{"my-build-host-99-ffff/1", 99, true},
		{"p1/3", 0, false},               // a named instance (--instance)
		{"host-1234-0a1b2c3d", 0, false}, // no sequence: not a lease owner
		{"host-x-0a1b/1", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		pid, ok := ownerPID(tt.owner)
		if pid != tt.pid || ok != tt.ok {
			t.Errorf("ownerPID(%q) = %d, %v; want %d, %v", tt.owner, pid, ok, tt.pid, tt.ok)
		}
	}
}

// fakeDevice changes state on demand and wakes Changed like firmware.Device.
type fakeDevice struct {
	uuid    amt.UUID
	mu      sync.Mutex
	state   amt.ProvisioningState
	changed chan struct{}
}

func (d *fakeDevice) UUID() amt.UUID { return d.uuid }

func (d *fakeDevice) State() amt.ProvisioningState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state
}

func (d *fakeDevice) Changed() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.changed
}

func (d *fakeDevice) set(s amt.ProvisioningState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state = s
	close(d.changed)
	d.changed = make(chan struct{})
}

func TestPostWatcher(t *testing.T) {
	mk := func(b byte, s amt.ProvisioningState) *fakeDevice {
		var u amt.UUID
		u[0] = b
		return &fakeDevice{uuid: u, state: s, changed: make(chan struct{})}
	}
	once, twice, never, already := mk(1, amt.InProvisioning), mk(2, amt.InProvisioning), mk(3, amt.InProvisioning), mk(4, amt.PostProvisioning)
	w := watchPost(context.Background(), []watchedDevice{once, twice, never, already})
	defer w.stop()
	transitions := func(d *fakeDevice, in, out int) func() bool {
		return func() bool { e, l := w.transitions(d.uuid.String()); return e == in && l == out }
	}
	waitFor(t, "the device already post counts as entered", transitions(already, 1, 0))
	once.set(amt.PostProvisioning)
	waitFor(t, "once: entered", transitions(once, 1, 0))
	twice.set(amt.PostProvisioning)
	waitFor(t, "twice: entered", transitions(twice, 1, 0))
	twice.set(amt.PreProvisioning) // unprovisioned
	waitFor(t, "twice: left", transitions(twice, 1, 1))
	twice.set(amt.InProvisioning)
	twice.set(amt.PostProvisioning)
	waitFor(t, "twice: entered again", transitions(twice, 2, 1))
	never.set(amt.PreProvisioning)
	if w.postCount() != 3 {
		t.Errorf("post count %d, want 3", w.postCount())
	}
	if e, l := w.transitions(never.uuid.String()); e != 0 || l != 0 {
		t.Errorf("never: %d in, %d out; want 0 0", e, l)
	}
	// The ground truth: each device's first entry, kept through leaving
	// and re-entering; allPost waits for the last device.
	first := w.firstPost()
	if w.everPost() != 3 || len(first) != 3 || first[never.uuid.String()] != (time.Time{}) {
		t.Errorf("first entries %v (%d), want once, twice and already", first, w.everPost())
	}
	select {
	case <-w.allPost:
		t.Fatal("allPost closed with a device never post")
	default:
	}
	never.set(amt.PostProvisioning)
	waitFor(t, "every device post once", func() bool {
		select {
		case <-w.allPost:
			return true
		default:
			return false
		}
	})
	if got := w.firstPost()[twice.uuid.String()]; !got.Equal(first[twice.uuid.String()]) {
		t.Errorf("twice's first entry moved from %v to %v", first[twice.uuid.String()], got)
	}
}

func TestBenchCollectorSucceededEvents(t *testing.T) {
	const a, b = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
	col := newBenchCollector(2)
	ok := func(uuid, id string) {
		e, err := events.New("/test", &events.Provisioning{Event: events.ProvisioningSucceeded, UUID: uuid, At: time.Now()}, id)
		if err != nil {
			t.Fatal(err)
		}
		col.add(e.Topic, e.Headers(), e.Data)
	}
	ok(a, "ev-a")
	ok(a, "ev-a") // the same event delivered again
	select {
	case <-col.allOK:
		t.Fatal("allOK with one device not succeeded")
	default:
	}
	ok(b, "ev-b1")
	ok(b, "ev-b2") // a second, different succeeded event
	select {
	case <-col.allOK:
	default:
		t.Fatal("allOK not closed once every device succeeded")
	}
	for _, tt := range []struct {
		uuid           string
		distinct, more int
	}{{a, 1, 1}, {b, 2, 0}, {"33333333-3333-3333-3333-333333333333", 0, 0}} {
		if d, r := col.succeededEvents(tt.uuid); d != tt.distinct || r != tt.more {
			t.Errorf("%s: %d distinct, %d redelivered; want %d, %d", tt.uuid, d, r, tt.distinct, tt.more)
		}
	}
	if got := slices.Sorted(maps.Keys(col.okIDs)); !slices.Equal(got, []string{a, b}) {
		t.Errorf("devices with succeeded events %v", got)
	}
}

// TestChaosReplacedUsage: a killed process drops out of the end-of-run
// reading, its usage up to the kill and its successor's (this process
// here) are added, and the replica count stays.
// spin is written by busy loops so that the compiler keeps them.
var spin int

func TestChaosReplacedUsage(t *testing.T) {
	c := &benchChaos{}
	c.rep.Kills = []benchKill{{Process: "provisioner-1", Service: "provisioner", PID: 111, NewPID: os.Getpid(),
		usage: procUsage{CPUSeconds: 2, PeakRSSMB: 1e6}, usageOK: true}}
	procs := []benchProc{{service: "provisioner", pid: 111}, {service: "provisioner", pid: 222}, {service: "nats", pid: 111}}
	if got, want := c.withoutKilled(procs), []benchProc{{service: "provisioner", pid: 222}, {service: "nats", pid: 111}}; !slices.Equal(got, want) {
		t.Errorf("withoutKilled = %v, want %v", got, want)
	}
	if len(procs) != 3 {
		t.Errorf("withoutKilled changed its argument: %v", procs)
	}
	// The successor is this process: it must have used some CPU (in
	// /proc's clock ticks) for its own share to count, which a test run
	// alone has not always done yet.
	for deadline := time.Now().Add(10 * time.Second); ; {
		u, _, err := readProcUsage("/proc", os.Getpid(), false)
		if err != nil {
			t.Fatal(err)
		}
		if u.CPUSeconds > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("this process used no CPU time in 10 s")
		}
		for i := 0; i < 1e6; i++ {
			spin += i
		}
	}
	after := map[string]svcUsage{"provisioner": {CPUSeconds: 1, PeakRSSMB: 10, procs: 1}}
	c.addReplacedUsage(after, slog.New(slog.DiscardHandler))
	s := after["provisioner"]
	if s.procs != 2 || s.CPUSeconds <= 3 || s.PeakRSSMB != 1e6 {
		t.Errorf("provisioner usage %+v: want 2 processes, more than 1+2 CPU seconds (the successor's own), peak 1e6 MB", s)
	}
}

func TestUpExits(t *testing.T) {
	start := time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC)
	log := `{"time":"2026-11-26T22:00:10Z","level":"ERROR","msg":"process exited unexpectedly","service":"amtprov-up","process":"nats-2","err":"signal: killed","ran":"1m2s","log":"/x/logs/nats-2.log"}
{"time":"2026-11-26T22:00:11.5Z","level":"WARN","msg":"process restarted","service":"amtprov-up","process":"nats-2","pid":42}
{"time":"2026-11-26T22:00:12.25Z","level":"ERROR","msg":"process exited unexpectedly","service":"amtprov-up","process":"provisioner-1","err":"exit status 1","ran":"800ms"}
{"time":"2026-11-26T22:00:13Z","level":"ERROR","msg":"process exited unexpectedly","service":"amtprov-up","process":"inv
`
	path := filepath.Join(t.TempDir(), "amtprov-up.log")
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := upExits(path, start)
	if err != nil {
		t.Fatal(err)
	}
	want := []benchExit{
		{Process: "nats-2", AtS: 10, Err: "signal: killed", Ran: "1m2s"},
		{Process: "provisioner-1", AtS: 12.25, Err: "exit status 1", Ran: "800ms"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("upExits = %+v, want %+v", got, want)
	}
	if _, err := upExits(filepath.Join(t.TempDir(), "missing.log"), start); err == nil {
		t.Error("a missing log: no error")
	}
}
