// Command provisioner runs one provisioner replica: it consumes hellos from
// the shared durable consumer, provisions the devices (TLS-PKI remote
// configuration), writes provisioning events through the outbox, and
// answers the profile/jobs/explain/device admin verbs. /healthz, /readyz
// and /metrics are on --ops-addr. See package provisioner.
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
	"github.com/amtprov/amtprov/services/certauthority"
	"github.com/amtprov/amtprov/services/provisioner"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "provisioner:", err)
		if errors.Is(err, service.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	// Configuration: flags, with defaults from the environment.
	fs := flag.NewFlagSet("provisioner", flag.ContinueOnError)
	var (
		cfg      provisioner.Config
		natsCfg  bus.Config
		dbURL    string
		opsAddr  string
		logLevel string
		replicas int
	)
	fs.StringVar(&opsAddr, "ops-addr", service.Env("OPS_ADDR", ":8083"), "address of /healthz, /readyz, /metrics (env OPS_ADDR)")
	fs.StringVar(&dbURL, "database-url", service.Env("DATABASE_URL", ""), "PostgreSQL URL (env DATABASE_URL; required)")
	fs.StringVar(&cfg.Durable, "durable", service.Env("PROVISIONER_DURABLE", "provisioner"), "durable consumer shared by replicas (env PROVISIONER_DURABLE)")
	fs.IntVar(&cfg.Workers, "workers", service.EnvInt("PROVISIONER_WORKERS", 256), "devices worked on at once by this replica (env PROVISIONER_WORKERS)")
	fs.StringVar(&cfg.Instance, "instance", service.Env("PROVISIONER_INSTANCE", ""), "name of this replica in job leases (env PROVISIONER_INSTANCE; default host-pid-random)")
	fs.DurationVar(&cfg.Lease, "lease", service.EnvDuration("PROVISIONER_LEASE", 0), "job lease; a dead replica's jobs are taken over after it (env PROVISIONER_LEASE; default 60s)")
	fs.DurationVar(&cfg.AckWait, "ack-wait", service.EnvDuration("PROVISIONER_ACK_WAIT", 0), "redelivery after a silent replica (env PROVISIONER_ACK_WAIT; default 30s)")
	fs.IntVar(&cfg.MaxDeliver, "max-deliver", service.EnvInt("PROVISIONER_MAX_DELIVER", 0), "runs of a job before a transient failure is final (env PROVISIONER_MAX_DELIVER; default 10)")
	fs.DurationVar(&cfg.RetryFailedAfter, "retry-failed-after", service.EnvDuration("PROVISIONER_RETRY_FAILED_AFTER", 0), "a failed device's hellos start a new attempt only after this (env PROVISIONER_RETRY_FAILED_AFTER; default 5m)")
	fs.IntVar(&cfg.Workflow.DevicePort, "device-port", service.EnvInt("PROVISIONER_DEVICE_PORT", 16993), "devices' TLS port (env PROVISIONER_DEVICE_PORT)")
	fs.DurationVar(&cfg.Workflow.CallTimeout, "call-timeout", service.EnvDuration("PROVISIONER_CALL_TIMEOUT", 0), "bound on one WS-Man call (env PROVISIONER_CALL_TIMEOUT; default 20s)")
	fs.DurationVar(&cfg.Workflow.PostCommitPause, "post-commit-pause", service.EnvDuration("PROVISIONER_POST_COMMIT_PAUSE", 0), "wait after CommitChanges before verifying (env PROVISIONER_POST_COMMIT_PAUSE; default 2s)")
	service.BusFlags(fs, &natsCfg, &replicas)
	fs.StringVar(&logLevel, "log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	if err := service.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := service.CheckEnv([]string{"PROVISIONER_WORKERS", "PROVISIONER_MAX_DELIVER", "PROVISIONER_DEVICE_PORT", "AMT_STREAM_REPLICAS"},
		[]string{"PROVISIONER_LEASE", "PROVISIONER_ACK_WAIT", "PROVISIONER_RETRY_FAILED_AFTER", "PROVISIONER_CALL_TIMEOUT", "PROVISIONER_POST_COMMIT_PAUSE"}); err != nil {
		return fmt.Errorf("%w: %v", service.ErrUsage, err)
	}
	if dbURL == "" {
		return fmt.Errorf("%w: --database-url or DATABASE_URL is required", service.ErrUsage)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level: %v", service.ErrUsage, err)
	}
	// The keyring that seals device credentials and opens provisioning keys.
	keys, err := secrets.LoadKeyring(os.Getenv)
	if err != nil {
		return err
	}

	// Logger and telemetry.
	log := telemetry.NewLogger(os.Stderr, "provisioner", level)
	lc := service.New("provisioner", log)
	tel, err := service.StartTelemetry(ctx, lc, "provisioner")
	if err != nil {
		return err
	}

	// Database.
	pool, err := service.OpenDatabase(ctx, lc, dbURL, log)
	if err != nil {
		return err
	}

	// Bus.
	natsCfg.Name = "provisioner"
	nc, js, err := service.ConnectBus(ctx, lc, natsCfg, replicas, log)
	if err != nil {
		return err
	}

	// The service: consumer, outbox relay and admin verbs as one runner.
	svc, err := provisioner.New(cfg, provisioner.Deps{Pool: pool, JS: js, NC: nc, Keys: keys,
		Domains: &provisioner.CADomains{DB: pool, Keys: keys}, Signer: provisioner.CASigner{Client: certauthority.NewClient(nc)},
		Tel: tel, Log: log})
	if err != nil {
		return err
	}
	lc.Go("provisioner", svc.Run)
	lc.Ready("admin", svc.Ready)
	ln, err := net.Listen("tcp", opsAddr)
	if err != nil {
		return fmt.Errorf("ops listener: %w", err)
	}
	lc.Serve("ops", ln, lc.OpsHandler(tel.Metrics, nil))
	log.Info("provisioner ready", "ops", ln.Addr().String(), "workers", cfg.Workers)

	// Run until a signal, then shut down in reverse order.
	return lc.Run(ctx)
}
