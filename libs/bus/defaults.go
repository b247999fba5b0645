package bus

import (
	"log/slog"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/amtprov/amtprov/libs/telemetry"
)

// withDefaults fills the unset fields of tel with no-op providers, so a
// zero telemetry.Providers is valid (nothing traced or measured).
func withDefaults(tel telemetry.Providers) telemetry.Providers {
	if tel.Tracer == nil {
		tel.Tracer = tracenoop.NewTracerProvider()
	}
	if tel.Meter == nil {
		tel.Meter = metricnoop.NewMeterProvider()
	}
	if tel.Propagator == nil {
		tel.Propagator = telemetry.NewPropagator()
	}
	return tel
}

func noopCounter() metric.Int64Counter { return metricnoop.Int64Counter{} }

func noopHistogram() metric.Float64Histogram { return metricnoop.Float64Histogram{} }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
