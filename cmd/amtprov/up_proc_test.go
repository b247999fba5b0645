//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// groupMembers lists the live (not zombie) processes of process group
// pgid, from /proc; without /proc it asks kill(2) and cannot tell zombies,
// which a container's init may never reap.
func groupMembers(pgid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	if len(stats) == 0 {
		if errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH) {
			return nil
		}
		return []int{pgid}
	}
	var out []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) < 3 || fields[0] == "Z" || fields[0] == "X" {
			continue
		}
		if pg, _ := strconv.Atoi(fields[2]); pg == pgid {
			pid, _ := strconv.Atoi(strings.Fields(string(b))[0])
			out = append(out, pid)
		}
	}
	return out
}

// waitGroupGone polls until no live process of group pgid is left.
func waitGroupGone(t *testing.T, pgid int, timeout time.Duration) []int {
	t.Helper()
	deadline := time.After(timeout)
	for {
		left := groupMembers(pgid)
		if len(left) == 0 {
			return nil
		}
		select {
		case <-deadline:
			return left
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startShell starts sh running script (which prints the pid of a
// background child, or any number, as its first line) and returns the proc
// and that number.
func startShell(t *testing.T, script string) (*upProc, int) {
	t.Helper()
	dir := t.TempDir()
	p, err := startUpProc("sh", "/bin/sh", []string{"-c", script}, nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = signalGroup(p.pid(), syscall.SIGKILL) })
	deadline := time.After(5 * time.Second)
	exited := false
	for {
		b, _ := os.ReadFile(p.logPath)
		if line, _, ok := strings.Cut(string(b), "\n"); ok {
			child, err := strconv.Atoi(strings.TrimSpace(line))
			if err != nil {
				t.Fatalf("script printed %q", line)
			}
			return p, child
		}
		if exited {
			t.Fatalf("script exited without printing: %s", p.logTail())
		}
		select {
		case <-p.done:
			exited = true // read its output once more
		case <-deadline:
			t.Fatal("script printed nothing within 5s")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestUpProcStopTakesTheWholeGroup(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		grace   time.Duration
		wantErr bool // killed after the grace period
	}{
		{"exits on SIGTERM", `sleep 60 & echo $!; wait`, 10 * time.Second, false},
		{"ignores SIGTERM", `trap "" TERM; sleep 60 & echo $!; while :; do sleep 1; done`, 300 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, child := startShell(t, tt.script)
			err := p.stop(tt.grace)
			if (err != nil) != tt.wantErr {
				t.Fatalf("stop: %v, want error %v", err, tt.wantErr)
			}
			if left := waitGroupGone(t, p.pid(), 5*time.Second); len(left) > 0 {
				t.Errorf("process group %d still has live members %v after stop (background child %d)", p.pid(), left, child)
			}
			select {
			case <-p.stopped:
			default:
				t.Error("stopped not closed: an expected exit would be reported as a crash")
			}
		})
	}
}

func TestUpProcWaitHTTP(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Swap(true) { // the first answer is "not ready", the next one ready
			http.Error(w, "database: not yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready")
	}))
	t.Cleanup(srv.Close)
	p, _ := startShell(t, `sleep 60 & echo $!; wait`)
	if err := p.waitHTTP(context.Background(), srv.URL, 10*time.Second); err != nil {
		t.Fatalf("waitHTTP on a server that becomes ready: %v", err)
	}

	// A process that dies while being waited for is reported at once, with
	// the end of its log.
	dead, _ := startShell(t, `echo 1; echo "fatal: bad config" >&2; exit 3`)
	start := time.Now()
	err := dead.waitHTTP(context.Background(), "http://127.0.0.1:1/readyz", time.Minute)
	if !errors.Is(err, errUpProcExited) || !strings.Contains(err.Error(), "fatal: bad config") {
		t.Fatalf("waitHTTP on a dead process: %v, want errUpProcExited with its log", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("waitHTTP took %s to notice the exit", time.Since(start))
	}
}

func TestUpPlanSkipsMissingServicesUnlessAsked(t *testing.T) {
	bin := t.TempDir()
	for _, b := range []string{"nats-server", "jaeger", "inventory"} {
		if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := func(explicit ...string) upOptions {
		o := upOptions{replicas: map[string]*int{}, explicit: map[string]bool{}}
		for _, s := range upServices() {
			n := 1
			o.replicas[s.name] = &n
		}
		for _, e := range explicit {
			o.explicit[e] = true
		}
		return o
	}
	r := &upRun{log: slog.New(slog.DiscardHandler), o: opts()}
	got, err := r.plan(bin)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].name != "inventory" {
		t.Errorf("plan = %v, want only inventory (the only service binary)", got)
	}
	r.o = opts("provisioner")
	if _, err := r.plan(bin); err == nil || !strings.Contains(err.Error(), "provisioner not found") {
		t.Errorf("plan with --provisioner given and no binary: %v, want an error", err)
	}
	if err := os.Remove(filepath.Join(bin, "jaeger")); err != nil {
		t.Fatal(err)
	}
	r.o = opts()
	if _, err := r.plan(bin); err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Errorf("plan without jaeger: %v, want a hint to run make tools", err)
	}
}

func TestUpRestartsAProcessThatDies(t *testing.T) {
	r := &upRun{log: slog.New(slog.DiscardHandler), o: upOptions{restart: true, stopTimeout: 5 * time.Second}}
	r.state.Dir = t.TempDir()
	g := &upGroup{}
	t.Cleanup(func() { _ = g.stop(time.Second) })
	p, _ := startShell(t, `echo 1; exec sleep 60`)
	r.track(g, p, "test", "", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { r.supervise(ctx, p, g); close(done) }()

	// kill -9: it comes back as a new process, recorded in up.json.
	if err := syscall.Kill(p.pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var next *upProc
	deadline := time.After(15 * time.Second)
	for next == nil {
		g.mu.Lock()
		if g.procs[0] != p {
			next = g.procs[0]
		}
		g.mu.Unlock()
		select {
		case <-deadline:
			t.Fatal("the killed process was not restarted within 15s")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if len(groupMembers(next.pid())) == 0 {
		t.Fatalf("restarted process %d is not running: %s", next.pid(), next.logTail())
	}
	var st upState
	b, err := os.ReadFile(filepath.Join(r.state.Dir, upStateFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil || len(st.Processes) != 1 || st.Processes[0].PID != next.pid() {
		t.Errorf("%s after the restart: %+v (%v), want pid %d", upStateFile, st.Processes, err, next.pid())
	}

	// Stopped on purpose: not restarted, and the supervisor ends.
	if err := g.stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("supervisor still running after the group was stopped")
	}
	g.mu.Lock()
	last := g.procs[0]
	g.mu.Unlock()
	if last != next {
		t.Error("a process stopped on purpose was restarted")
	}
	if left := waitGroupGone(t, next.pid(), 5*time.Second); len(left) > 0 {
		t.Errorf("restarted process group still has %v after stop", left)
	}
}
