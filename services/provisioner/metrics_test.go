package provisioner_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/provisioner"
	"github.com/amtprov/amtprov/services/provisioner/internal/provtest"
	"github.com/amtprov/amtprov/services/provisioner/internal/workflow"
)

// gatedSigner holds every sign request until open is closed: the test
// can then see jobs in flight and make one step measurably long.
type gatedSigner struct {
	next    provisioner.Signer
	open    chan struct{}
	waiting atomic.Int64 // requests held now
}

func (g *gatedSigner) SignDeviceCert(ctx context.Context, r provisioner.CertRequest) (provisioner.Cert, error) {
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	select {
	case <-g.open:
	case <-ctx.Done():
		return provisioner.Cert{}, ctx.Err()
	}
	return g.next.SignDeviceCert(ctx, r)
}

// TestMetricsOfARealRun provisions a small fleet with one replica whose
// meter is served by the real Prometheus handler, holding every job in its
// certificate step for a while, and reads the new series back: jobs
// running (all of them while held, none after), step latency by step and
// outcome, and hello-to-provisioned latency.
func TestMetricsOfARealRun(t *testing.T) {
	const n = 3
	const hold = 300 * time.Millisecond
	h := newHarness(t)
	tel, _ := telemetry.NewForTest("provisioner")
	gate := &gatedSigner{next: h.signer, open: make(chan struct{})}
	released := false
	release := func() {
		if !released {
			released = true
			close(gate.open)
		}
	}

	h.startReplicaDeps("metrics", testConfig("metrics"), provisioner.Deps{Domains: provtest.Domains{h.domain}, Signer: gate, Tel: tel})
	t.Cleanup(release) // registered after the stop: runs before it

	h.startFleet(n, 60, nil)
	// Every job reaches the certificate step and waits there.
	eventually(t, "all jobs held in the certificate step", time.Minute, func() (bool, string) {
		w := gate.waiting.Load()
		return w == n, fmt.Sprintf("%d sign requests held", w)
	})
	if v, ok := sample(t, tel.Metrics, "amtprov_provisioner_jobs_running", nil); !ok || v != n {
		t.Errorf("jobs running while %d are held = %v (exposed %v), want %d", n, v, ok, n)
	}
	time.Sleep(hold) // not waiting for a condition: makes the held step last at least hold
	release()
	eventually(t, "every device provisioned", 2*time.Minute, func() (bool, string) { return h.jobsSettled(n) })

	m := tel.Metrics
	if v, ok := sample(t, m, "amtprov_provisioner_jobs_running", nil); !ok || v != 0 {
		t.Errorf("jobs running after the run = %v (exposed %v), want 0", v, ok)
	}
	for _, step := range workflow.StepNames() {
		cnt, ok := sample(t, m, "amtprov_provisioner_step_duration_seconds_count", map[string]string{"step": step, "outcome": "ok"})
		if !ok || cnt < n {
			t.Errorf("step %s: %v ok observations (exposed %v), want >= %d", step, cnt, ok, n)
		}
		sum, _ := sample(t, m, "amtprov_provisioner_step_duration_seconds_sum", map[string]string{"step": step, "outcome": "ok"})
		if sum < 0 || sum > cnt*60 {
			t.Errorf("step %s: %v s over %v steps", step, sum, cnt)
		}
	}
	signed, _ := sample(t, m, "amtprov_provisioner_step_duration_seconds_sum", map[string]string{"step": workflow.StepSign, "outcome": "ok"})
	if signed < n*hold.Seconds() {
		t.Errorf("held certificate steps took %v s in all, want >= %v", signed, n*hold.Seconds())
	}
	cnt, ok := sample(t, m, "amtprov_provisioner_hello_to_provisioned_seconds_count", nil)
	sum, _ := sample(t, m, "amtprov_provisioner_hello_to_provisioned_seconds_sum", nil)
	if !ok || cnt != n {
		t.Fatalf("hello to provisioned: %v observations (exposed %v), want %d", cnt, ok, n)
	}
	if sum < n*hold.Seconds() || sum > n*120 {
		t.Errorf("hello to provisioned: %v s for %d devices, want between %v and %v", sum, n, n*hold.Seconds(), n*120)
	}
	if inf, _ := sample(t, m, "amtprov_provisioner_hello_to_provisioned_seconds_bucket", map[string]string{"le": "+Inf"}); inf != n {
		t.Errorf("hello to provisioned +Inf bucket = %v, want %d", inf, n)
	}
	if v, _ := sample(t, m, "amtprov_provisioner_jobs_total", map[string]string{"outcome": "succeeded"}); v != n {
		t.Errorf("jobs succeeded = %v, want %d", v, n)
	}

	// Every provisioner series the dashboard and the alert rules read is
	// one this run exposed (make test-e2e checks all services' names
	// against a live cluster; this catches a misspelt one in make test).
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	exposed := rec.Body.String()
	provisionerSeries := regexp.MustCompile(`\bamtprov_provisioner_[a-z_]+`)
	for _, f := range []string{"../../deploy/grafana/amtprov.json", "../../deploy/prometheus/alerts.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		names := provisionerSeries.FindAllString(string(b), -1)
		if len(names) == 0 {
			t.Errorf("%s reads no provisioner metric", f)
		}
		for _, name := range names {
			if !strings.Contains(exposed, "\n"+name+"{") && !strings.Contains(exposed, "\n"+name+" ") {
				t.Errorf("%s reads %s, which the provisioner does not expose", f, name)
			}
		}
	}
}

// sample scrapes h (a Prometheus text handler) and returns the value of
// the first series called name that carries every label in labels.
func sample(t testing.TB, h http.Handler, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return telemetry.SeriesValue(rec.Body.String(), name, labels)
}
