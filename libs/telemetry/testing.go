package telemetry

import (
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// NewForTest returns providers that record every span in memory (always
// sampled, whatever OTEL_* says) and expose metrics through the same private
// Prometheus handler as New. Nothing is exported and nothing needs shutting
// down: the recorder and the pull-based metric reader start no goroutines.
func NewForTest(service string) (Providers, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	res := testResource(service)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(rec),
	)
	mp, handler, err := newMeter(res)
	if err != nil {
		// newMeter fails only if a fresh private registry rejects the
		// built-in collectors, which is a programming error.
		panic("telemetry: NewForTest: " + err.Error())
	}
	return Providers{Tracer: tp, Meter: mp, Propagator: NewPropagator(), Metrics: handler}, rec
}

func testResource(service string) *resource.Resource {
	return resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service))
}
