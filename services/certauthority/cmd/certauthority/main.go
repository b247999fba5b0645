// Command certauthority signs device TLS certificates (amt.v1.ca.sign) and
// manages provisioning domains (amt.v1.admin.domain.*), with /healthz,
// /readyz and /metrics on its ops port. See package certauthority.
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/libs/service"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/certauthority"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "certauthority:", err)
		if errors.Is(err, service.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	// Configuration: flags, with defaults from the environment.
	fs := flag.NewFlagSet("certauthority", flag.ContinueOnError)
	var (
		cfg      certauthority.Config
		natsCfg  bus.Config
		dbURL    string
		opsAddr  string
		logLevel string
		suffixes string
		replicas int
	)
	fs.StringVar(&opsAddr, "ops-addr", service.Env("OPS_ADDR", ":8082"), "address of /healthz, /readyz, /metrics (env OPS_ADDR)")
	fs.StringVar(&dbURL, "database-url", service.Env("DATABASE_URL", ""), "PostgreSQL URL (env DATABASE_URL; required)")
	fs.StringVar(&suffixes, "allowed-suffixes", service.Env("CA_ALLOWED_SUFFIXES", ""), "comma-separated DNS suffixes device FQDNs may be in (env CA_ALLOWED_SUFFIXES)")
	fs.BoolVar(&cfg.DenyProvisioningDomainSuffixes, "deny-domain-suffixes", service.Env("CA_DENY_DOMAIN_SUFFIXES", "") == "true",
		"do not also allow the suffixes of the provisioning domains (env CA_DENY_DOMAIN_SUFFIXES=true)")
	fs.IntVar(&cfg.MinRSABits, "min-rsa-bits", service.EnvInt("CA_MIN_RSA_BITS", 2048), "smallest RSA key signed (env CA_MIN_RSA_BITS)")
	fs.IntVar(&cfg.DefaultValidityDays, "validity-days", service.EnvInt("CA_VALIDITY_DAYS", 365), "validity when a request gives none (env CA_VALIDITY_DAYS)")
	fs.IntVar(&cfg.MaxValidityDays, "max-validity-days", service.EnvInt("CA_MAX_VALIDITY_DAYS", 825), "longest validity a request may ask (env CA_MAX_VALIDITY_DAYS)")
	fs.StringVar(&cfg.Organization, "organization", service.Env("CA_ORGANIZATION", "amtprov"), "O of the CA and its certificates (env CA_ORGANIZATION)")
	fs.IntVar(&cfg.MaxInFlight, "max-in-flight", service.EnvInt("CA_MAX_IN_FLIGHT", 64), "sign requests handled at once per replica (env CA_MAX_IN_FLIGHT)")
	service.BusFlags(fs, &natsCfg, &replicas)
	fs.StringVar(&logLevel, "log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	if err := service.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := service.CheckEnv([]string{"CA_MIN_RSA_BITS", "CA_VALIDITY_DAYS", "CA_MAX_VALIDITY_DAYS", "CA_MAX_IN_FLIGHT", "AMT_STREAM_REPLICAS"}, nil); err != nil {
		return fmt.Errorf("%w: %v", service.ErrUsage, err)
	}
	if dbURL == "" {
		return fmt.Errorf("%w: --database-url or DATABASE_URL is required", service.ErrUsage)
	}
	for _, s := range strings.Split(suffixes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.AllowedSuffixes = append(cfg.AllowedSuffixes, s)
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level: %v", service.ErrUsage, err)
	}
	// The keyring that seals the CA and provisioning keys.
	keys, err := secrets.LoadKeyring(os.Getenv)
	if err != nil {
		return err
	}

	// Logger and telemetry.
	log := telemetry.NewLogger(os.Stderr, "certauthority", level)
	lc := service.New("certauthority", log)
	tel, err := service.StartTelemetry(ctx, lc, "certauthority")
	if err != nil {
		return err
	}

	// Database: wait for it, then bring the schema up to date.
	pool, err := service.OpenDatabase(ctx, lc, dbURL, log)
	if err != nil {
		return err
	}

	// Bus.
	natsCfg.Name = "certauthority"
	nc, js, err := service.ConnectBus(ctx, lc, natsCfg, replicas, log)
	if err != nil {
		return err
	}

	// The service: organisation CA loaded (or created), sign and admin
	// subjects and the outbox relay as one runner; ops endpoints.
	ca, err := certauthority.New(ctx, cfg, pool, keys, nc, js, tel, log)
	if err != nil {
		return err
	}
	lc.Go("certauthority", ca.Run)
	lc.Ready("admin", ca.Ready)
	ln, err := net.Listen("tcp", opsAddr)
	if err != nil {
		return fmt.Errorf("ops listener: %w", err)
	}
	lc.Serve("ops", ln, lc.OpsHandler(tel.Metrics, nil))
	log.Info("certauthority ready", "ops", ln.Addr().String(), "org_ca_sha256", fmt.Sprintf("%x", sha256.Sum256(ca.OrgCACertificate().Raw)))

	// Run until a signal, then shut down in reverse order.
	return lc.Run(ctx)
}
