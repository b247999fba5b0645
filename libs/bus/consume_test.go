package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-kit/kit/endpoint"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/telemetry"
)

// ---- helpers ----

func uuidN(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

func hello(i int) *events.DeviceHello {
	return &events.DeviceHello{
		UUID: uuidN(i), SourceIP: "192.0.2.7", SourcePort: 40000, InterfaceVersion: 3, RetryCount: 0,
		RootHashes: []events.RootHash{{Alg: "sha256", Hex: "ab"}},
		ReceivedAt: time.Date(2026, 11, 26, 12, 0, 0, i, time.UTC), Listener: "test",
	}
}

// testTel returns providers recording spans in memory and metrics in a
// manual reader.
func testTel(t *testing.T) (telemetry.Providers, *tracetest.SpanRecorder, *sdkmetric.ManualReader) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	reader := sdkmetric.NewManualReader()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(rec))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	return telemetry.Providers{Tracer: tp, Meter: mp, Propagator: telemetry.NewPropagator()}, rec, reader
}

func ensureConsumer(t *testing.T, js jetstream.JetStream, cfg bus.ConsumerConfig) jetstream.Consumer {
	t.Helper()
	c, err := bus.EnsureConsumer(testCtx(t, 10*time.Second), js, cfg)
	if err != nil {
		t.Fatalf("EnsureConsumer: %v", err)
	}
	return c
}

func consume(t *testing.T, cons jetstream.Consumer, ep endpoint.Endpoint, opts bus.ConsumeOptions) *bus.Subscription {
	t.Helper()
	sub, err := bus.Consume(context.Background(), cons, ep, opts)
	if err != nil {
		t.Fatalf("Consume: %v", err)
	}
	t.Cleanup(func() {
		if err := sub.Stop(testCtx(t, 10*time.Second)); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return sub
}

func publishN(t *testing.T, p *bus.Publisher, from, to int) {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	for i := from; i < to; i++ {
		if err := p.Publish(ctx, hello(i), events.HelloID(uuidN(i), 0)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// counts records how often each event id reached the handler.
type counts struct {
	mu sync.Mutex
	m  map[string]int
	n  int
}

func newCounts() *counts { return &counts{m: map[string]int{}} }

func (c *counts) add(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[id]++
	c.n++
}

func (c *counts) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *counts) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

func (c *counts) dupes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var d []string
	for id, n := range c.m {
		if n != 1 {
			d = append(d, fmt.Sprintf("%s×%d", id, n))
		}
	}
	return d
}

func consumerInfo(t *testing.T, cons jetstream.Consumer) *jetstream.ConsumerInfo {
	t.Helper()
	info, err := cons.Info(testCtx(t, 5*time.Second))
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	return info
}

// counterValue sums the data points of an Int64 sum metric whose
// attributes include all of want.
func counterValue(t *testing.T, reader *sdkmetric.ManualReader, name string, want ...attribute.KeyValue) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	var total int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("%s is %T, want Sum[int64]", name, m.Data)
			}
		dp:
			for _, p := range sum.DataPoints {
				for _, kv := range want {
					if v, ok := p.Attributes.Value(kv.Key); !ok || v != kv.Value {
						continue dp
					}
				}
				total += p.Value
			}
		}
	}
	return total
}

// gaugeValue returns the Int64 gauge point whose attributes include want.
func gaugeValue(t *testing.T, reader *sdkmetric.ManualReader, name string, want ...attribute.KeyValue) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			g, ok := m.Data.(metricdata.Gauge[int64])
			if m.Name != name || !ok {
				continue
			}
		dp:
			for _, p := range g.DataPoints {
				for _, kv := range want {
					if v, ok := p.Attributes.Value(kv.Key); !ok || v != kv.Value {
						continue dp
					}
				}
				return p.Value
			}
		}
	}
	t.Fatalf("no %s point with %v", name, want)
	return 0
}

// TestConsumerLagGauge: the backlog of the durable is observable.
func TestConsumerLagGauge(t *testing.T) {
	t.Parallel()
	_, js := bustest.Connect(t)
	tel, _, reader := testTel(t)
	publishN(t, bus.NewPublisher(js, "/test", tel), 0, 7)
	cons := ensureConsumer(t, js, bus.ConsumerConfig{Durable: "lag", AckWait: time.Minute})
	gate := make(chan struct{})
	consume(t, cons, func(context.Context, any) (any, error) {
		<-gate
		return nil, nil
	}, bus.ConsumeOptions{Workers: 1, Tel: tel})
	// One message in the handler and (with one worker) at most one buffered:
	// the rest are still pending on the server.
	eventually(t, 10*time.Second, "lag observed", func() bool {
		p := gaugeValue(t, reader, "amtprov.bus.consumer.lag", attribute.String("state", "pending"))
		a := gaugeValue(t, reader, "amtprov.bus.consumer.lag", attribute.String("state", "ack_pending"))
		return a >= 1 && p+a == 7
	})
	close(gate)
	eventually(t, 10*time.Second, "lag drained", func() bool {
		return gaugeValue(t, reader, "amtprov.bus.consumer.lag", attribute.String("state", "pending"))+
			gaugeValue(t, reader, "amtprov.bus.consumer.lag", attribute.String("state", "ack_pending")) == 0
	})
}

// ---- tests ----

func TestPublishConsumeRoundTripContinuesTrace(t *testing.T) {
	t.Parallel()
	_, js := bustest.Connect(t)
	tel, rec, _ := testTel(t)
	pub := bus.NewPublisher(js, "/test/host-1", tel)

	ctx, parent := tel.Tracer.Tracer("test").Start(testCtx(t, 10*time.Second), "hello received")
	if err := pub.Publish(ctx, hello(1), "evt-1"); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	parent.End()

	type got struct {
		env events.Envelope
		sc  trace.SpanContext
		del uint64
	}
	gotc := make(chan got, 1)
	cons := ensureConsumer(t, js, bus.ConsumerConfig{Durable: "roundtrip"})
	consume(t, cons, func(ctx context.Context, req any) (any, error) {
		gotc <- got{req.(events.Envelope), trace.SpanContextFromContext(ctx), bus.Delivery(ctx)}
		return nil, nil
	}, bus.ConsumeOptions{Tel: tel, Name: "roundtrip"})

	var g got
	select {
	case g = <-gotc:
	case <-time.After(10 * time.Second):
		t.Fatal("event not delivered")
	}
	if g.env.ID != "evt-1" || g.env.Type != events.TypeDeviceHello || g.env.Source != "/test/host-1" ||
		g.env.Topic != events.SubjectDeviceHello+"."+uuidN(1) || g.env.Subject != uuidN(1) {
		t.Fatalf("envelope = %+v", g.env)
	}
	p, err := g.env.Decode()
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if h := p.(*events.DeviceHello); h.UUID != uuidN(1) || len(h.RootHashes) != 1 {
		t.Fatalf("payload = %+v", h)
	}
	if g.del != 1 {
		t.Errorf("Delivery(ctx) = %d, want 1", g.del)
	}

	// The message on the stream carries the CloudEvents headers and traceparent.
	raw, err := js.Stream(testCtx(t, 5*time.Second), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := raw.GetMsg(testCtx(t, 5*time.Second), 1)
	if err != nil {
		t.Fatalf("get stored message: %v", err)
	}
	for _, h := range []string{"ce-specversion", "ce-id", "ce-type", "ce-source", "ce-time", "ce-subject", "Nats-Msg-Id", "traceparent"} {
		if m.Header.Get(h) == "" {
			t.Errorf("stored message lacks header %s: %v", h, m.Header)
		}
	}

	var producer, consumer sdktrace.ReadOnlySpan
	eventually(t, 5*time.Second, "producer and consumer spans", func() bool {
		for _, s := range rec.Ended() {
			switch s.SpanKind() {
			case trace.SpanKindProducer:
				producer = s
			case trace.SpanKindConsumer:
				consumer = s
			}
		}
		return producer != nil && consumer != nil
	})
	if producer.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("producer span's parent = %s, want the caller's span %s", producer.Parent().SpanID(), parent.SpanContext().SpanID())
	}
	if consumer.Parent().SpanID() != producer.SpanContext().SpanID() || consumer.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("consumer span parent %s trace %s, want child of producer %s in trace %s",
			consumer.Parent().SpanID(), consumer.SpanContext().TraceID(), producer.SpanContext().SpanID(), parent.SpanContext().TraceID())
	}
	if g.sc.SpanID() != consumer.SpanContext().SpanID() {
		t.Errorf("handler ctx span = %s, want the consumer span %s", g.sc.SpanID(), consumer.SpanContext().SpanID())
	}
}

func TestPublishDeduplicatesByMsgID(t *testing.T) {
	t.Parallel()
	_, js := bustest.Connect(t)
	tel, _, reader := testTel(t)
	pub := bus.NewPublisher(js, "/test", tel)
	ctx := testCtx(t, 10*time.Second)

	id := events.HelloID(uuidN(1), 0)
	for range 3 { // a firmware retry of the same hello, published three times
		if err := pub.Publish(ctx, hello(1), id); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	if err := pub.Publish(ctx, hello(1), events.HelloID(uuidN(1), 1)); err != nil { // next retry count: a new fact
		t.Fatalf("Publish: %v", err)
	}
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages, want 2 (duplicates collapsed)", info.State.Msgs)
	}
	if got := counterValue(t, reader, "amtprov.bus.published", attribute.String("outcome", "duplicate")); got != 2 {
		t.Errorf("published{outcome=duplicate} = %d, want 2", got)
	}
	if got := counterValue(t, reader, "amtprov.bus.published", attribute.String("outcome", "ok")); got != 2 {
		t.Errorf("published{outcome=ok} = %d, want 2", got)
	}
}

func TestPublishErrors(t *testing.T) {
	t.Parallel()
	t.Run("malformed envelope", func(t *testing.T) {
		_, js := bustest.Connect(t)
		pub := bus.NewPublisher(js, "/test", telemetry.Providers{})
		env, err := events.New("/test", hello(1), "x")
		if err != nil {
			t.Fatal(err)
		}
		env.Topic = events.SubjectCertIssued + "." + uuidN(1) // subject of another type
		if err := pub.PublishEnvelope(testCtx(t, 5*time.Second), env); !errors.Is(err, events.ErrInvalid) {
			t.Fatalf("err = %v, want events.ErrInvalid", err)
		}
		if err := pub.Publish(testCtx(t, 5*time.Second), &events.DeviceHello{UUID: "a.b"}, ""); err == nil {
			t.Fatal("key with a dot accepted")
		}
	})
	t.Run("no stream retries until ctx ends", func(t *testing.T) {
		nc, err := nats.Connect(bustest.RunServer(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		pub := bus.NewPublisher(js, "/test", telemetry.Providers{})
		err = pub.Publish(testCtx(t, 300*time.Millisecond), hello(1), "")
		if err == nil {
			t.Fatal("publish without a stream succeeded")
		}
	})
}

// TestConsumeDecisions drives one message through each handler outcome and
// checks what JetStream did with it: redelivery count and spacing, or none.
func TestConsumeDecisions(t *testing.T) {
	t.Parallel()
	fail := errors.New("transient")
	tests := []struct {
		name string
		// results[i] is returned on delivery i+1; past the end the handler succeeds.
		results    []error
		backoff    []time.Duration
		wantCalls  int
		wantGaps   []time.Duration // minimum time between consecutive deliveries
		wantAction string          // outcome of the last settle
		maxDeliver int
	}{
		{name: "ack first time", results: nil, wantCalls: 1, wantAction: "ack"},
		{name: "terminal", results: []error{fmt.Errorf("no profile: %w", bus.ErrTerminal)}, wantCalls: 1, wantAction: "term"},
		{name: "invalid", results: []error{fmt.Errorf("bad body: %w", events.ErrInvalid)}, wantCalls: 1, wantAction: "term"},
		{name: "backoff permanent", results: []error{backoff.Permanent(fail)}, wantCalls: 1, wantAction: "term"},
		{
			name: "nak with backoff by delivery count", results: []error{fail, fail},
			backoff: []time.Duration{150 * time.Millisecond, 400 * time.Millisecond}, wantCalls: 3,
			wantGaps: []time.Duration{150 * time.Millisecond, 400 * time.Millisecond}, wantAction: "ack",
		},
		{
			name: "retry after overrides backoff", results: []error{&bus.RetryAfterError{After: 300 * time.Millisecond, Err: fail}},
			backoff: []time.Duration{time.Millisecond}, wantCalls: 2, wantGaps: []time.Duration{300 * time.Millisecond}, wantAction: "ack",
		},
		{
			name: "gives up with term on the last allowed delivery", results: []error{fail, fail, fail, fail},
			backoff: []time.Duration{10 * time.Millisecond}, maxDeliver: 3, wantCalls: 3, wantAction: "term",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, js := bustest.Connect(t)
			tel, _, reader := testTel(t)
			publishN(t, bus.NewPublisher(js, "/test", tel), 1, 2)
			// AckWait far beyond the test: any redelivery seen comes from NakWithDelay.
			cons := ensureConsumer(t, js, bus.ConsumerConfig{Durable: "decisions", AckWait: time.Minute, MaxDeliver: tt.maxDeliver})

			var (
				mu        sync.Mutex
				times     []time.Time
				delivered []uint64
			)
			consume(t, cons, func(ctx context.Context, _ any) (any, error) {
				mu.Lock()
				defer mu.Unlock()
				times = append(times, time.Now())
				delivered = append(delivered, bus.Delivery(ctx))
				if n := len(times); n <= len(tt.results) {
					return nil, tt.results[n-1]
				}
				return nil, nil
			}, bus.ConsumeOptions{Backoff: tt.backoff, Tel: tel})

			// Settled for good: nothing pending, nothing awaiting an ack.
			eventually(t, 10*time.Second, "message settled", func() bool {
				info := consumerInfo(t, cons)
				return info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == 1
			})
			mu.Lock()
			defer mu.Unlock()
			if len(times) != tt.wantCalls {
				t.Fatalf("handler called %d times, want %d", len(times), tt.wantCalls)
			}
			for i, d := range delivered {
				if d != uint64(i+1) {
					t.Errorf("delivery %d saw Delivery(ctx) = %d", i+1, d)
				}
			}
			for i, min := range tt.wantGaps {
				if gap := times[i+1].Sub(times[i]); gap < min {
					t.Errorf("redelivery %d came after %s, want at least %s", i+1, gap, min)
				}
			}
			info := consumerInfo(t, cons)
			if info.NumRedelivered != 0 {
				t.Errorf("NumRedelivered = %d after settling", info.NumRedelivered)
			}
			if lag := gaugeValue(t, reader, "amtprov.bus.consumer.lag", attribute.String("state", "pending")); lag != 0 {
				t.Errorf("consumer lag after settling = %d, want 0", lag)
			}
			if got := counterValue(t, reader, "amtprov.bus.consumed", attribute.String("outcome", tt.wantAction)); got != 1 {
				t.Errorf("consumed{outcome=%s} = %d, want 1", tt.wantAction, got)
			}
		})
	}
}

func TestConsumeTerminatesInvalidMessages(t *testing.T) {
	t.Parallel()
	nc, js := bustest.Connect(t)
	tel, _, reader := testTel(t)
	ctx := testCtx(t, 10*time.Second)

	// Garbage under the stream's subjects, as a buggy or hostile publisher could send.
	bad := []*nats.Msg{
		{Subject: events.SubjectDeviceHello + ".x", Data: []byte("not json")},                                           // no headers
		{Subject: events.SubjectDeviceHello + ".x", Header: nats.Header{"ce-specversion": {"0.3"}}, Data: []byte("{}")}, // wrong version
	}
	for _, m := range bad {
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	_ = nc
	publishN(t, bus.NewPublisher(js, "/test", tel), 1, 2) // one valid event after them

	got := newCounts()
	cons := ensureConsumer(t, js, bus.ConsumerConfig{Durable: "invalid", AckWait: time.Minute})
	consume(t, cons, func(_ context.Context, req any) (any, error) {
		got.add(req.(events.Envelope).ID)
		return nil, nil
	}, bus.ConsumeOptions{Tel: tel})

	eventually(t, 10*time.Second, "all settled", func() bool {
		info := consumerInfo(t, cons)
		return info.AckFloor.Stream == 3 && info.NumAckPending == 0
	})
	if got.total() != 1 {
		t.Fatalf("handler saw %d events, want only the valid one", got.total())
	}
	if n := counterValue(t, reader, "amtprov.bus.consumed", attribute.String("outcome", "term"), attribute.String("subject_prefix", "invalid")); n != 2 {
		t.Errorf("consumed{term,invalid} = %d, want 2", n)
	}
}

func TestConsumeHandlerPanicAndFailerAreRetried(t *testing.T) {
	t.Parallel()
	_, js := bustest.Connect(t)
	publishN(t, bus.NewPublisher(js, "/test", telemetry.Providers{}), 1, 2)
	cons := ensureConsumer(t, js, bus.ConsumerConfig{Durable: "panics", AckWait: time.Minute})
	var calls atomic.Int32
	consume(t, cons, func(context.Context, any) (any, error) {
		switch calls.Add(1) {
		case 1:
			panic("boom")
		case 2:
			return failed{errors.New("response says failed")}, nil
		}
		return nil, nil
	}, bus.ConsumeOptions{Backoff: []time.Duration{10 * time.Millisecond}})
	eventually(t, 10*time.Second, "acked after two failures", func() bool {
		info := consumerInfo(t, cons)
		return info.AckFloor.Stream == 1 && info.NumAckPending == 0
	})
	if n := calls.Load(); n != 3 {
		t.Fatalf("handler called %d times, want 3 (panic, Failer, success)", n)
	}
}

type failed struct{ err error }

func (f failed) Failed() error { return f.err }

func TestConsumeRespectsWorkerBound(t *testing.T) {
	t.Parallel()
	const workers, msgs = 4, 40
	_, js := bustest.Connect(t)
	publishN(t, bus.NewPublisher(js, "/test", telemetry.Providers{}), 0, msgs)
	cons := ensureConsumer(t, js, bus.ConsumerConfig{Durable: "bound", AckWait: time.Minute})

	var inflight, peak atomic.Int32
	gate := make(chan struct{})
	done := newCounts()
	consume(t, cons, func(_ context.Context, req any) (any, error) {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-gate
		inflight.Add(-1)
		done.add(req.(events.Envelope).ID)
		return nil, nil
	}, bus.ConsumeOptions{Workers: workers})

	eventually(t, 10*time.Second, "all workers busy", func() bool { return inflight.Load() == workers })
	close(gate)
	eventually(t, 20*time.Second, "all handled", func() bool { return done.total() == msgs })
	if p := peak.Load(); p != workers {
		t.Fatalf("peak concurrent handlers = %d, want %d", p, workers)
	}
	if d := done.dupes(); len(d) > 0 {
		t.Fatalf("handled more than once: %v", d)
	}
}

// TestStopDrainsThenResumeLosesNothing stops a busy consumer mid-stream and
// starts a new one on the same durable: every event is handled exactly once,
// and without waiting for any AckWait (one minute here).
func TestStopDrainsThenResumeLosesNothing(t *testing.T) {
	t.Parallel()
	const msgs = 600
	_, js := bustest.Connect(t)
	publishN(t, bus.NewPublisher(js, "/test", telemetry.Providers{}), 0, msgs)
	cfg := bus.ConsumerConfig{Durable: "drain", AckWait: time.Minute}
	cons := ensureConsumer(t, js, cfg)

	got := newCounts()
	ep := func(_ context.Context, req any) (any, error) {
		got.add(req.(events.Envelope).ID)
		return nil, nil
	}
	sub, err := bus.Consume(context.Background(), cons, ep, bus.ConsumeOptions{Workers: 8})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "first events handled", func() bool { return got.total() >= msgs/4 })
	if err := sub.Stop(testCtx(t, 10*time.Second)); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	stoppedAt := got.total()
	if stoppedAt == msgs {
		t.Logf("all %d handled before Stop returned; resume has nothing to do", msgs)
	}
	info := consumerInfo(t, cons)
	if info.NumAckPending != 0 {
		t.Fatalf("after Stop, %d messages still await an ack: drain left work in flight", info.NumAckPending)
	}

	consume(t, ensureConsumer(t, js, cfg), ep, bus.ConsumeOptions{Workers: 8})
	eventually(t, 15*time.Second, "all events handled after resume", func() bool { return got.distinct() == msgs })
	if d := got.dupes(); len(d) > 0 {
		t.Fatalf("handled more than once: %v", d)
	}
	if got.total() != msgs {
		t.Fatalf("handled %d times for %d events", got.total(), msgs)
	}
}

func TestConsumeAckAsync(t *testing.T) {
	t.Parallel()
	_, js := bustest.Connect(t)
	publishN(t, bus.NewPublisher(js, "/test", telemetry.Providers{}), 0, 50)
	cons := ensureConsumer(t, js, bus.ConsumerConfig{Durable: "async", AckWait: time.Minute})
	got := newCounts()
	consume(t, cons, func(_ context.Context, req any) (any, error) {
		got.add(req.(events.Envelope).ID)
		return nil, nil
	}, bus.ConsumeOptions{Workers: 4, AckAsync: true})
	eventually(t, 10*time.Second, "all acked", func() bool {
		info := consumerInfo(t, cons)
		return info.AckFloor.Stream == 50 && info.NumAckPending == 0
	})
	if got.total() != 50 || len(got.dupes()) != 0 {
		t.Fatalf("handled %d times, dupes %v", got.total(), got.dupes())
	}
}

func TestConsumeCtxCancelDrains(t *testing.T) {
	t.Parallel()
	_, js := bustest.Connect(t)
	publishN(t, bus.NewPublisher(js, "/test", telemetry.Providers{}), 0, 20)
	cons := ensureConsumer(t, js, bus.ConsumerConfig{Durable: "ctx", AckWait: time.Minute})
	got := newCounts()
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := bus.Consume(ctx, cons, func(hctx context.Context, req any) (any, error) {
		got.add(req.(events.Envelope).ID)
		if got.total() == 5 {
			cancel()
		}
		if hctx.Err() != nil {
			return nil, fmt.Errorf("handler ctx cancelled by Consume ctx: %w", hctx.Err())
		}
		return nil, nil
	}, bus.ConsumeOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("subscription did not drain after its ctx ended")
	}
	if err := sub.Stop(testCtx(t, time.Second)); err != nil {
		t.Fatalf("Stop after drain: %v", err)
	}
	if sub.Err() != nil {
		t.Fatalf("Err after requested stop = %v", sub.Err())
	}
	info := consumerInfo(t, cons)
	if info.NumAckPending != 0 || int(info.AckFloor.Stream) != got.total() {
		t.Fatalf("ack pending %d, ack floor %d, handled %d: drained messages not all acked",
			info.NumAckPending, info.AckFloor.Stream, got.total())
	}
}

// TestStopDeadlineHandsBack: a handler that outlives Stop's ctx is
// cancelled and its message handed back at once (NakWithDelay(0)), so the
// next consumer gets it long before AckWait.
func TestStopDeadlineHandsBack(t *testing.T) {
	t.Parallel()
	_, js := bustest.Connect(t)
	publishN(t, bus.NewPublisher(js, "/test", telemetry.Providers{}), 1, 2)
	cfg := bus.ConsumerConfig{Durable: "handback", AckWait: time.Minute}
	started := make(chan struct{})
	sub, err := bus.Consume(context.Background(), ensureConsumer(t, js, cfg), func(ctx context.Context, _ any) (any, error) {
		close(started)
		<-ctx.Done() // a handler stuck until cancelled
		return nil, ctx.Err()
	}, bus.ConsumeOptions{Backoff: []time.Duration{time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if err := sub.Stop(testCtx(t, 100*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want DeadlineExceeded", err)
	}
	select {
	case <-sub.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("workers did not exit after forced stop")
	}

	second := make(chan uint64, 1)
	consume(t, ensureConsumer(t, js, cfg), func(ctx context.Context, _ any) (any, error) {
		second <- bus.Delivery(ctx)
		return nil, nil
	}, bus.ConsumeOptions{})
	select {
	case n := <-second:
		// 2, or more if the stopped subscription's last pull request took
		// the handed-back message and handed it back again.
		if n < 2 {
			t.Fatalf("redelivered with Delivery = %d, want at least 2", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handed-back message not redelivered (waiting for AckWait?)")
	}
}

// TestLongHandlerKeptAlive: a handler running longer than AckWait is not
// redelivered, because the adapter sends InProgress.
func TestLongHandlerKeptAlive(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("takes ~4.5 s")
	}
	_, js := bustest.Connect(t)
	publishN(t, bus.NewPublisher(js, "/test", telemetry.Providers{}), 1, 2)
	cons := ensureConsumer(t, js, bus.ConsumerConfig{Durable: "slow", AckWait: 2 * time.Second})
	var calls atomic.Int32
	consume(t, cons, func(ctx context.Context, _ any) (any, error) {
		calls.Add(1)
		select { // the work itself takes 2.25 AckWaits
		case <-time.After(4500 * time.Millisecond):
		case <-ctx.Done():
		}
		return nil, nil
	}, bus.ConsumeOptions{Workers: 2})
	eventually(t, 10*time.Second, "slow message acked", func() bool {
		info := consumerInfo(t, cons)
		return info.AckFloor.Stream == 1 && info.NumAckPending == 0
	})
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler called %d times, want 1: the message was redelivered while in progress", n)
	}
	if n := consumerInfo(t, cons).NumRedelivered; n != 0 {
		t.Fatalf("NumRedelivered = %d", n)
	}
}

// TestConnectionClosedEndsSubscription: when the connection goes away for
// good, Done closes and Err says why, so the service can exit instead of
// silently consuming nothing.
func TestConnectionClosedEndsSubscription(t *testing.T) {
	t.Parallel()
	nc, js := bustest.Connect(t)
	cons := ensureConsumer(t, js, bus.ConsumerConfig{Durable: "closed"})
	sub, err := bus.Consume(context.Background(), cons, func(context.Context, any) (any, error) { return nil, nil }, bus.ConsumeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	select {
	case <-sub.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("subscription still running after its connection closed")
	}
	if err := sub.Err(); !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, jetstream.ErrConnectionClosed) {
		t.Fatalf("Err = %v, want connection closed", err)
	}
	if err := sub.Stop(testCtx(t, time.Second)); err != nil {
		t.Fatalf("Stop after the end: %v", err)
	}
}
