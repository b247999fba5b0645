package inventory_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/inventory"
)

// TestReadAPIMetrics runs the inventory (consumer and read API) on a real
// database and bus, sends it one hello, calls every kind of API request,
// and reads the RED series back from its /metrics: requests by method,
// route and status, with their durations.
func TestReadAPIMetrics(t *testing.T) {
	t.Parallel()
	_, js := bustest.Connect(t)
	tel, _ := telemetry.NewForTest("inventory")
	r := startInventory(t, inventory.Config{}, storetest.New(t), js, tel)
	srv := httptest.NewServer(r.svc.Handler())
	t.Cleanup(srv.Close)

	const u = "4bac9510-04a6-4321-bae2-d45ddf07b684"
	hello := &events.DeviceHello{UUID: u, SourceIP: "192.0.2.7", SourcePort: 51000, InterfaceVersion: 3,
		RootHashes: []events.RootHash{{Alg: "sha256", Hex: fmt.Sprintf("%064x", 42)}}, ReceivedAt: time.Now().UTC(), Listener: "l1"}
	if err := bus.NewPublisher(js, "/hello-listener/test", tel).Publish(context.Background(), hello, events.HelloID(u, 0)); err != nil {
		t.Fatal(err)
	}
	waitAcked(t, js, "inventory", 30*time.Second)

	const (
		list   = "/v1/devices"
		device = "/v1/devices/{uuid}"
	)
	requests := []struct {
		method, path string
		status       int
		route        string // "" = no route label (unknown path)
		wantMethod   string // as recorded
	}{
		{http.MethodGet, "/v1/devices", 200, list, "GET"},
		{http.MethodGet, "/v1/devices?limit=abc", 400, list, "GET"},
		{http.MethodGet, "/v1/devices/" + u, 200, device, "GET"},
		{http.MethodGet, "/v1/devices/not-a-uuid", 400, device, "GET"},
		{http.MethodGet, "/v1/devices/00000000-0000-4000-8000-000000000001", 404, device, "GET"},
		{http.MethodPost, "/v1/devices", 405, list, "POST"},
		{"BREW", "/v1/devices", 405, list, "_OTHER"}, // not an HTTP method: no series of its own
		{http.MethodGet, "/v2/teapots", 404, "", "GET"},
	}
	for _, rq := range requests {
		req, err := http.NewRequest(rq.method, srv.URL+rq.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != rq.status {
			t.Fatalf("%s %s: %d, want %d", rq.method, rq.path, resp.StatusCode, rq.status)
		}
	}

	text := scrape(t, tel.Metrics)
	for _, rq := range requests {
		labels := map[string]string{"http_request_method": rq.wantMethod, "http_route": rq.route,
			"http_response_status_code": strconv.Itoa(rq.status), "url_scheme": "http"}
		name := fmt.Sprintf("%s %s -> %d", rq.method, rq.path, rq.status)
		if n, ok := telemetry.SeriesValue(text, "http_server_request_duration_seconds_count", labels); !ok || n != 1 {
			t.Errorf("%s: %v requests counted (series exposed %v), want 1", name, n, ok)
		}
		sum, _ := telemetry.SeriesValue(text, "http_server_request_duration_seconds_sum", labels)
		if sum <= 0 || sum > 10 {
			t.Errorf("%s: duration %v s, want (0, 10]", name, sum)
		}
		labels["le"] = "+Inf"
		if n, _ := telemetry.SeriesValue(text, "http_server_request_duration_seconds_bucket", labels); n != 1 {
			t.Errorf("%s: +Inf bucket %v, want 1", name, n)
		}
	}
	if strings.Contains(text, `http_request_method="BREW"`) {
		t.Error("an unknown method got a series of its own")
	}
	if strings.Contains(text, "error_type=") {
		t.Error("error.type recorded for a request that did not fail with 5xx")
	}
	// The ops endpoints are not part of the API's numbers.
	if strings.Contains(text, `http_route="/metrics"`) {
		t.Error("/metrics counted as an API route")
	}

	// Every inventory series the dashboard and the alert rules read is one
	// this run exposed (make test-e2e checks all services' names against a
	// live cluster; this catches a misspelt one in make test).
	inventorySeries := regexp.MustCompile(`\b(?:inventory|http_server_request_duration)_[a-z_]+`)
	for _, f := range []string{"../../deploy/grafana/amtprov.json", "../../deploy/prometheus/alerts.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range inventorySeries.FindAllString(string(b), -1) {
			if !strings.Contains(text, "\n"+name+"{") && !strings.Contains(text, "\n"+name+" ") {
				t.Errorf("%s reads %s, which the inventory does not expose", f, name)
			}
		}
	}
}

func scrape(t testing.TB, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	return rec.Body.String()
}
