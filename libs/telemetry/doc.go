// Package telemetry builds the OpenTelemetry providers and the slog logger
// every amtprov binary uses (ARCHITECTURE.md "Observability").
//
// New reads the standard OTEL_* environment: with none set nothing is
// exported, so a developer laptop and CI need no collector. Metrics are
// always available for scraping through Providers.Metrics, which serves a
// private Prometheus registry: several services can live in one process
// (`amtprov dev`) without their series colliding in the global registry.
//
// Nothing here sets the OpenTelemetry globals; callers pass Providers down
// explicitly, so two services in one process keep separate resources.
package telemetry
