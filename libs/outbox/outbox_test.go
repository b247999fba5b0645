package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/outbox"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/telemetry"
)

func TestMain(m *testing.M) {
	storetest.Main(m)
	if err := goleak.Find(); err != nil {
		panic(fmt.Sprintf("goroutine leak: %v", err))
	}
}

const testUUID = "939b524b-13d4-1d18-e487-1c697a6b7a2b"

func envelope(t *testing.T, id string, n int) events.Envelope {
	t.Helper()
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	env, err := events.New("/outbox-test", &events.CertIssued{
		UUID: testUUID, Serial: fmt.Sprintf("%x", n), FingerprintSHA256: "ab",
		NotBefore: at, NotAfter: at.Add(time.Hour), Purpose: "device-tls",
	}, id)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// add writes envs in one transaction and commits (or rolls back).
func add(t *testing.T, pool *pgxpool.Pool, commit bool, traceCtx context.Context, envs ...events.Envelope) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, env := range envs {
		if err := outbox.Add(ctx, tx, env, traceCtx); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	if commit {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func pending(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE failed_at IS NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCommittedEventIsPublishedWithHeadersAndTrace(t *testing.T) {
	pool := storetest.New(t)
	_, js := bustest.Connect(t)
	tel, rec := telemetry.NewForTest("outbox-test")
	pub := bus.NewPublisher(js, "/outbox-test", tel)

	ctx, span := tel.Tracer.Tracer("test").Start(context.Background(), "issue certificate")
	env := envelope(t, "cert-1", 1)
	add(t, pool, true, ctx, env)
	span.End()

	relay := outbox.NewRelay(pool, pub, outbox.RelayConfig{Telemetry: tel})
	n, err := relay.Flush(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Flush = %d, %v; want 1, nil", n, err)
	}
	if p := pending(t, pool); p != 0 {
		t.Fatalf("%d rows left after PubAck", p)
	}
	s, _ := js.Stream(context.Background(), events.StreamName)
	msg, err := s.GetLastMsgForSubject(context.Background(), env.Topic)
	if err != nil {
		t.Fatalf("event not in stream: %v", err)
	}
	if got := msg.Header.Get(events.HeaderMsgID); got != "cert-1" {
		t.Errorf("Nats-Msg-Id = %q, want cert-1", got)
	}
	got, err := events.Parse(msg.Subject, msg.Header, msg.Data)
	if err != nil {
		t.Fatalf("published message is not a valid event: %v", err)
	}
	if got.ID != env.ID || got.Type != env.Type || !got.Time.Equal(env.Time) || string(got.Data) != string(env.Data) {
		t.Errorf("published %+v, want %+v", got, env)
	}
	tp := msg.Header.Get("traceparent")
	wantTrace := span.SpanContext().TraceID().String()
	if len(tp) < 35 || tp[3:35] != wantTrace {
		t.Errorf("traceparent %q does not continue trace %s", tp, wantTrace)
	}
	var sendSpan bool
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindProducer && s.SpanContext().TraceID() == span.SpanContext().TraceID() {
			sendSpan = true
		}
	}
	if !sendSpan {
		t.Error("no producer span in the writer's trace")
	}
}

func TestRolledBackEventIsNeverPublished(t *testing.T) {
	pool := storetest.New(t)
	_, js := bustest.Connect(t)
	add(t, pool, false, nil, envelope(t, "rolled-back", 1))
	relay := outbox.NewRelay(pool, bus.NewPublisher(js, "/t", telemetry.Providers{}), outbox.RelayConfig{})
	if n, err := relay.Flush(context.Background()); err != nil || n != 0 {
		t.Fatalf("Flush = %d, %v; want 0", n, err)
	}
	if m := streamMsgs(t, js); m != 0 {
		t.Fatalf("%d messages in the stream, want 0", m)
	}
}

func TestAddSameIDTwiceStoresOnce(t *testing.T) {
	pool := storetest.New(t)
	add(t, pool, true, nil, envelope(t, "same", 1))
	add(t, pool, true, nil, envelope(t, "same", 1))
	if p := pending(t, pool); p != 1 {
		t.Fatalf("%d rows, want 1", p)
	}
}

func TestAddRejectsInvalidEnvelope(t *testing.T) {
	pool := storetest.New(t)
	good := envelope(t, "x", 1)
	noID := good
	noID.ID = ""
	wrongTopic := good
	wrongTopic.Topic = "amt.v1.device.hello." + testUUID
	big := good
	big.Data = make([]byte, outbox.MaxDataSize+1)
	for name, env := range map[string]events.Envelope{"no id": noID, "topic of another type": wrongTopic, "oversized body": big} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(ctx) }()
			if err := outbox.Add(ctx, tx, env, nil); !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("Add error = %v, want events.ErrInvalid", err)
			}
		})
	}
}

// countingPublisher records how often each event was handed to it and can
// fail on demand.
type countingPublisher struct {
	next outbox.Publisher
	mu   sync.Mutex
	seen map[string]int
	fail error
}

func (c *countingPublisher) PublishEnvelope(ctx context.Context, env events.Envelope) error {
	c.mu.Lock()
	fail := c.fail
	if fail == nil {
		c.seen[env.ID]++
	}
	c.mu.Unlock()
	if fail != nil {
		return fail
	}
	return c.next.PublishEnvelope(ctx, env)
}

func (c *countingPublisher) setFail(err error) { c.mu.Lock(); c.fail = err; c.mu.Unlock() }

func (c *countingPublisher) counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.seen))
	for k, v := range c.seen {
		out[k] = v
	}
	return out
}

// runUntilDrained runs the relays together until the outbox has no pending
// row, then stops them; each must return nil.
func runUntilDrained(t *testing.T, pool *pgxpool.Pool, relays ...*outbox.Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, len(relays))
	for _, r := range relays {
		wg.Go(func() { errs <- r.Run(ctx) })
	}
	waitFor(t, "outbox to drain", func() bool { return pending(t, pool) == 0 })
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	}
}

func TestManyRelaysPublishEachRowOnce(t *testing.T) {
	pool := storetest.New(t)
	_, js := bustest.Connect(t)
	const total = 600
	envs := make([]events.Envelope, total)
	for i := range envs {
		envs[i] = envelope(t, fmt.Sprintf("ev-%d", i), i)
	}
	add(t, pool, true, nil, envs...)

	cp := &countingPublisher{next: bus.NewPublisher(js, "/t", telemetry.Providers{}), seen: map[string]int{}}
	var relays []*outbox.Relay
	for range 3 {
		relays = append(relays, outbox.NewRelay(pool, cp, outbox.RelayConfig{BatchSize: 50, PollInterval: 20 * time.Millisecond}))
	}
	runUntilDrained(t, pool, relays...)
	counts := cp.counts()
	if len(counts) != total {
		t.Fatalf("%d distinct events published, want %d", len(counts), total)
	}
	for id, n := range counts {
		if n != 1 {
			t.Errorf("event %s published %d times", id, n)
		}
	}
	if m := streamMsgs(t, js); m != total {
		t.Fatalf("stream holds %d messages, want %d", m, total)
	}
}

func TestPublishFailureKeepsRowsUntilRecovery(t *testing.T) {
	pool := storetest.New(t)
	_, js := bustest.Connect(t)
	cp := &countingPublisher{next: bus.NewPublisher(js, "/t", telemetry.Providers{}), seen: map[string]int{}}
	cp.setFail(errors.New("nats down"))
	add(t, pool, true, nil, envelope(t, "a", 1), envelope(t, "b", 2))
	relay := outbox.NewRelay(pool, cp, outbox.RelayConfig{})
	if _, err := relay.Flush(context.Background()); err == nil {
		t.Fatal("Flush succeeded while publishing fails")
	}
	if p := pending(t, pool); p != 2 {
		t.Fatalf("%d rows pending after a failed publish, want 2", p)
	}
	cp.setFail(nil)
	if n, err := relay.Flush(context.Background()); err != nil || n != 2 {
		t.Fatalf("Flush after recovery = %d, %v; want 2", n, err)
	}
	// Same subject: the relay kept the order.
	s, _ := js.Stream(context.Background(), events.StreamName)
	first, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if id := first.Header.Get(events.HeaderID); id != "a" {
		t.Fatalf("first published %q, want a (insertion order within a subject)", id)
	}
}

func TestUnpublishableRowIsDeadLettered(t *testing.T) {
	pool := storetest.New(t)
	_, js := bustest.Connect(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO outbox (topic, headers, data, msg_id) VALUES ('amt.v1.cert.issued.x', '{"ce-id":["bad"]}', 'null', 'bad')`); err != nil {
		t.Fatal(err)
	}
	add(t, pool, true, nil, envelope(t, "good", 1))
	relay := outbox.NewRelay(pool, bus.NewPublisher(js, "/t", telemetry.Providers{}), outbox.RelayConfig{})
	if n, err := relay.Flush(ctx); err != nil || n != 1 {
		t.Fatalf("Flush = %d, %v; want 1, nil", n, err)
	}
	var reason string
	if err := pool.QueryRow(ctx, `SELECT error FROM outbox WHERE msg_id = 'bad' AND failed_at IS NOT NULL`).Scan(&reason); err != nil {
		t.Fatalf("bad row not dead-lettered: %v", err)
	}
	if reason == "" {
		t.Fatal("dead-lettered row has no reason")
	}
	if n, err := relay.Flush(ctx); err != nil || n != 0 {
		t.Fatalf("second Flush = %d, %v; want 0 (dead letter is not retried)", n, err)
	}
}

func TestRunWakesOnNotify(t *testing.T) {
	pool := storetest.New(t)
	_, js := bustest.Connect(t)
	relay := outbox.NewRelay(pool, bus.NewPublisher(js, "/t", telemetry.Providers{}), outbox.RelayConfig{PollInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	// The first poll happens at start; wait for the listener to be up by
	// checking that an event added now is published although the next poll
	// is an hour away.
	for i := range 3 {
		add(t, pool, true, nil, envelope(t, fmt.Sprintf("n-%d", i), i))
		want := uint64(i + 1)
		waitFor(t, "notified relay to publish", func() bool { return streamMsgs(t, js) == want })
	}
}
