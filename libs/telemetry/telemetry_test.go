package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
)

// clearOTelEnv makes the test independent of the developer's environment.
func clearOTelEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{envTracesExporter, envEndpoint, envTracesEndpoint, envProtocol, envTracesProtocol,
		"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"} {
		t.Setenv(k, "")
	}
}

func TestNewSpanExporterFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantExp bool
		wantErr string
	}{
		{name: "nothing set", env: nil},
		{name: "explicit none wins over endpoint", env: map[string]string{envTracesExporter: "none", envEndpoint: "http://127.0.0.1:4318"}},
		{name: "endpoint implies otlp http", env: map[string]string{envEndpoint: "http://127.0.0.1:4318"}, wantExp: true},
		{name: "traces endpoint with grpc", env: map[string]string{envTracesEndpoint: "http://127.0.0.1:4317", envProtocol: "grpc"}, wantExp: true},
		{name: "explicit otlp", env: map[string]string{envTracesExporter: "OTLP"}, wantExp: true},
		{name: "traces protocol overrides general", env: map[string]string{envTracesExporter: "otlp", envProtocol: "bogus", envTracesProtocol: "grpc"}, wantExp: true},
		{name: "unknown exporter", env: map[string]string{envTracesExporter: "zipkin"}, wantErr: "zipkin"},
		{name: "unknown protocol", env: map[string]string{envTracesExporter: "otlp", envProtocol: "http/json"}, wantErr: "http/json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp, err := newSpanExporter(context.Background(), func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("newSpanExporter: %v", err)
			}
			if (exp != nil) != tt.wantExp {
				t.Fatalf("exporter = %v, want exporter: %v", exp, tt.wantExp)
			}
			if exp != nil {
				if err := exp.Shutdown(context.Background()); err != nil {
					t.Fatalf("shutdown exporter: %v", err)
				}
			}
		})
	}
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rr.Code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", rr.Code)
	}
	b, err := io.ReadAll(rr.Body)
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	return string(b)
}

func TestNewServesPrivateMetricsAndHonoursServiceNameEnv(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_SERVICE_NAME", "renamed")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
	ctx := context.Background()

	a, shutA, err := New(ctx, "svc-a")
	if err != nil {
		t.Fatalf("New a: %v", err)
	}
	t.Cleanup(func() { _ = shutA(ctx) })
	b, shutB, err := New(ctx, "svc-b") // a second service in the same process must not collide
	if err != nil {
		t.Fatalf("New b: %v", err)
	}
	t.Cleanup(func() { _ = shutB(ctx) })

	c, err := a.Meter.Meter("test").Int64Counter("widgets")
	if err != nil {
		t.Fatalf("counter: %v", err)
	}
	c.Add(ctx, 3)

	got := scrape(t, a.Metrics)
	for _, want := range []string{"widgets_total", `service_name="renamed"`, `deployment_environment="test"`, "go_goroutines"} {
		if !strings.Contains(got, want) {
			t.Errorf("/metrics of a lacks %q:\n%s", want, got)
		}
	}
	if other := scrape(t, b.Metrics); strings.Contains(other, "widgets_total") {
		t.Errorf("/metrics of b shows a's counter: registries are shared")
	}

	_, span := a.Tracer.Tracer("test").Start(ctx, "op")
	if !span.SpanContext().IsValid() {
		t.Errorf("span without exporter has no valid span context; logs would lose trace ids")
	}
	span.End()
	if err := shutA(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestNewRejectsBadEnv(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv(envTracesExporter, "jaeger")
	if _, _, err := New(context.Background(), "svc"); err == nil {
		t.Fatal("New with OTEL_TRACES_EXPORTER=jaeger succeeded, want an error")
	}
}

func TestNewForTestRecordsSpansAndPropagates(t *testing.T) {
	tel, rec := NewForTest("svc")
	ctx, parent := tel.Tracer.Tracer("test").Start(context.Background(), "parent")
	carrier := propagation.MapCarrier{}
	tel.Propagator.Inject(ctx, carrier)
	if carrier["traceparent"] == "" {
		t.Fatalf("no traceparent injected: %v", carrier)
	}
	ctx2 := tel.Propagator.Extract(context.Background(), carrier)
	_, child := tel.Tracer.Tracer("test").Start(ctx2, "child")
	child.End()
	parent.End()

	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("recorded %d spans, want 2", len(spans))
	}
	if spans[0].Parent().SpanID() != spans[1].SpanContext().SpanID() {
		t.Errorf("child's parent %s, want %s", spans[0].Parent().SpanID(), spans[1].SpanContext().SpanID())
	}
}

func TestNewLogger(t *testing.T) {
	tel, _ := NewForTest("svc")
	spanCtx, span := tel.Tracer.Tracer("test").Start(context.Background(), "op")
	defer span.End()

	tests := []struct {
		name   string
		log    func(l *slog.Logger)
		want   map[string]string
		absent []string
		noLine bool
	}{
		{
			name: "trace ids from ctx",
			log:  func(l *slog.Logger) { l.InfoContext(spanCtx, "hello", "uuid", "u1") },
			want: map[string]string{"msg": "hello", "service": "svc", "uuid": "u1",
				LogKeyTraceID: span.SpanContext().TraceID().String(), LogKeySpanID: span.SpanContext().SpanID().String()},
		},
		{
			name:   "no span, no ids",
			log:    func(l *slog.Logger) { l.Info("plain") },
			want:   map[string]string{"msg": "plain", "service": "svc"},
			absent: []string{LogKeyTraceID, LogKeySpanID},
		},
		{
			name: "secrets redacted",
			log: func(l *slog.Logger) {
				l.With("Password", "hunter2").Info("creds", "pps", "0123456789abcdef", "mebx_password", "P@ss")
			},
			want: map[string]string{"Password": redacted, "pps": redacted, "mebx_password": redacted},
		},
		{
			name:   "below level dropped",
			log:    func(l *slog.Logger) { l.Debug("noise") },
			noLine: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tt.log(NewLogger(&buf, "svc", slog.LevelInfo))
			if tt.noLine {
				if buf.Len() != 0 {
					t.Fatalf("got a line below level: %s", buf.String())
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("not one JSON line: %v: %s", err, buf.String())
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %q", k, got[k], v)
				}
			}
			for _, k := range tt.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s present: %v", k, got[k])
				}
			}
			if strings.Contains(buf.String(), "hunter2") || strings.Contains(buf.String(), "P@ss") {
				t.Errorf("secret leaked: %s", buf.String())
			}
		})
	}
}

func TestSeriesValue(t *testing.T) {
	text := "# HELP x_total X.\n# TYPE x_total counter\n" +
		"x_total{outcome=\"ok\",code=\"\"} 3\n" +
		"x_total{outcome=\"failed\",code=\"E1\"} 2\n" +
		"x_seconds_bucket{le=\"+Inf\"} 7\n" +
		"x 1.5\n"
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
		ok     bool
	}{
		{"x_total", map[string]string{"outcome": "failed"}, 2, true},
		{"x_total", map[string]string{"outcome": "ok"}, 3, true},
		{"x_total", map[string]string{"outcome": "failed", "code": "E2"}, 0, false},
		{"x_total", map[string]string{"reason": ""}, 3, true}, // absent label
		{"x_total", map[string]string{"code": ""}, 0, false},  // present on every series
		{"x_seconds_bucket", map[string]string{"le": "+Inf"}, 7, true},
		{"x", nil, 1.5, true},
		{"y", nil, 0, false},
	}
	for _, tt := range tests {
		got, ok := SeriesValue(text, tt.name, tt.labels)
		if got != tt.want || ok != tt.ok {
			t.Errorf("SeriesValue(%s, %v) = %v, %v; want %v, %v", tt.name, tt.labels, got, ok, tt.want, tt.ok)
		}
	}
}
