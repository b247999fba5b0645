// Command inventory consumes every amtprov event into the device inventory
// tables and serves the read API (GET /v1/devices, /v1/devices/{uuid}) next
// to /healthz, /readyz and /metrics. See package inventory.
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
	"github.com/amtprov/amtprov/libs/service"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/inventory"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "inventory:", err)
		if errors.Is(err, service.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	// Configuration: flags, with defaults from the environment.
	fs := flag.NewFlagSet("inventory", flag.ContinueOnError)
	var (
		cfg      inventory.Config
		natsCfg  bus.Config
		dbURL    string
		apiAddr  string
		logLevel string
		replicas int
	)
	fs.StringVar(&apiAddr, "api-addr", service.Env("API_ADDR", ":8080"), "address of the read API and /healthz, /readyz, /metrics (env API_ADDR)")
	fs.StringVar(&dbURL, "database-url", service.Env("DATABASE_URL", ""), "PostgreSQL URL (env DATABASE_URL; required)")
	fs.StringVar(&cfg.Durable, "durable", service.Env("INVENTORY_DURABLE", "inventory"), "durable consumer name, shared by replicas (env INVENTORY_DURABLE)")
	fs.IntVar(&cfg.Workers, "workers", service.EnvInt("INVENTORY_WORKERS", 0), "events handled at once (env INVENTORY_WORKERS; default 2 x batch size)")
	fs.IntVar(&cfg.BatchSize, "batch-size", service.EnvInt("INVENTORY_BATCH_SIZE", 0), "events per transaction (env INVENTORY_BATCH_SIZE; default 512)")
	fs.DurationVar(&cfg.BatchWait, "batch-wait", service.EnvDuration("INVENTORY_BATCH_WAIT", 0), "how long a batch waits to fill (env INVENTORY_BATCH_WAIT; default 20ms)")
	fs.IntVar(&cfg.Writers, "writers", service.EnvInt("INVENTORY_WRITERS", 0), "transactions at once (env INVENTORY_WRITERS; default 2)")
	service.BusFlags(fs, &natsCfg, &replicas)
	fs.StringVar(&logLevel, "log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	if err := service.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := service.CheckEnv([]string{"INVENTORY_WORKERS", "INVENTORY_BATCH_SIZE", "INVENTORY_WRITERS", "AMT_STREAM_REPLICAS"},
		[]string{"INVENTORY_BATCH_WAIT"}); err != nil {
		return fmt.Errorf("%w: %v", service.ErrUsage, err)
	}
	if dbURL == "" {
		return fmt.Errorf("%w: --database-url or DATABASE_URL is required", service.ErrUsage)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level: %v", service.ErrUsage, err)
	}

	// Logger and telemetry.
	log := telemetry.NewLogger(os.Stderr, "inventory", level)
	lc := service.New("inventory", log)
	tel, err := service.StartTelemetry(ctx, lc, "inventory")
	if err != nil {
		return err
	}

	// Database: wait for it, then bring the schema up to date (replicas
	// starting together take turns under an advisory lock).
	pool, err := service.OpenDatabase(ctx, lc, dbURL, log)
	if err != nil {
		return err
	}

	// Bus.
	natsCfg.Name = "inventory"
	_, js, err := service.ConnectBus(ctx, lc, natsCfg, replicas, log)
	if err != nil {
		return err
	}

	// The service: the consumer as a runner, the read API on the ops port.
	svc, err := inventory.New(cfg, pool, js, tel, log)
	if err != nil {
		return err
	}
	lc.Go("consumer", svc.Run)
	ln, err := net.Listen("tcp", apiAddr)
	if err != nil {
		return fmt.Errorf("api listener: %w", err)
	}
	lc.Serve("api", ln, lc.OpsHandler(tel.Metrics, svc.Handler()))
	log.Info("inventory ready", "api", ln.Addr().String())

	// Run until a signal, then shut down in reverse order.
	return lc.Run(ctx)
}
