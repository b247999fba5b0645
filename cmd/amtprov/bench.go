package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/service"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/tools/amtsim"
)

// benchOptions are the flags of `amtprov bench` (INTERFACES.md).
type benchOptions struct {
	devices      int
	cluster      bool
	provisioners int
	workers      int
	latency      time.Duration
	helloSpread  time.Duration
	sweep        string
	out          string
	svg          string
	timeout      time.Duration
	sample       time.Duration
	simBase      string
	workDir      string
	binDir       string
	deployDir    string
	keep         bool
	logLevel     string
	progress     io.Writer     // progress lines (stderr)
	addReports   []string      // earlier --out files whose runs go first in this report and chart
	inventory    int           // inventory replicas (--cluster)
	lease        time.Duration // the provisioner's job lease (--cluster; 0: its default)
	chaos        bool          // kill -9 a NATS node, a provisioner and an inventory replica mid-run (bench_chaos.go)
	chaosAt      float64       // ... once this fraction of the fleet is provisioned
}

// benchEventGrace is how long a run waits, once the simulator says every
// device is provisioned, for the provisioning events on the stream.
const benchEventGrace = 30 * time.Second

// benchConfig is what varies between the runs of a sweep.
type benchConfig struct {
	Provisioners int           `json:"provisioners"`
	Workers      int           `json:"workers"` // 0: the provisioner's default
	Latency      time.Duration `json:"-"`
	LatencyMS    float64       `json:"latency_ms"`
}

// benchResult is the --json object of INTERFACES.md, exactly.
type benchResult struct {
	Devices         int                `json:"devices"`
	Provisioned     int                `json:"provisioned"`
	Failed          int                `json:"failed"`
	HellosPerS      float64            `json:"hellos_per_s"`
	ProvisionedPerS float64            `json:"provisioned_per_s"`
	LatencyMS       benchLatency       `json:"latency_ms"`
	CPUMSPerDevice  map[string]float64 `json:"cpu_ms_per_device"`
	PeakRSSMB       map[string]float64 `json:"peak_rss_mb"`
}

// benchRun is one run in the --out report: the contract object plus what
// it took to get it.
type benchRun struct {
	Label      string             `json:"label"`
	Mode       string             `json:"mode"` // in-process or cluster
	Config     benchConfig        `json:"config"`
	Result     benchResult        `json:"result"`
	Hellos     int                `json:"hellos"`      // hello events on the stream (repeats included)
	SpanS      float64            `json:"span_s"`      // first hello to last success
	ElapsedS   float64            `json:"elapsed_s"`   // bench clock, fleet start to last event
	CPUSeconds map[string]float64 `json:"cpu_seconds"` // per service, during the run
	Processes  map[string]int     `json:"processes"`   // processes measured per service
	SimPost    int                `json:"sim_post"`    // devices the simulator says are provisioned
	SimMaxConc int64              `json:"sim_max_concurrent_sessions"`
	Unparsed   int                `json:"unparsed_events"`
	Load1      [2]float64         `json:"load1"` // load average before and after the run
	Curve      []benchPoint       `json:"provisioned_over_time"`
	Lag        []benchLagSample   `json:"consumer_lag"`
	// Chaos is what --chaos killed, when the processes came back and
	// whether the end state was verified correct (bench_chaos.go).
	Chaos *benchChaosReport `json:"chaos,omitempty"`
	// EventsBehind says the figures come from the simulator because the
	// provisioning events had not reached the stream (see benchMeasure).
	EventsBehind string `json:"events_behind,omitempty"`
	Error        string `json:"error,omitempty"`
}

// benchReport is the --out file.
type benchReport struct {
	Command string     `json:"command"`
	Started time.Time  `json:"started"`
	Host    benchHost  `json:"host"`
	Runs    []benchRun `json:"runs"`
}

type benchHost struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go"`
	OS        string `json:"os"`
}

func newBenchCmd(g *globals) *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench --devices N [--cluster] [--provisioners K] [--workers W] [--latency D] [--sweep KEY=V1,V2,...]",
		Short: "End-to-end benchmark: a simulated fleet against the in-process system or the separate-process cluster",
		Long: `bench provisions a simulated fleet of N devices and reports hellos/s ingested,
devices provisioned/s, hello->provisioned latency percentiles (first hello
received_at to provisioning.succeeded at, read from the AMT stream), CPU
milliseconds per device and peak RSS per service, and the provisioner
consumer's lag over time.

In-process (default) the whole system runs in this process, as in
"amtprov dev"; CPU and RSS are then the process total, reported as
"amtprov" (simulator included), plus the private PostgreSQL as "postgres".
With --cluster each run starts "amtprov up" (separate processes, K
provisioner replicas) and measures every service process from /proc; the
simulator runs in this process and is reported as "amtsim".

--chaos (cluster only) sends SIGKILL to one NATS node, one provisioner
replica and one inventory replica once --chaos-at of the fleet is
provisioned, lets "amtprov up" restart them, and at the end verifies every
device: provisioned by the simulator's state, entered post-provisioning
once, one succeeded job, one successful commit step, one succeeded event,
and inventory rows equal to the simulator's; the report's "chaos" object
has the kills, restarts and verification, and any mismatch exits non-zero.
It needs --provisioners 2 --inventory 2 or more.

--sweep provisioners=1,2,4 (cluster only), workers=64,256 or
latency=10ms,30ms runs once per value; --json prints the result object
(an array of them for a sweep); --out writes the full report and --svg a
chart of devices provisioned over time, one line per run.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			runs, err := o.plan()
			if err != nil {
				return err
			}
			o.progress = g.err
			return runBench(cmd.Context(), g, o, runs)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.devices, "devices", 0, "simulated devices (required)")
	f.BoolVar(&o.cluster, "cluster", false, "run against the separate-process cluster (amtprov up) instead of in-process")
	f.IntVar(&o.provisioners, "provisioners", 1, "provisioner replicas (--cluster)")
	f.IntVar(&o.inventory, "inventory", 1, "inventory replicas (--cluster)")
	f.DurationVar(&o.lease, "lease", 0, "the provisioner's job lease, its ack wait half of it (--cluster; 0: the provisioner's defaults, 60s and 30s)")
	f.BoolVar(&o.chaos, "chaos", false, "kill -9 a NATS node, a provisioner and an inventory replica mid-run, then verify every device (--cluster)")
	f.Float64Var(&o.chaosAt, "chaos-at", 0.25, "fraction of the fleet provisioned (simulator) when --chaos kills, in (0, 1)")
	f.IntVar(&o.workers, "workers", 0, "worker pool per provisioner replica (0: the provisioner's default)")
	f.DurationVar(&o.latency, "latency", 30*time.Millisecond, "mean simulated firmware latency per WS-Man call (amtsim's default)")
	f.DurationVar(&o.helloSpread, "hello-spread", 0, "window over which first hellos are spread (0: the simulator's default, 1 ms a device)")
	f.StringVar(&o.sweep, "sweep", "", "provisioners=1,2,4 | workers=W1,W2 | latency=D1,D2: one run per value")
	f.StringVar(&o.out, "out", "", "write the full report (every run, lag and curve samples) as JSON to this file")
	f.StringVar(&o.svg, "svg", "", "write the chart (devices provisioned over time) to this SVG file (default: --out with .svg)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up on a run after this long")
	f.DurationVar(&o.sample, "sample", time.Second, "consumer lag sampling interval")
	f.StringVar(&o.simBase, "sim-base", "127.20.0.1", "first simulated device address (devices fill its /16)")
	f.StringVar(&o.workDir, "work-dir", "", "parent of each run's data directory (default: the system temp dir)")
	f.StringVar(&o.binDir, "bin-dir", "", "binaries for --cluster (default: this executable's directory)")
	f.StringVar(&o.deployDir, "deploy-dir", "", "the deploy/ directory for --cluster (default: next to the bin dir, else ./deploy)")
	f.BoolVar(&o.keep, "keep", false, "keep each run's data directory (logs, database) instead of removing it")
	f.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	f.StringArrayVar(&o.addReports, "add-report", nil, "an earlier --out file whose runs are put first in this report and chart (repeatable)")
	return cmd
}

// plan validates the flags and returns one config per run.
func (o benchOptions) plan() ([]benchConfig, error) {
	switch {
	case o.devices <= 0:
		return nil, fmt.Errorf("%w: --devices must be > 0", service.ErrUsage)
	case o.devices > 60000:
		return nil, fmt.Errorf("%w: --devices at most 60000 (one /16 of loopback addresses)", service.ErrUsage)
	case o.provisioners < 1:
		return nil, fmt.Errorf("%w: --provisioners must be >= 1", service.ErrUsage)
	case o.workers < 0, o.latency < 0, o.helloSpread < 0:
		return nil, fmt.Errorf("%w: --workers, --latency and --hello-spread must not be negative", service.ErrUsage)
	case o.timeout <= 0, o.sample <= 0:
		return nil, fmt.Errorf("%w: --timeout and --sample must be positive", service.ErrUsage)
	case o.inventory < 1:
		return nil, fmt.Errorf("%w: --inventory must be >= 1", service.ErrUsage)
	case o.lease < 0:
		return nil, fmt.Errorf("%w: --lease must not be negative", service.ErrUsage)
	case (o.inventory > 1 || o.lease > 0) && !o.cluster:
		return nil, fmt.Errorf("%w: --inventory and --lease need --cluster", service.ErrUsage)
	case o.chaos && !o.cluster:
		return nil, fmt.Errorf("%w: --chaos kills processes of the separate-process cluster: it needs --cluster", service.ErrUsage)
	case o.chaos && (o.chaosAt <= 0 || o.chaosAt >= 1 || math.IsNaN(o.chaosAt)):
		return nil, fmt.Errorf("%w: --chaos-at %v: want a fraction of the fleet in (0, 1)", service.ErrUsage, o.chaosAt)
	}
	if _, err := netip.ParseAddr(o.simBase); err != nil {
		return nil, fmt.Errorf("%w: --sim-base: %v", service.ErrUsage, err)
	}
	base := benchConfig{Provisioners: o.provisioners, Workers: o.workers, Latency: o.latency}
	runs := []benchConfig{base}
	if o.sweep != "" {
		key, list, ok := strings.Cut(o.sweep, "=")
		if !ok || list == "" {
			return nil, fmt.Errorf("%w: --sweep %q: want KEY=V1,V2,...", service.ErrUsage, o.sweep)
		}
		runs = nil
		for v := range strings.SplitSeq(list, ",") {
			c := base
			v = strings.TrimSpace(v)
			var err error
			switch key {
			case "provisioners":
				c.Provisioners, err = strconv.Atoi(v)
				if err == nil && c.Provisioners < 1 {
					err = errors.New("must be >= 1")
				}
			case "workers":
				c.Workers, err = strconv.Atoi(v)
				if err == nil && c.Workers < 1 {
					err = errors.New("must be >= 1")
				}
			case "latency":
				c.Latency, err = time.ParseDuration(v)
				if err == nil && c.Latency < 0 {
					err = errors.New("must not be negative")
				}
			default:
				return nil, fmt.Errorf("%w: --sweep key %q: want provisioners, workers or latency", service.ErrUsage, key)
			}
			if err != nil {
				return nil, fmt.Errorf("%w: --sweep %s value %q: %v", service.ErrUsage, key, v, err)
			}
			runs = append(runs, c)
		}
	}
	for i := range runs {
		if runs[i].Provisioners > 1 && !o.cluster {
			return nil, fmt.Errorf("%w: more than one provisioner replica needs --cluster (in-process runs one)", service.ErrUsage)
		}
		if o.chaos && (runs[i].Provisioners < 2 || o.inventory < 2) {
			return nil, fmt.Errorf("%w: --chaos kills one provisioner and one inventory replica while the others keep working: "+
				"it needs --provisioners 2 --inventory 2 or more (got %d and %d)", service.ErrUsage, runs[i].Provisioners, o.inventory)
		}
		runs[i].LatencyMS = float64(runs[i].Latency) / float64(time.Millisecond)
	}
	return runs, nil
}

// label names a run in the chart legend and the report.
func (o benchOptions) label(c benchConfig) string {
	workers := "default"
	if c.Workers > 0 {
		workers = strconv.Itoa(c.Workers)
	}
	return fmt.Sprintf("provisioners=%d workers=%s latency=%s", c.Provisioners, workers, c.Latency)
}

func runBench(ctx context.Context, g *globals, o benchOptions, runs []benchConfig) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level: %v", service.ErrUsage, err)
	}
	log := telemetry.NewLogger(g.err, "amtprov-bench", level)
	report := benchReport{
		Command: strings.Join(os.Args, " "),
		Started: time.Now().UTC(),
		Host:    benchHost{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH},
	}
	for _, path := range o.addReports {
		earlier, err := readBenchReport(path)
		if err != nil {
			return err
		}
		report.Runs = append(report.Runs, earlier.Runs...)
	}
	var errs []error
	for _, c := range runs {
		mode := "in-process"
		if o.cluster {
			mode = "cluster"
		}
		r := benchRun{Label: o.label(c), Mode: mode, Config: c}
		r.Load1[0] = loadAverage()
		fmt.Fprintf(g.err, "bench: %s run, %d devices, %s\n", mode, o.devices, r.Label)
		var err error
		if o.cluster {
			err = benchCluster(ctx, o, c, &r, log)
		} else {
			err = benchInProcess(ctx, g, o, c, &r, log)
		}
		r.Load1[1] = loadAverage()
		if err != nil {
			r.Error = err.Error()
			errs = append(errs, fmt.Errorf("bench run %s: %w", r.Label, err))
		}
		fmt.Fprintf(g.err, "bench: %s: provisioned %d failed %d of %d; %.1f provisioned/s; p50 %.0f ms p95 %.0f ms p99 %.0f ms\n",
			r.Label, r.Result.Provisioned, r.Result.Failed, r.Result.Devices, r.Result.ProvisionedPerS,
			r.Result.LatencyMS.P50, r.Result.LatencyMS.P95, r.Result.LatencyMS.P99)
		report.Runs = append(report.Runs, r)
		if ctx.Err() != nil {
			break
		}
	}
	if err := writeBenchOutputs(g, o, report); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// writeBenchOutputs prints --json and writes --out and the SVG.
func writeBenchOutputs(g *globals, o benchOptions, report benchReport) error {
	if g.json {
		var v any = report.Runs[len(report.Runs)-1].Result
		if len(report.Runs) > 1 || o.sweep != "" {
			results := make([]benchResult, len(report.Runs))
			for i, r := range report.Runs {
				results[i] = r.Result
			}
			v = results
		}
		enc := json.NewEncoder(g.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("print bench result: %w", err)
		}
	} else {
		for _, r := range report.Runs {
			res := r.Result
			fmt.Fprintf(g.out, "%s (%s): %d/%d provisioned, %d failed, %.1f hellos/s, %.1f provisioned/s, latency p50/p95/p99 %.0f/%.0f/%.0f ms, cpu ms/device %s, peak RSS MB %s\n",
				r.Label, r.Mode, res.Provisioned, res.Devices, res.Failed, res.HellosPerS, res.ProvisionedPerS,
				res.LatencyMS.P50, res.LatencyMS.P95, res.LatencyMS.P99, fmtPerService(res.CPUMSPerDevice), fmtPerService(res.PeakRSSMB))
		}
	}
	if o.out != "" {
		b, err := json.MarshalIndent(report, "", "  ")
		if err != nil {
			return fmt.Errorf("encode bench report: %w", err)
		}
		if err := os.WriteFile(o.out, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write bench report: %w", err)
		}
	}
	svgPath := o.svg
	if svgPath == "" && o.out != "" {
		svgPath = strings.TrimSuffix(o.out, filepath.Ext(o.out)) + ".svg"
	}
	if svgPath != "" {
		series := make([]benchSeries, len(report.Runs))
		for i, r := range report.Runs {
			series[i] = benchSeries{Label: r.Label, Points: r.Curve}
		}
		f, err := os.Create(svgPath)
		if err != nil {
			return fmt.Errorf("write bench chart: %w", err)
		}
		title := fmt.Sprintf("amtprov bench: %d simulated devices (%s)", o.devices, report.Runs[0].Mode)
		err = writeBenchSVG(f, title, series)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write bench chart: %w", cerr)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func fmtPerService(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%.2f", k, m[k])
	}
	return strings.Join(parts, ",")
}

// loadAverage is the 1-minute load average (0 when unknown).
func loadAverage() float64 {
	b, err := readSmall("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// benchDataDir makes a fresh data directory for one run, searchable by the
// postgres user (the private cluster runs as postgres when we are root).
func benchDataDir(o benchOptions) (string, func(), error) {
	dir, err := os.MkdirTemp(o.workDir, "amtprov-bench-")
	if err != nil {
		return "", nil, fmt.Errorf("bench data dir: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("bench data dir: %w", err)
	}
	cleanup := func() {
		if !o.keep {
			_ = os.RemoveAll(dir)
		}
	}
	return dir, cleanup, nil
}

// benchInProcess runs the system as `amtprov dev` wires it, in this
// process, with a fresh data directory (embedded NATS, private PostgreSQL).
func benchInProcess(ctx context.Context, g *globals, o benchOptions, c benchConfig, r *benchRun, log *slog.Logger) error {
	dir, cleanup, err := benchDataDir(o)
	if err != nil {
		return err
	}
	defer cleanup()
	lc := service.New("amtprov-bench", log)
	// The dev wiring prints its ready line to g.out, which is ours (--json).
	dg := &globals{out: io.Discard, err: g.err}
	sys, err := startDev(ctx, dg, devOptions{
		simulate:       o.devices,
		helloAddr:      "127.0.0.1:0",
		apiAddr:        "127.0.0.1:0",
		natsAddr:       "127.0.0.1:0",
		simControlAddr: "127.0.0.1:0",
		simBase:        o.simBase,
		dataDir:        dir,
		logLevel:       o.logLevel,
		simTimeScale:   1,
		provWorkers:    c.Workers,
		simLatency:     c.Latency,
		simHelloSpread: o.helloSpread,
		privateDB:      true,
	}, lc, log)
	if err != nil {
		return errors.Join(err, lc.Shutdown(context.WithoutCancel(ctx)))
	}
	// The services run until the run is measured; then Run stops them and
	// shuts everything down (in the reverse order of the wiring).
	runCtx, cancel := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- lc.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-runDone; err != nil {
			log.Warn("bench: in-process system", "err", err)
		}
	}()
	procs := []benchProc{{service: "amtprov", pid: os.Getpid()}}
	if pg, err := postmasterPID(filepath.Join(dir, "pg")); err == nil {
		procs = append(procs, benchProc{service: "postgres", pid: pg, tree: true})
	} else {
		log.Warn("bench: PostgreSQL not measured", "err", err)
	}
	return benchMeasure(ctx, o, sys.js, sys.fleet, procs, r, nil, log)
}

// benchMeasure watches one run from the events on the stream until every
// device succeeded or failed (or --timeout), then fills r.
//
// With chaos (a --chaos cluster run) the kills run alongside, the run waits
// for every device's succeeded event (a job failed by a kill is retried at
// the device's next hello) rather than for every device to have ended, and
// the end state is verified before the collector stops.
func benchMeasure(ctx context.Context, o benchOptions, js jetstream.JetStream, fleet *amtsim.Fleet, procs []benchProc, r *benchRun, chaos *benchChaos, log *slog.Logger) error {
	start := time.Now()
	col := newBenchCollector(o.devices)
	stop, err := col.start(ctx, js, log)
	if err != nil {
		return err
	}
	defer stop()
	ended := col.done
	if chaos != nil {
		ended = col.allOK
		go chaos.run(ctx, start)
	}
	for _, p := range procs {
		if err := resetPeakRSS("/proc", p.pid); err != nil {
			log.Warn("bench: peak RSS is the process lifetime's", "err", err)
		}
	}
	before := usageOf("/proc", procs, log)

	lagCtx, stopLag := context.WithCancel(ctx)
	lagDone := make(chan []benchLagSample, 1)
	go func() {
		lag, err := sampleLag(lagCtx, js, "provisioner", o.sample, start)
		if err != nil {
			log.Warn("bench: consumer lag sampling stopped", "err", err)
		}
		lagDone <- lag
	}()

	// Ground truth: the simulator's own view of which devices are
	// provisioned, independent of events reaching the stream (the chaos
	// part already follows the fleet: the same watcher serves both).
	var watch *postWatcher
	var allPost <-chan struct{}
	switch {
	case chaos != nil:
		watch = chaos.watch
	case fleet != nil:
		watch = watchPost(ctx, watched(fleet.Devices()))
		defer watch.stop()
	}
	if watch != nil {
		allPost = watch.allPost
	}
	everPost := func() int {
		if watch == nil {
			return 0
		}
		return watch.everPost()
	}

	var runErr error
	timer := time.NewTimer(o.timeout)
	defer timer.Stop()
	var grace <-chan time.Time
	eventsBehind := false
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
wait:
	for {
		select {
		case <-progress.C:
			p, f := col.counts()
			post := everPost()
			fmt.Fprintf(o.progress, "bench: %3.0fs: succeeded %d, failed %d (events); %d post-provisioning (simulator) of %d\n",
				time.Since(start).Seconds(), p, f, post, o.devices)
		case <-ended:
			break wait
		case <-allPost:
			// Every device is provisioned: give the events a bounded
			// time to arrive, then measure from the simulator.
			allPost = nil
			grace = time.After(benchEventGrace)
		case <-grace:
			eventsBehind = true
			p, f := col.counts()
			r.EventsBehind = fmt.Sprintf("every device was provisioned but only %d succeeded and %d failed events were on the stream %s later; "+
				"provisioned/s, latency and curve come from the simulator's ground truth", p, f, benchEventGrace)
			log.Warn("bench: " + r.EventsBehind)
			break wait
		case <-timer.C:
			p, f := col.counts()
			post := everPost()
			runErr = fmt.Errorf("only %d provisioned (simulator: %d) and %d failed of %d devices after %s", p, post, f, o.devices, o.timeout)
			if post > p {
				eventsBehind = true
				r.EventsBehind = fmt.Sprintf("at the timeout %d devices were provisioned but only %d succeeded events were on the stream; "+
					"provisioned/s, latency and curve come from the simulator's ground truth", post, p)
			}
			break wait
		case <-ctx.Done():
			runErr = fmt.Errorf("interrupted: %w", ctx.Err())
			break wait
		}
	}
	var firstPost map[string]time.Time // the ground truth as the measurement ended
	if watch != nil {
		firstPost = watch.firstPost()
	}
	r.ElapsedS = since(start)
	if chaos != nil {
		// The killed processes' CPU up to the kill and their successors'
		// count too; the kills' outcome is known before they are read.
		chaos.measurementEnded(ctx)
		procs = chaos.withoutKilled(procs)
	}
	after := usageOf("/proc", procs, log)
	if chaos != nil {
		chaos.addReplacedUsage(after, log)
	}
	stopLag()
	r.Lag = <-lagDone

	m := col.measures()
	if eventsBehind {
		m = col.groundTruthMeasures(m, firstPost)
	}
	r.Hellos, r.SpanS, r.Curve, r.Unparsed = m.Hellos, round3(m.SpanS), m.Curve, m.Unparsed
	r.Result = benchResult{
		Devices:         o.devices,
		Provisioned:     m.Provisioned,
		Failed:          m.Failed,
		HellosPerS:      round3(m.HellosPerS),
		ProvisionedPerS: round3(m.ProvisionedPerS),
		LatencyMS:       m.Latency,
		CPUMSPerDevice:  map[string]float64{},
		PeakRSSMB:       map[string]float64{},
	}
	r.CPUSeconds, r.Processes = map[string]float64{}, map[string]int{}
	perDevice := max(m.Provisioned, 1)
	for svc, a := range after {
		b := before[svc]
		cpu := max(a.CPUSeconds-b.CPUSeconds, 0)
		r.CPUSeconds[svc] = round3(cpu)
		r.Processes[svc] = a.procs
		r.Result.CPUMSPerDevice[svc] = round3(cpu * 1000 / float64(perDevice))
		r.Result.PeakRSSMB[svc] = round1(a.PeakRSSMB)
	}
	if fleet != nil {
		st := fleet.Stats()
		r.SimPost, r.SimMaxConc = st.States["post"], st.SessionsMaxConcurrent
	}
	if chaos != nil && ctx.Err() == nil {
		runErr = errors.Join(runErr, chaos.finish(ctx, col, r))
	}
	return runErr
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// benchTrust parses a root SHA-256 printed by the CA.
func benchTrust(hexSum string) ([]amt.RootHash, error) {
	h, err := amt.ParseRootHash("sha256:" + hexSum)
	if err != nil {
		return nil, fmt.Errorf("development domain root: %w", err)
	}
	return []amt.RootHash{h}, nil
}

// maxReportFile bounds an earlier report read by --add-report.
const maxReportFile = 16 << 20

// readBenchReport reads an earlier --out file.
func readBenchReport(path string) (benchReport, error) {
	var rep benchReport
	f, err := os.Open(path)
	if err != nil {
		return rep, fmt.Errorf("%w: --add-report: %v", service.ErrUsage, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxReportFile+1))
	if err != nil {
		return rep, fmt.Errorf("read report %s: %w", path, err)
	}
	if len(b) > maxReportFile {
		return rep, fmt.Errorf("%w: --add-report %s: larger than %d bytes", service.ErrUsage, path, maxReportFile)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return rep, fmt.Errorf("%w: --add-report %s: %v", service.ErrUsage, path, err)
	}
	if len(rep.Runs) == 0 {
		return rep, fmt.Errorf("%w: --add-report %s: no runs", service.ErrUsage, path)
	}
	return rep, nil
}
