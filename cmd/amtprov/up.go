package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/libs/service"
	"github.com/amtprov/amtprov/libs/store/pglocal"
	"github.com/amtprov/amtprov/libs/telemetry"
)

// upOptions are the flags of `amtprov up`.
type upOptions struct {
	replicas     map[string]*int // per service (upServices)
	explicit     map[string]bool // replica counts given on the command line
	dir          string
	binDir       string
	deployDir    string
	databaseURL  string
	natsNodes    int
	logLevel     string
	readyTimeout time.Duration
	stopTimeout  time.Duration
	restart      bool
}

// Files written into --dir once everything is ready: upStateFile for tests
// and scripts (see upState), upTargetsFile for Prometheus (file_sd_configs).
const (
	upStateFile   = "up.json"
	upTargetsFile = "prometheus-targets.json"
)

func newUpCmd(g *globals) *cobra.Command {
	o := upOptions{replicas: map[string]*int{}, explicit: map[string]bool{}}
	cmd := &cobra.Command{
		Use:   "up [--provisioner N --inventory N --hello-listener N --certauthority N --discovery N] [--dir D]",
		Short: "Run a local production-shaped cluster: 3 NATS nodes, PostgreSQL, Jaeger and every service as separate processes",
		Long: `up starts, as separate processes on loopback: a 3-node NATS cluster (stream AMT
with 3 replicas, users and permissions from deploy/nats), a private PostgreSQL,
Jaeger (deploy/jaeger, in memory) and N replicas of each service, each with its
own NATS user and its traces sent to Jaeger. It prints one line
"amtprov up ready ..." when every /readyz answers, and on SIGINT or SIGTERM stops
everything in the reverse order. A process that exits on its own is started
again (--restart). Binaries come from --bin-dir (make build, make tools). A
service whose binary is missing is skipped unless its replica count was given
explicitly. See docs/operations.md.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			for name, n := range o.replicas {
				if *n < 0 {
					return fmt.Errorf("%w: --%s must be >= 0", service.ErrUsage, name)
				}
				o.explicit[name] = cmd.Flags().Changed(name)
			}
			if o.natsNodes < 1 {
				return fmt.Errorf("%w: --nats-nodes must be >= 1", service.ErrUsage)
			}
			return runUp(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	for _, s := range upServices() {
		o.replicas[s.name] = f.Int(s.name, 1, "replicas of "+s.name)
	}
	f.StringVar(&o.dir, "dir", defaultUpDir(), "run directory: NATS stores, PostgreSQL, logs, credentials, "+upStateFile)
	f.StringVar(&o.binDir, "bin-dir", "", "directory of the service, nats-server and jaeger binaries (default: this executable's directory)")
	f.StringVar(&o.deployDir, "deploy-dir", "", "the repository's deploy/ directory (default: next to the bin dir, else ./deploy)")
	f.StringVar(&o.databaseURL, "database-url", "", "use this PostgreSQL instead of a private one under --dir")
	f.IntVar(&o.natsNodes, "nats-nodes", 3, "NATS cluster size (also the AMT stream's replicas)")
	f.StringVar(&o.logLevel, "log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error (also given to the services)")
	f.DurationVar(&o.readyTimeout, "ready-timeout", 2*time.Minute, "how long each process may take to become ready")
	f.DurationVar(&o.stopTimeout, "stop-timeout", 30*time.Second, "how long each process may take to stop after SIGTERM before it is killed")
	f.BoolVar(&o.restart, "restart", true, "start a process again when it exits on its own (backoff 1s to 30s)")
	return cmd
}

func defaultUpDir() string {
	return filepath.Join(filepath.Dir(defaultDataDir()), "up")
}

// upState describes a running cluster; written to --dir/up.json.
type upState struct {
	Dir         string       `json:"dir"`
	NATS        []string     `json:"nats"`         // client URLs, no credentials
	NATSMonitor []string     `json:"nats_monitor"` // http://host:port of each node's monitoring
	NATSURLDir  string       `json:"nats_url_dir"` // <user>.url files with credentials (0600)
	Postgres    string       `json:"postgres"`
	JaegerQuery string       `json:"jaeger_query"`
	JaegerOTLP  string       `json:"jaeger_otlp"`
	Processes   []upInstance `json:"processes"`
}

// upInstance is one process of the cluster.
type upInstance struct {
	Name    string `json:"name"`    // e.g. provisioner-2, nats-1, jaeger
	Service string `json:"service"` // the service (or nats, jaeger)
	PID     int    `json:"pid"`     // also its process group id
	Ops     string `json:"ops,omitempty"`
	Hello   string `json:"hello,omitempty"`
	Log     string `json:"log"`
}

// upRun is a cluster being started or run: what to stop, in order.
type upRun struct {
	log     *slog.Logger
	o       upOptions
	state   upState
	mu      sync.Mutex
	stops   []upStop
	started []upStarted
}

// upStop stops one stage (all the replicas of a service, the NATS cluster,
// PostgreSQL ...); stages stop in the reverse order of their start.
type upStop struct {
	name string
	fn   func(context.Context) error
}

func (r *upRun) onStop(name string, fn func(context.Context) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stops = append(r.stops, upStop{name, fn})
}

// track records a started process of group g.
func (r *upRun) track(g *upGroup, p *upProc, service, ops, hello string) {
	g.add(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started = append(r.started, upStarted{p, g})
	r.state.Processes = append(r.state.Processes, upInstance{Name: p.name, Service: service, PID: p.pid(), Ops: ops, Hello: hello, Log: p.logPath})
}

// upStarted is a process and the group it belongs to.
type upStarted struct {
	p *upProc
	g *upGroup
}

// stopAll runs the stop stages in reverse order and returns every error.
func (r *upRun) stopAll(ctx context.Context) error {
	r.mu.Lock()
	stops := r.stops
	r.stops = nil
	r.mu.Unlock()
	var errs []error
	for i := len(stops) - 1; i >= 0; i-- {
		s := stops[i]
		start := time.Now()
		if err := s.fn(ctx); err != nil {
			errs = append(errs, err)
			r.log.Error("stop failed", "stage", s.name, "err", err)
			continue
		}
		r.log.Info("stopped", "stage", s.name, "took", time.Since(start).Round(time.Millisecond).String())
	}
	return errors.Join(errs...)
}

func runUp(ctx context.Context, g *globals, o upOptions) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level: %v", service.ErrUsage, err)
	}
	log := telemetry.NewLogger(g.err, "amtprov-up", level)
	r := &upRun{log: log, o: o}
	err := r.start(ctx)
	if err == nil {
		err = r.announce(g)
	}
	if err != nil {
		return errors.Join(err, r.stopAll(context.WithoutCancel(ctx)))
	}
	r.watch(ctx)
	<-ctx.Done()
	log.Info("signal received; stopping the cluster")
	if err := r.stopAll(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("amtprov up: stop: %w", err)
	}
	fmt.Fprintln(g.out, "amtprov up stopped")
	return nil
}

// start brings everything up in dependency order: NATS, PostgreSQL,
// Jaeger, then the services in upServices order. Each stage registers its
// stop right after it starts, so a failure half-way still cleans up.
func (r *upRun) start(ctx context.Context) error {
	o := r.o
	binDir, deployDir, err := upPaths(o.binDir, o.deployDir)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	// The run dir stays world-searchable: the private PostgreSQL runs as
	// the postgres user when amtprov runs as root. What is private (logs,
	// credentials, keys) lives in 0700 subdirectories.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	logDir := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	r.state.Dir = dir
	services, err := r.plan(binDir)
	if err != nil {
		return err
	}

	// NATS: a cluster of separate nats-server processes, every user with a
	// fresh password, the AMT stream replicated on every node.
	users := []string{natsUserOps, natsUserCLI, natsUserSys}
	for _, s := range upServices() {
		users = append(users, s.name)
	}
	passwords, err := newNATSPasswords(users)
	if err != nil {
		return err
	}
	natsGroup := &upGroup{}
	r.onStop("nats", func(context.Context) error { return natsGroup.stop(o.stopTimeout) })
	nats, err := startNATSCluster(ctx, filepath.Join(binDir, "nats-server"), filepath.Join(deployDir, "nats", "cluster.conf"),
		filepath.Join(dir, "nats"), logDir, o.natsNodes, passwords, o.readyTimeout, func(p *upProc) {
			r.track(natsGroup, p, "nats", "", "")
		})
	if err != nil {
		return fmt.Errorf("NATS cluster: %w", err)
	}
	for _, n := range nats.nodes {
		r.state.NATSMonitor = append(r.state.NATSMonitor, "http://"+n.monitor)
	}
	r.state.NATS = strings.Split(nats.publicURLs(), ",")
	if err := ensureReplicatedStream(ctx, nats, o.natsNodes, o.readyTimeout, r.log); err != nil {
		return err
	}
	r.state.NATSURLDir = filepath.Join(dir, "credentials")
	if err := writeNATSURLFiles(r.state.NATSURLDir, nats, []string{natsUserOps, natsUserCLI}); err != nil {
		return err
	}

	// PostgreSQL: private, under the run dir, unless --database-url.
	dbURL := o.databaseURL
	if dbURL == "" {
		url, stop, err := pglocal.Start(ctx, filepath.Join(dir, "pg"), r.log)
		if err != nil {
			return err
		}
		r.onStop("postgres", stop)
		dbURL = url
	}
	r.state.Postgres = redactURL(dbURL)

	// Jaeger, in memory, on loopback.
	jaegerGroup := &upGroup{}
	r.onStop("jaeger", func(context.Context) error { return jaegerGroup.stop(o.stopTimeout) })
	jaeger, err := startJaeger(ctx, filepath.Join(binDir, "jaeger"), filepath.Join(deployDir, "jaeger", "config.yaml"), logDir, o.readyTimeout,
		func(p *upProc) { r.track(jaegerGroup, p, "jaeger", "", "") })
	if err != nil {
		return fmt.Errorf("jaeger: %w", err)
	}
	r.state.JaegerQuery = "http://" + jaeger.queryHTTP
	r.state.JaegerOTLP = "http://" + jaeger.otlpHTTP

	// The keyring every service that stores secrets shares (this run's
	// development key, mode 0600).
	keyDir := filepath.Join(dir, "secrets")
	if _, err := secrets.DevKeyring(keyDir); err != nil {
		return err
	}

	// The services, each replica its own process.
	common := []string{
		"AMT_STREAM_REPLICAS=" + fmt.Sprint(o.natsNodes),
		"AMT_WORK_REPLICAS=" + fmt.Sprint(o.natsNodes),
		"NATS_CREDS=", "NATS_CA=", "NATS_CERT=", "NATS_KEY=",
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + jaeger.otlpHTTP,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_BSP_SCHEDULE_DELAY=500",
		"LOG_LEVEL=" + o.logLevel,
		// Cleared unless the table row asks for them (below): a service
		// gets only the database and keys it needs.
		"DATABASE_URL=",
		"AMTPROV_SECRET_KEYS=",
		"AMTPROV_SECRET_KEYS_FILE=",
	}
	type waiting struct {
		p   *upProc
		url string
	}
	var wait []waiting
	for _, s := range services {
		n := *o.replicas[s.name]
		group := &upGroup{}
		r.onStop(s.name, func(context.Context) error { return group.stop(o.stopTimeout) })
		for i := 1; i <= n; i++ {
			addrs, err := freeAddrs("127.0.0.1", 2)
			if err != nil {
				return err
			}
			ops, hello := addrs[0], ""
			env := append([]string(nil), common...)
			env = append(env,
				"NATS_URL="+nats.clientURLs(s.name),
				"OTEL_SERVICE_NAME="+s.name,
				fmt.Sprintf("OTEL_RESOURCE_ATTRIBUTES=service.instance.id=%s-%d", s.name, i),
				s.opsEnv+"="+ops,
			)
			if s.db {
				env = append(env, "DATABASE_URL="+dbURL)
			}
			if s.secrets {
				env = append(env, "AMTPROV_SECRET_KEYS_FILE="+filepath.Join(keyDir, secrets.DevKeyFile))
			}
			if s.hello {
				hello = addrs[1]
				env = append(env, "HELLO_ADDR="+hello)
			}
			name := fmt.Sprintf("%s-%d", s.name, i)
			p, err := startUpProc(name, filepath.Join(binDir, s.name), nil, env, logDir)
			if err != nil {
				return err
			}
			r.track(group, p, s.name, "http://"+ops, hello)
			wait = append(wait, waiting{p, "http://" + ops + "/readyz"})
		}
	}
	for _, w := range wait {
		if err := w.p.waitHTTP(ctx, w.url, o.readyTimeout); err != nil {
			return err
		}
	}
	return nil
}

// plan checks the binaries and returns the services to start: a service
// whose binary is missing is skipped with a warning, unless its replica
// count was given on the command line.
func (r *upRun) plan(binDir string) ([]upService, error) {
	for _, b := range []string{"nats-server", "jaeger"} {
		if !isExecutable(filepath.Join(binDir, b)) {
			return nil, fmt.Errorf("%s not found in %s: run `make tools` (builds tools/nats-server and tools/jaeger)", b, binDir)
		}
	}
	var out []upService
	for _, s := range upServices() {
		if *r.o.replicas[s.name] == 0 {
			continue
		}
		if !isExecutable(filepath.Join(binDir, s.name)) {
			if r.o.explicit[s.name] {
				return nil, fmt.Errorf("%s not found in %s: run `make build`", s.name, binDir)
			}
			r.log.Warn("service binary not found; not starting it", "binary", s.name, "bin_dir", binDir)
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// writeState writes up.json (atomically: readers never see half a file).
func (r *upRun) writeState() error {
	r.mu.Lock()
	b, err := json.MarshalIndent(r.state, "", "  ")
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode %s: %w", upStateFile, err)
	}
	path := filepath.Join(r.state.Dir, upStateFile)
	if err := os.WriteFile(path+".tmp", append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", upStateFile, err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("write %s: %w", upStateFile, err)
	}
	return nil
}

// announce writes up.json and prints the ready line.
func (r *upRun) announce(g *globals) error {
	if err := r.writeState(); err != nil {
		return err
	}
	if err := writePromTargets(filepath.Join(r.state.Dir, upTargetsFile), r.state.Processes); err != nil {
		return err
	}
	var hellos, apis []string
	counts := map[string]int{}
	for _, p := range r.state.Processes {
		counts[p.Service]++
		if p.Hello != "" {
			hellos = append(hellos, p.Hello)
		}
		if p.Service == "inventory" {
			apis = append(apis, p.Ops)
		}
	}
	var replicas []string
	for _, s := range upServices() {
		replicas = append(replicas, fmt.Sprintf("%s=%d", s.name, counts[s.name]))
	}
	fmt.Fprintf(g.out, "amtprov up ready hello=%s api=%s nats=%s jaeger=%s postgres=%s replicas=%s dir=%s\n",
		strings.Join(hellos, ","), strings.Join(apis, ","), strings.Join(r.state.NATS, ","), r.state.JaegerQuery,
		r.state.Postgres, strings.Join(replicas, ","), r.state.Dir)
	return nil
}

// watch supervises every process while the cluster runs: one that exits on
// its own is logged and, with --restart, started again (same command,
// ports and store; backoff from 1 s to 30 s while it keeps crashing). The
// others keep running, so killing a replica or a NATS node on purpose is how
// failover is tried.
func (r *upRun) watch(ctx context.Context) {
	r.mu.Lock()
	started := append([]upStarted(nil), r.started...)
	r.mu.Unlock()
	for _, s := range started {
		go r.supervise(ctx, s.p, s.g)
	}
}

// upMsgExited is the message supervise logs when a process exits on its
// own; bench --chaos reads these records back from up's log (upExits).
const upMsgExited = "process exited unexpectedly"

const (
	upRestartMin = time.Second
	upRestartMax = 30 * time.Second
)

func (r *upRun) supervise(ctx context.Context, p *upProc, g *upGroup) {
	delay := upRestartMin
	for {
		select {
		case <-p.done:
		case <-ctx.Done():
			return
		}
		select {
		case <-p.stopped:
			return // stopped on purpose
		default:
		}
		r.log.Error(upMsgExited, "process", p.name, "err", p.exitErr(), "ran", time.Since(p.started).Round(time.Millisecond).String(), "log", p.logPath)
		if !r.o.restart {
			return
		}
		if time.Since(p.started) > upRestartMax {
			delay = upRestartMin // it ran a while: not a crash loop
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		delay = min(2*delay, upRestartMax)
		next, err := p.restart()
		if err != nil {
			r.log.Error("restart failed; giving up on this process", "process", p.name, "err", err)
			return
		}
		if !g.replace(p, next) {
			_ = next.stop(r.o.stopTimeout) // the cluster is stopping
			return
		}
		r.mu.Lock()
		for i := range r.state.Processes {
			if r.state.Processes[i].Name == p.name {
				r.state.Processes[i].PID = next.pid()
			}
		}
		r.mu.Unlock()
		if err := r.writeState(); err != nil {
			r.log.Error("update state file", "err", err)
		}
		r.log.Warn("process restarted", "process", next.name, "pid", next.pid())
		p = next
	}
}

// upPaths resolves the bin and deploy directories.
func upPaths(binDir, deployDir string) (string, string, error) {
	if binDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", "", fmt.Errorf("find bin dir: %w (give --bin-dir)", err)
		}
		binDir = filepath.Dir(exe)
	}
	if deployDir == "" {
		deployDir = filepath.Join(filepath.Dir(binDir), "deploy")
		if _, err := os.Stat(deployDir); err != nil {
			deployDir = "deploy"
		}
	}
	for _, d := range []*string{&binDir, &deployDir} {
		abs, err := filepath.Abs(*d)
		if err != nil {
			return "", "", err
		}
		*d = abs
	}
	if _, err := os.Stat(filepath.Join(deployDir, "nats", "cluster.conf")); err != nil {
		return "", "", fmt.Errorf("%w: no nats/cluster.conf in deploy dir %s (give --deploy-dir)", service.ErrUsage, deployDir)
	}
	return binDir, deployDir, nil
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// promTargetGroup is one entry of a Prometheus file_sd file.
type promTargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// writePromTargets writes every service process's /metrics address as a
// Prometheus file_sd target labelled with its service and instance.
func writePromTargets(path string, procs []upInstance) error {
	groups := []promTargetGroup{}
	for _, p := range procs {
		if p.Ops == "" {
			continue
		}
		groups = append(groups, promTargetGroup{
			Targets: []string{strings.TrimPrefix(p.Ops, "http://")},
			Labels:  map[string]string{"service": p.Service, "instance_name": p.Name},
		})
	}
	b, err := json.MarshalIndent(groups, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write Prometheus targets: %w", err)
	}
	return nil
}
