package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amtprov/amtprov/libs/events"
)

// benchCollector reads the AMT stream from its start with an ordered
// consumer and keeps, per device, the first hello's received_at and the
// time of its provisioning.succeeded or .failed event. Everything the
// benchmark reports about speed comes from these event times, not from
// the bench process's own clock.
type benchCollector struct {
	mu        sync.Mutex
	devices   int
	hellos    int // hello events, repeats included
	firstSeen time.Time
	first     map[string]time.Time // uuid -> first hello received_at
	succeeded map[string]time.Time // uuid -> succeeded at
	failed    map[string]time.Time // uuid -> failed at (cleared by a later success)
	bad       int                  // messages that did not parse
	done      chan struct{}        // closed when every device succeeded or failed
	closed    bool
	// okIDs is, per device, every distinct provisioning.succeeded event
	// id (ce-id) read and how many times each was delivered: a chaos run
	// checks each device has exactly one (bench_chaos.go).
	okIDs    map[string]map[string]int
	allOK    chan struct{} // closed when every device has succeeded
	allOKSet bool
}

func newBenchCollector(devices int) *benchCollector {
	return &benchCollector{
		devices:   devices,
		first:     make(map[string]time.Time, devices),
		succeeded: make(map[string]time.Time, devices),
		failed:    map[string]time.Time{},
		done:      make(chan struct{}),
		okIDs:     make(map[string]map[string]int, devices),
		allOK:     make(chan struct{}),
	}
}

// benchSubjects are the events the collector needs.
var benchSubjects = []string{
	events.SubjectDeviceHello + ".>",
	events.SubjectProvisioning + ".succeeded.>",
	events.SubjectProvisioning + ".failed.>",
}

// start consumes in the background; the returned stop ends it.
func (c *benchCollector) start(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (stop func(), err error) {
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: benchSubjects,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("bench: read the %s stream: %w", events.StreamName, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { c.add(m.Subject(), m.Headers(), m.Data()) },
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			log.Warn("bench: reading the stream", "err", err)
		}))
	if err != nil {
		return nil, fmt.Errorf("bench: consume the %s stream: %w", events.StreamName, err)
	}
	return cc.Stop, nil
}

// add records one event; a message that is not a valid event is counted
// and otherwise ignored.
func (c *benchCollector) add(subject string, h map[string][]string, data []byte) {
	env, err := events.Parse(subject, h, data)
	if err != nil {
		c.mu.Lock()
		c.bad++
		c.mu.Unlock()
		return
	}
	p, err := env.Decode()
	if err != nil {
		c.mu.Lock()
		c.bad++
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch v := p.(type) {
	case *events.DeviceHello:
		c.hellos++
		at := v.ReceivedAt
		if c.firstSeen.IsZero() || at.Before(c.firstSeen) {
			c.firstSeen = at
		}
		if f, ok := c.first[v.UUID]; !ok || at.Before(f) {
			c.first[v.UUID] = at
		}
	case *events.Provisioning:
		switch v.Event {
		case events.ProvisioningSucceeded:
			if _, ok := c.succeeded[v.UUID]; !ok {
				c.succeeded[v.UUID] = v.At
			}
			delete(c.failed, v.UUID)
			ids := c.okIDs[v.UUID]
			if ids == nil {
				ids = map[string]int{}
				c.okIDs[v.UUID] = ids
			}
			ids[env.ID]++
		case events.ProvisioningFailed:
			if _, ok := c.succeeded[v.UUID]; !ok {
				c.failed[v.UUID] = v.At
			}
		}
	}
	if !c.closed && len(c.succeeded)+len(c.failed) >= c.devices {
		c.closed = true
		close(c.done)
	}
	if !c.allOKSet && len(c.succeeded) >= c.devices {
		c.allOKSet = true
		close(c.allOK)
	}
}

// succeededEvents returns, for uuid, the distinct provisioning.succeeded
// event ids read and the deliveries beyond the first of each (the same
// event published again, e.g. by an outbox relay that died before it
// marked the row sent: consumers de-duplicate it by id).
func (c *benchCollector) succeededEvents(uuid string) (distinct, redelivered int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.okIDs[uuid] {
		distinct++
		redelivered += n - 1
	}
	return distinct, redelivered
}

// counts returns devices provisioned and failed so far.
func (c *benchCollector) counts() (provisioned, failed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.succeeded), len(c.failed)
}

// benchLatency is the latency_ms object of INTERFACES.md.
type benchLatency struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// benchPoint is one point of "devices provisioned over time".
type benchPoint struct {
	T     float64 `json:"t_s"`
	Count int     `json:"provisioned"`
}

// benchMeasures is what the events say about one run.
type benchMeasures struct {
	Provisioned     int
	Failed          int
	Hellos          int
	HellosPerS      float64
	ProvisionedPerS float64
	Latency         benchLatency
	Curve           []benchPoint // provisioned count, seconds after the first hello
	SpanS           float64      // first hello to last success
	Unparsed        int
}

// maxCurvePoints bounds the points kept for the chart per run.
const maxCurvePoints = 400

// measures computes the run's figures: hellos/s over the window in which
// the devices' first hellos arrived, provisioned/s from the first hello to the last success,
// and latency percentiles of (succeeded at - the device's first hello).
func (c *benchCollector) measures() benchMeasures {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := benchMeasures{Provisioned: len(c.succeeded), Failed: len(c.failed), Hellos: c.hellos, Unparsed: c.bad}
	// Ingestion rate of the first wave: distinct devices' first hellos over
	// the window in which they arrived (repeat hellos come a minute apart
	// and would measure the firmware's schedule, not the listener).
	var lastFirst time.Time
	for _, f := range c.first {
		if f.After(lastFirst) {
			lastFirst = f
		}
	}
	if w := lastFirst.Sub(c.firstSeen).Seconds(); w > 0 {
		m.HellosPerS = float64(len(c.first)) / w
	}
	var lat []float64
	var done []float64
	for uuid, at := range c.succeeded {
		done = append(done, at.Sub(c.firstSeen).Seconds())
		if f, ok := c.first[uuid]; ok {
			lat = append(lat, float64(at.Sub(f))/float64(time.Millisecond))
		}
	}
	m.setProgress(lat, done)
	return m
}

// setProgress sets the latency percentiles (lat: ms per device), the
// provisioned rate and span and the curve (done: seconds from the first
// hello to each success) from unsorted observations.
func (m *benchMeasures) setProgress(lat, done []float64) {
	slices.Sort(lat)
	slices.Sort(done)
	m.Latency = benchLatency{P50: percentile(lat, 50), P95: percentile(lat, 95), P99: percentile(lat, 99)}
	m.ProvisionedPerS, m.SpanS = 0, 0
	if len(done) > 0 {
		m.SpanS = done[len(done)-1]
		if m.SpanS > 0 {
			m.ProvisionedPerS = float64(len(done)) / m.SpanS
		}
	}
	m.Curve = curve(done, maxCurvePoints)
}

// percentile is the nearest-rank percentile of sorted values (0 for none).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return math.Round(sorted[rank-1]*10) / 10
}

// curve turns sorted completion times into at most n (time, count) points,
// always keeping the origin and the last completion.
func curve(done []float64, n int) []benchPoint {
	pts := []benchPoint{{T: 0, Count: 0}}
	if len(done) == 0 {
		return pts
	}
	step := max(1, len(done)/n)
	for i := step - 1; i < len(done); i += step {
		pts = append(pts, benchPoint{T: round3(done[i]), Count: i + 1})
	}
	if last := pts[len(pts)-1]; last.Count != len(done) {
		pts = append(pts, benchPoint{T: round3(done[len(done)-1]), Count: len(done)})
	}
	return pts
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// since is seconds after start, rounded to the millisecond.
func since(start time.Time) float64 { return round3(time.Since(start).Seconds()) }

// benchLagSample is one sample of the provisioner consumer's backlog.
type benchLagSample struct {
	T          float64 `json:"t_s"`
	Pending    uint64  `json:"pending"`     // hellos not yet delivered to any replica
	AckPending int     `json:"ack_pending"` // delivered, not yet acknowledged (being worked on)
}

// sampleLag records the durable consumer's backlog every interval until
// ctx ends. A consumer that does not exist yet is skipped silently (the
// provisioner creates it when it starts); other errors end sampling and
// are returned.
func sampleLag(ctx context.Context, js jetstream.JetStream, durable string, interval time.Duration, start time.Time) ([]benchLagSample, error) {
	var out []benchLagSample
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return out, nil
		case <-t.C:
		}
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cons, err := js.Consumer(ictx, events.StreamName, durable)
		var info *jetstream.ConsumerInfo
		if err == nil {
			info, err = cons.Info(ictx)
		}
		cancel()
		switch {
		case err == nil:
			out = append(out, benchLagSample{T: since(start), Pending: info.NumPending, AckPending: info.NumAckPending})
		case ctx.Err() != nil:
			return out, nil
		case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, context.DeadlineExceeded):
		default:
			return out, fmt.Errorf("bench: consumer %s info: %w", durable, err)
		}
	}
}

// groundTruthMeasures recomputes provisioned/s, latency and the curve from
// the simulator's observations (time first seen post-provisioning, to the
// poll interval) against the first hellos on the stream; for a run whose
// provisioning events had not all reached the stream when every device was
// already provisioned.
func (c *benchCollector) groundTruthMeasures(m benchMeasures, seen map[string]time.Time) benchMeasures {
	c.mu.Lock()
	defer c.mu.Unlock()
	var lat, done []float64
	for uuid, at := range seen {
		f, ok := c.first[uuid]
		if !ok {
			continue // provisioned before this run's hellos: not ours
		}
		lat = append(lat, float64(at.Sub(f))/float64(time.Millisecond))
		done = append(done, at.Sub(c.firstSeen).Seconds())
	}
	m.Provisioned = len(done)
	m.setProgress(lat, done)
	return m
}
