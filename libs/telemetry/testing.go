package telemetry

import (
	"strconv"
	"strings"

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

// SeriesValue returns the value of the first series called name in text
// (the Prometheus exposition a Providers.Metrics handler serves) whose
// labels include labels; a label wanted as "" must be absent. It is for
// tests that read what /metrics exposes.
func SeriesValue(text, name string, labels map[string]string) (float64, bool) {
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\n")
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		match := true
		for k, v := range labels {
			if v == "" {
				match = match && !strings.Contains(line, k+`="`)
			} else {
				match = match && strings.Contains(line, k+`="`+v+`"`)
			}
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		return v, err == nil
	}
	return 0, false
}
