package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/services/certauthority"
	"github.com/amtprov/amtprov/services/provisioner"
	"github.com/amtprov/amtprov/tools/amtsim"
)

// Bounds of a cluster run's start and stop.
const (
	benchClusterReady = 5 * time.Minute
	benchClusterStop  = 90 * time.Second
)

// benchCluster starts `amtprov up` with c.Provisioners provisioner
// replicas in a fresh run directory, does what an operator does before
// devices can be provisioned (a development domain for the simulator's
// suffix, a default profile), runs the simulated fleet in this process
// against the cluster's hello listener and measures every process of the
// cluster from /proc.
func benchCluster(ctx context.Context, o benchOptions, c benchConfig, r *benchRun, log *slog.Logger) error {
	dir, cleanup, err := benchDataDir(o)
	if err != nil {
		return err
	}
	defer cleanup()
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the amtprov executable: %w", err)
	}
	args := []string{"up", "--dir", dir, "--provisioner", strconv.Itoa(c.Provisioners), "--log-level", o.logLevel,
		"--ready-timeout", "3m"}
	if o.binDir != "" {
		args = append(args, "--bin-dir", o.binDir)
	}
	if o.deployDir != "" {
		args = append(args, "--deploy-dir", o.deployDir)
	}
	if o.inventory != 1 {
		args = append(args, "--inventory", strconv.Itoa(o.inventory))
	}
	// up passes its environment on to the services.
	env := []string{"DATABASE_URL="}
	if c.Workers > 0 {
		env = append(env, "PROVISIONER_WORKERS="+strconv.Itoa(c.Workers))
	}
	if o.lease > 0 {
		env = append(env, "PROVISIONER_LEASE="+o.lease.String(), "PROVISIONER_ACK_WAIT="+(o.lease/2).String())
	}
	up, err := startUpProc("amtprov-up", exe, args, env, dir)
	if err != nil {
		return err
	}
	var state upState
	defer func() {
		// up stops its processes on SIGTERM; anything left of a process
		// group it started is killed after it.
		if err := up.stop(benchClusterStop); err != nil {
			log.Warn("bench: stop the cluster", "err", err)
		}
		for _, p := range state.Processes {
			_ = syscall.Kill(-p.PID, syscall.SIGKILL)
		}
	}()
	state, err = waitUpState(ctx, up, dir, benchClusterReady, "readiness", nil)
	if err != nil {
		return err
	}
	var hello string
	procs := []benchProc{{service: "amtsim", pid: os.Getpid()}}
	for _, p := range state.Processes {
		procs = append(procs, benchProc{service: p.Service, pid: p.PID})
		if p.Hello != "" && hello == "" {
			hello = p.Hello
		}
	}
	if hello == "" {
		return errors.New("the cluster has no hello-listener (is its binary built? make build)")
	}
	if pg, err := postmasterPID(filepath.Join(dir, "pg")); err == nil {
		procs = append(procs, benchProc{service: "postgres", pid: pg, tree: true})
	} else {
		log.Warn("bench: PostgreSQL not measured", "err", err)
	}

	opsURL, err := os.ReadFile(filepath.Join(state.NATSURLDir, natsUserOps+".url"))
	if err != nil {
		return fmt.Errorf("cluster NATS credentials: %w", err)
	}
	nc, err := bus.Connect(ctx, bus.Config{URL: strings.TrimSpace(string(opsURL)), Name: "amtprov-bench"}, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	actx := admin.WithActor(ctx, "amtprov-bench")
	var dom certauthority.Domain
	if err := admin.Call(actx, nc, admin.Subject(admin.AreaDomain, certauthority.VerbDomainCreateDev),
		certauthority.CreateDevDomainRequest{Suffix: amtsim.DefaultDNSSuffix}, &dom); err != nil {
		return fmt.Errorf("create the development provisioning domain: %w", err)
	}
	trust, err := benchTrust(dom.RootSHA256)
	if err != nil {
		return err
	}
	var prof provisioner.Profile
	if err := admin.Call(actx, nc, provisioner.SubjectProfileCreate, provisioner.ProfileCreateRequest{
		Name: "bench", Default: true, Settings: provisioner.ProfileSettings{SOL: true, IDER: true, KVM: true},
	}, &prof); err != nil {
		return fmt.Errorf("create the default profile: %w", err)
	}

	base, err := netip.ParseAddr(o.simBase)
	if err != nil {
		return fmt.Errorf("--sim-base: %w", err)
	}
	fleet, err := amtsim.Start(ctx, amtsim.Options{
		Devices:         o.devices,
		Seed:            1,
		Base:            base,
		Range:           netip.PrefixFrom(base, 16).Masked(),
		ProvisionServer: hello,
		TrustHashes:     trust,
		Latency:         c.Latency,
		HelloSpread:     o.helloSpread,
		Logger:          log.With("component", "amtsim"),
	})
	if err != nil {
		return fmt.Errorf("simulator: %w", err)
	}
	defer func() {
		if err := fleet.Close(); err != nil {
			log.Warn("bench: stop the simulator", "err", err)
		}
	}()
	var chaos *benchChaos
	if o.chaos {
		chaos, err = newBenchChaos(ctx, o, dir, up, nc, js, fleet.Devices(), log)
		if err != nil {
			return err
		}
		defer chaos.close()
	}
	return benchMeasure(ctx, o, js, fleet, procs, r, chaos, log)
}

// waitUpState polls up's state file until it reads and until accepts it
// (nil: as soon as it reads; up writes it right before its ready line).
// want names what is awaited, for the error when up exits first or timeout
// passes; when ctx ends the error is ctx's.
func waitUpState(ctx context.Context, up *upProc, dir string, timeout time.Duration, want string, until func(upState) bool) (upState, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		// A file that is missing or does not parse yet: poll on.
		st, err := readUpState(dir)
		if err == nil && (until == nil || until(st)) {
			return st, nil
		}
		select {
		case <-up.done:
			return st, fmt.Errorf("amtprov up exited while waiting for %s: %w\n%s", want, up.exitErr(), up.logTail())
		case <-deadline.C:
			return st, fmt.Errorf("amtprov up: no %s within %s\n%s", want, timeout, up.logTail())
		case <-ctx.Done():
			return st, ctx.Err()
		case <-tick.C:
		}
	}
}
