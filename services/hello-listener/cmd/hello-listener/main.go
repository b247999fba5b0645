// Command hello-listener takes setup-mode hellos from Intel AMT firmware on
// TCP and publishes them to JetStream. See services/hello-listener/listener.
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
	"github.com/amtprov/amtprov/services/hello-listener/listener"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hello-listener:", err)
		if errors.Is(err, service.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	// Configuration: flags, with defaults from the environment.
	fs := flag.NewFlagSet("hello-listener", flag.ContinueOnError)
	var (
		cfg      listener.Config
		natsCfg  bus.Config
		opsAddr  string
		logLevel string
		replicas int
	)
	fs.StringVar(&cfg.Name, "name", service.Env("HELLO_LISTENER_NAME", ""), "listener id in events and ce-source (env HELLO_LISTENER_NAME; default host-pid, unique per replica)")
	fs.StringVar(&cfg.Addr, "addr", service.Env("HELLO_ADDR", ":9971"), "hello TCP address (env HELLO_ADDR)")
	fs.DurationVar(&cfg.ReadTimeout, "read-timeout", service.EnvDuration("HELLO_READ_TIMEOUT", 0), "per-connection deadline (default 10s)")
	fs.IntVar(&cfg.MaxConns, "max-conns", service.EnvInt("HELLO_MAX_CONNS", 0), "concurrent connections (default 4096)")
	fs.Float64Var(&cfg.PerIPRate, "per-ip-rate", 0, "hellos per second per source IP (default 5)")
	fs.IntVar(&cfg.PerIPBurst, "per-ip-burst", 0, "token bucket size per source IP (default 20)")
	service.BusFlags(fs, &natsCfg, &replicas)
	fs.StringVar(&opsAddr, "ops-addr", service.Env("OPS_ADDR", ":9972"), "address of /healthz, /readyz, /metrics (env OPS_ADDR)")
	fs.StringVar(&logLevel, "log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	if err := service.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := service.CheckEnv([]string{"HELLO_MAX_CONNS", "AMT_STREAM_REPLICAS"}, []string{"HELLO_READ_TIMEOUT"}); err != nil {
		return fmt.Errorf("%w: %v", service.ErrUsage, err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level: %v", service.ErrUsage, err)
	}

	// Logger and telemetry.
	log := telemetry.NewLogger(os.Stderr, "hello-listener", level)
	lc := service.New("hello-listener", log)
	tel, err := service.StartTelemetry(ctx, lc, "hello-listener")
	if err != nil {
		return err
	}

	// Bus.
	natsCfg.Name = "hello-listener"
	_, js, err := service.ConnectBus(ctx, lc, natsCfg, replicas, log)
	if err != nil {
		return err
	}

	// The service and its transports.
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	pub := bus.NewPublisher(js, "/hello-listener/"+cfg.Name, tel)
	_, addr, err := listener.Start(lc, cfg, pub, listener.Options{Tracer: tel.Tracer, Meter: tel.Meter, Logger: log})
	if err != nil {
		return err
	}
	opsLn, err := net.Listen("tcp", opsAddr)
	if err != nil {
		return fmt.Errorf("ops listener: %w", err)
	}
	lc.Serve("ops", opsLn, lc.OpsHandler(tel.Metrics, nil))
	log.Info("hello-listener ready", "hello", addr.String(), "ops", opsLn.Addr().String())

	// Run until a signal, then shut down in reverse order.
	return lc.Run(ctx)
}
