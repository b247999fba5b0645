package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Providers is what a service needs to trace, measure and propagate context.
// The zero value is not usable; build it with New or NewForTest.
type Providers struct {
	Tracer     trace.TracerProvider
	Meter      metric.MeterProvider
	Propagator propagation.TextMapPropagator
	// Metrics serves this process's meter (and Go runtime/process
	// collectors) in the Prometheus text format, for GET /metrics.
	Metrics http.Handler
}

// Environment variables New reads itself; the OTLP exporters read the
// OTEL_EXPORTER_OTLP_* endpoint, header, timeout and TLS variables, and the
// trace SDK reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
const (
	envTracesExporter   = "OTEL_TRACES_EXPORTER"
	envEndpoint         = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint   = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envProtocol         = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol   = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	protocolGRPC        = "grpc"
	protocolHTTPProto   = "http/protobuf"
	tracesExporterOTLP  = "otlp"
	tracesExporterNone  = "none"
	defaultOTLPProtocol = protocolHTTPProto // the OTel specification's default
)

// New builds the providers of one service from the standard OTEL_*
// environment and returns them with a shutdown function that flushes
// pending spans and stops the exporters; call it last, after the service
// has stopped producing telemetry.
//
// Traces are exported over OTLP when OTEL_TRACES_EXPORTER is "otlp" or an
// OTLP endpoint variable is set, with the protocol from
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL ("grpc"
// or "http/protobuf", the default). OTEL_TRACES_EXPORTER=none or no variable
// at all means spans are created (so trace ids still reach logs and
// headers) but never leave the process. The resource is service.name =
// service, overridden by OTEL_SERVICE_NAME and extended by
// OTEL_RESOURCE_ATTRIBUTES as the specification requires.
func New(ctx context.Context, service string) (Providers, func(context.Context) error, error) {
	res, err := newResource(ctx, service)
	if err != nil {
		return Providers{}, nil, err
	}
	exp, err := newSpanExporter(ctx, os.Getenv)
	if err != nil {
		return Providers{}, nil, err
	}
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if exp != nil {
		topts = append(topts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(topts...)

	mp, handler, err := newMeter(res)
	if err != nil {
		return Providers{}, nil, errors.Join(err, tp.Shutdown(ctx))
	}
	shutdown := func(ctx context.Context) error {
		var errs []error
		if err := tp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shut down tracer provider: %w", err))
		}
		if err := mp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shut down meter provider: %w", err))
		}
		return errors.Join(errs...)
	}
	return Providers{
		Tracer:     tp,
		Meter:      mp,
		Propagator: NewPropagator(),
		Metrics:    handler,
	}, shutdown, nil
}

// NewPropagator returns the W3C trace-context + baggage propagator every
// amtprov hop uses (ARCHITECTURE.md "The event contract": traceparent and
// tracestate travel in NATS headers).
func NewPropagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

func newResource(ctx context.Context, service string) (*resource.Resource, error) {
	// WithFromEnv comes last so OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override the built-in name, as the specification requires.
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("build telemetry resource for %s: %w", service, err)
	}
	return res, nil
}

// newSpanExporter decides from the environment whether and how to export
// spans; nil means no export.
func newSpanExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	kind := strings.ToLower(strings.TrimSpace(getenv(envTracesExporter)))
	switch kind {
	case tracesExporterNone:
		return nil, nil
	case "":
		if getenv(envEndpoint) == "" && getenv(envTracesEndpoint) == "" {
			return nil, nil
		}
	case tracesExporterOTLP:
	default:
		return nil, fmt.Errorf("%s=%q: supported values are %q and %q", envTracesExporter, kind, tracesExporterOTLP, tracesExporterNone)
	}
	proto := strings.TrimSpace(getenv(envTracesProtocol))
	if proto == "" {
		proto = strings.TrimSpace(getenv(envProtocol))
	}
	if proto == "" {
		proto = defaultOTLPProtocol
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch proto {
	case protocolGRPC:
		exp, err = otlptracegrpc.New(ctx)
	case protocolHTTPProto:
		exp, err = otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("OTLP traces protocol %q: supported values are %q and %q", proto, protocolGRPC, protocolHTTPProto)
	}
	if err != nil {
		return nil, fmt.Errorf("create OTLP %s trace exporter: %w", proto, err)
	}
	return exp, nil
}

// newMeter builds a meter provider read by the OTel Prometheus exporter on
// a private registry, and the handler that serves that registry.
func newMeter(res *resource.Resource) (*sdkmetric.MeterProvider, http.Handler, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, fmt.Errorf("register Go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, fmt.Errorf("register process collector: %w", err)
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, fmt.Errorf("create Prometheus metric exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(exp))
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError})
	return mp, h, nil
}
