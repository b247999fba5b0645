package wsman_test

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/amtprov/amtprov/libs/wsman"
)

// TestSpans: one client span per call with action, class and address, the
// error recorded on failure, and no credential anywhere in the span.
func TestSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(testContext(t)) })

	_, _, addr := digestServer(t, 1000)
	c := newClient(t, addr, func(cfg *wsman.Config) {
		cfg.Username, cfg.Password, cfg.Tracer = "admin", testPassword, tp
	})
	ctx := testContext(t)
	if _, err := c.GeneralSettings(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.SetMEBxPassword(ctx, "MEBx-Secret-9"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "AMT_NoSuchClass"); err == nil {
		t.Fatal("no fixture route: want an error")
	}

	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans for 3 calls", len(spans))
	}
	wantNames := []string{"wsman Get AMT_GeneralSettings", "wsman SetMEBxPassword AMT_SetupAndConfigurationService", "wsman Get AMT_NoSuchClass"}
	for i, s := range spans {
		if s.Name() != wantNames[i] {
			t.Errorf("span %d name %q, want %q", i, s.Name(), wantNames[i])
		}
		attrs := map[attribute.Key]attribute.Value{}
		for _, a := range s.Attributes() {
			attrs[a.Key] = a.Value
		}
		if attrs["wsman.resource_class"].AsString() == "" || attrs["wsman.action"].AsString() == "" ||
			attrs["server.address"].AsString() != "127.0.0.1" || attrs["server.port"].AsInt64() == 0 {
			t.Errorf("span %d attributes %v", i, s.Attributes())
		}
		dump := s.Name() + s.Status().Description
		for _, a := range s.Attributes() {
			dump += string(a.Key) + a.Value.Emit()
		}
		for _, e := range s.Events() {
			dump += e.Name
			for _, a := range e.Attributes {
				dump += a.Value.Emit()
			}
		}
		for _, secret := range []string{testPassword, "MEBx-Secret-9", "response="} {
			if strings.Contains(dump, secret) {
				t.Errorf("span %d carries %q", i, secret)
			}
		}
	}
	if spans[2].Status().Code != codes.Error || len(spans[2].Events()) == 0 {
		t.Errorf("failed call: status %v, %d events", spans[2].Status(), len(spans[2].Events()))
	}
	if spans[0].Status().Code == codes.Error {
		t.Error("successful call marked as error")
	}
}
