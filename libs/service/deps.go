package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/store"
	"github.com/amtprov/amtprov/libs/telemetry"
)

// The dependencies every service main opens the same way. Each helper
// registers its resource's shutdown (and readiness check) on the lifecycle
// right after creating it, so the mains only say which ones they need.

// BusFlags registers the NATS connection flags every service takes, with
// defaults from the environment.
func BusFlags(fs *flag.FlagSet, cfg *bus.Config, replicas *int) {
	fs.StringVar(&cfg.URL, "nats", Env("NATS_URL", "nats://127.0.0.1:4222"), "NATS URL (env NATS_URL)")
	fs.StringVar(&cfg.CredsFile, "nats-creds", Env("NATS_CREDS", ""), "NATS credentials file (env NATS_CREDS)")
	fs.StringVar(&cfg.TLSCA, "nats-ca", Env("NATS_CA", ""), "CA bundle for NATS TLS (env NATS_CA)")
	fs.StringVar(&cfg.TLSCert, "nats-cert", Env("NATS_CERT", ""), "client certificate for NATS TLS (env NATS_CERT)")
	fs.StringVar(&cfg.TLSKey, "nats-key", Env("NATS_KEY", ""), "client key for NATS TLS (env NATS_KEY)")
	fs.IntVar(replicas, "stream-replicas", EnvInt("AMT_STREAM_REPLICAS", 1), "replicas of the AMT stream (env AMT_STREAM_REPLICAS)")
}

// StartTelemetry builds the service's OpenTelemetry providers from OTEL_*
// and flushes them last at shutdown.
func StartTelemetry(ctx context.Context, lc *Lifecycle, name string) (telemetry.Providers, error) {
	tel, shutdown, err := telemetry.New(ctx, name)
	if err != nil {
		return tel, err
	}
	lc.OnShutdown("telemetry", shutdown)
	return tel, nil
}

// OpenDatabase waits for PostgreSQL, brings the schema up to date (replicas
// starting together take turns under an advisory lock) and adds a
// readiness check.
func OpenDatabase(ctx context.Context, lc *Lifecycle, url string, log *slog.Logger) (*pgxpool.Pool, error) {
	pool, err := store.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	lc.OnShutdown("database", func(context.Context) error { pool.Close(); return nil })
	if err := store.Migrate(ctx, pool, log); err != nil {
		return nil, err
	}
	lc.Ready("database", pool.Ping)
	return pool, nil
}

// ConnectBus connects to NATS as cfg.Name, makes sure the AMT stream exists
// with the given replicas, drains the connection at shutdown and adds a
// readiness check.
func ConnectBus(ctx context.Context, lc *Lifecycle, cfg bus.Config, replicas int, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := bus.Connect(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	lc.OnShutdown("nats", func(context.Context) error { return nc.Drain() })
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	if _, err := bus.EnsureStream(ctx, js, bus.StreamConfig{Replicas: replicas}); err != nil {
		return nil, nil, err
	}
	lc.Ready("nats", func(context.Context) error {
		if !nc.IsConnected() {
			return errors.New("not connected")
		}
		return nil
	})
	return nc, js, nil
}
