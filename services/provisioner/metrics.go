package provisioner

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
)

// metrics are the provisioner's instruments (ARCHITECTURE.md
// "Observability": provisioning started/succeeded/failed by code, step
// latency). The Prometheus exporter spells them with underscores, _total
// on counters and _seconds on the histograms (deploy/grafana,
// deploy/prometheus).
type metrics struct {
	// hellos: hellos handled, by decision (started, resumed, duplicate, stale).
	hellos metric.Int64Counter
	// jobs: job ends, by outcome (succeeded, failed, retry) and error code.
	jobs metric.Int64Counter
	// stepDuration: seconds per workflow step, by step and outcome, as the
	// job store recorded it (BeginStep to FinishStep).
	stepDuration metric.Float64Histogram
	// helloToProvisioned: seconds from the listener receiving the hello
	// whose run provisioned the device to the job's success commit.
	helloToProvisioned metric.Float64Histogram
	// running (amtprov.provisioner.jobs.running) is observed from the
	// replica's in-progress count; it needs no field.
}

// newMetrics creates the instruments on mp (nil: no-op instruments);
// running reports how many jobs this replica's workers hold now.
func newMetrics(mp metric.MeterProvider, running func() int64) (metrics, error) {
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	m := mp.Meter("github.com/amtprov/amtprov/services/provisioner")
	var (
		out metrics
		err error
	)
	if out.hellos, err = m.Int64Counter("amtprov.provisioner.hellos",
		metric.WithDescription("Hellos handled, by decision (started, resumed, duplicate, stale).")); err != nil {
		return metrics{}, fmt.Errorf("provisioner metrics: %w", err)
	}
	if out.jobs, err = m.Int64Counter("amtprov.provisioner.jobs",
		metric.WithDescription("Provisioning job ends, by outcome (succeeded, failed, retry) and error code.")); err != nil {
		return metrics{}, fmt.Errorf("provisioner metrics: %w", err)
	}
	// Steps range from one database round trip to a device's TLS
	// handshake or the post-commit verification (up to VerifyWait).
	if out.stepDuration, err = m.Float64Histogram("amtprov.provisioner.step.duration", metric.WithUnit("s"),
		metric.WithDescription("Time one provisioning step took, by step and outcome (ok, retry, failed), from its start to its recorded end."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)); err != nil {
		return metrics{}, fmt.Errorf("provisioner metrics: %w", err)
	}
	// A clean run takes seconds; a run after redeliveries waits out the
	// backoff schedule (minutes).
	if out.helloToProvisioned, err = m.Float64Histogram("amtprov.provisioner.hello_to_provisioned", metric.WithUnit("s"),
		metric.WithDescription("Time from the listener receiving a device's hello to the commit of its successful provisioning job."),
		metric.WithExplicitBucketBoundaries(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)); err != nil {
		return metrics{}, fmt.Errorf("provisioner metrics: %w", err)
	}
	if _, err = m.Int64ObservableGauge("amtprov.provisioner.jobs.running", metric.WithUnit("{job}"),
		metric.WithDescription("Provisioning jobs this replica's workers hold now."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(running())
			return nil
		})); err != nil {
		return metrics{}, fmt.Errorf("provisioner metrics: %w", err)
	}
	return out, nil
}

// stepFinished is the job store's StepFinished hook.
func (m metrics) stepFinished(ctx context.Context, step, outcome string, took time.Duration) {
	m.stepDuration.Record(ctx, took.Seconds(), metric.WithAttributes(attribute.String("step", step), attribute.String("outcome", outcome)))
}

// provisioned records a success at now for a hello received at receivedAt
// (by the listener's clock: a listener clock ahead of ours counts as 0).
func (m metrics) provisioned(ctx context.Context, receivedAt, now time.Time) {
	if receivedAt.IsZero() {
		return
	}
	m.helloToProvisioned.Record(ctx, max(now.Sub(receivedAt), 0).Seconds())
}
