// Command discovery finds Intel AMT devices on the network and identifies
// the managed ones: any number of replicas share scans through the AMT_WORK
// work queue. It serves /healthz, /readyz and /metrics. See package
// discovery.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/libs/service"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/discovery"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "discovery:", err)
		if errors.Is(err, service.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	// Configuration: flags, with defaults from the environment.
	fs := flag.NewFlagSet("discovery", flag.ContinueOnError)
	var (
		cfg      discovery.Config
		natsCfg  bus.Config
		dbURL    string
		opsAddr  string
		logLevel string
		replicas int
	)
	fs.StringVar(&dbURL, "database-url", service.Env("DATABASE_URL", ""), "PostgreSQL URL (env DATABASE_URL; required)")
	fs.IntVar(&cfg.ShardWorkers, "shard-workers", service.EnvInt("DISCOVERY_SHARD_WORKERS", 0), "shards swept at once by this replica (env DISCOVERY_SHARD_WORKERS; default 64)")
	fs.Float64Var(&cfg.GlobalRate, "global-rate", 0, "packets per second cap of this replica over all scans (default 20000)")
	fs.IntVar(&cfg.DefaultRate, "default-rate", service.EnvInt("DISCOVERY_DEFAULT_RATE", 0), "packets per second of a block outside every target (env DISCOVERY_DEFAULT_RATE; default 1000)")
	fs.DurationVar(&cfg.AckWait, "ack-wait", service.EnvDuration("DISCOVERY_ACK_WAIT", 0), "shard lease without heartbeat before redelivery (env DISCOVERY_ACK_WAIT; default 30s)")
	fs.DurationVar(&cfg.ScheduleEvery, "schedule-every", service.EnvDuration("DISCOVERY_SCHEDULE_EVERY", 0), "how often due targets are looked for; negative disables (default 30s)")
	fs.DurationVar(&cfg.Sweep.PerDeviceInterval, "per-device-interval", 0, "least time between two probes of one address (default 500ms)")
	fs.IntVar(&cfg.Sweep.Concurrency, "concurrency", 0, "addresses probed over TCP at once per shard (default 256)")
	fs.IntVar(&cfg.Sweep.RMCPPort, "rmcp-port", 0, "RMCP port of blocks outside every target (default 623)")
	fs.IntVar(&cfg.Sweep.HTTPPort, "http-port", 0, "AMT HTTP port of blocks outside every target (default 16992)")
	fs.IntVar(&cfg.Sweep.TLSPort, "tls-port", 0, "AMT TLS port of blocks outside every target (default 16993)")
	fs.IntVar(&cfg.WorkReplicas, "work-replicas", service.EnvInt("AMT_WORK_REPLICAS", 1), "replicas of the AMT_WORK stream (env AMT_WORK_REPLICAS)")
	fs.IntVar(&replicas, "stream-replicas", service.EnvInt("AMT_STREAM_REPLICAS", 1), "replicas of the AMT stream (env AMT_STREAM_REPLICAS)")
	fs.StringVar(&natsCfg.URL, "nats", service.Env("NATS_URL", "nats://127.0.0.1:4222"), "NATS URL (env NATS_URL)")
	fs.StringVar(&natsCfg.CredsFile, "nats-creds", service.Env("NATS_CREDS", ""), "NATS credentials file (env NATS_CREDS)")
	fs.StringVar(&natsCfg.TLSCA, "nats-ca", service.Env("NATS_CA", ""), "CA bundle for NATS TLS (env NATS_CA)")
	fs.StringVar(&natsCfg.TLSCert, "nats-cert", service.Env("NATS_CERT", ""), "client certificate for NATS TLS (env NATS_CERT)")
	fs.StringVar(&natsCfg.TLSKey, "nats-key", service.Env("NATS_KEY", ""), "client key for NATS TLS (env NATS_KEY)")
	fs.StringVar(&opsAddr, "ops-addr", service.Env("OPS_ADDR", ":9974"), "address of /healthz, /readyz, /metrics (env OPS_ADDR)")
	fs.StringVar(&logLevel, "log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	if err := service.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := service.CheckEnv([]string{"DISCOVERY_SHARD_WORKERS", "DISCOVERY_DEFAULT_RATE", "AMT_WORK_REPLICAS", "AMT_STREAM_REPLICAS"},
		[]string{"DISCOVERY_ACK_WAIT", "DISCOVERY_SCHEDULE_EVERY"}); err != nil {
		return fmt.Errorf("%w: %v", service.ErrUsage, err)
	}
	if dbURL == "" {
		return fmt.Errorf("%w: --database-url or DATABASE_URL is required", service.ErrUsage)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level: %v", service.ErrUsage, err)
	}
	keys, err := secrets.LoadKeyring(os.Getenv)
	if err != nil {
		return fmt.Errorf("%w: %v", service.ErrUsage, err)
	}

	// Logger and telemetry.
	log := telemetry.NewLogger(os.Stderr, "discovery", level)
	lc := service.New("discovery", log)
	tel, err := service.StartTelemetry(ctx, lc, "discovery")
	if err != nil {
		return err
	}

	// Database: wait for it, then bring the schema up to date.
	pool, err := service.OpenDatabase(ctx, lc, dbURL, log)
	if err != nil {
		return err
	}

	// Bus.
	natsCfg.Name = "discovery"
	nc, js, err := service.ConnectBus(ctx, lc, natsCfg, replicas, log)
	if err != nil {
		return err
	}

	// The service: shard workers, scheduler, verifier, outbox relay and
	// admin verbs in one runner; ops endpoints on their own port.
	cfg.Name, _ = os.Hostname()
	svc, err := discovery.New(cfg, discovery.Deps{Pool: pool, NC: nc, JS: js, Keys: keys, Tel: tel, Log: log})
	if err != nil {
		return err
	}
	lc.Go("discovery", svc.Run)
	lc.Ready("admin", svc.Ready)
	ln, err := net.Listen("tcp", opsAddr)
	if err != nil {
		return fmt.Errorf("ops listener: %w", err)
	}
	lc.Serve("ops", ln, lc.OpsHandler(tel.Metrics, nil))
	log.Info("discovery ready", "ops", ln.Addr().String())

	// Run until a signal, then shut down in reverse order.
	return lc.Run(ctx)
}
