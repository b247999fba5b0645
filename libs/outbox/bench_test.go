package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/outbox"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/telemetry"
)

// BenchmarkAdd is one event written in its own transaction (the cost a
// service pays per event on top of its own statements).
func BenchmarkAdd(b *testing.B) {
	pool := storetest.New(b)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		tx, err := pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := outbox.Add(ctx, tx, benchEnvelope(b, i), ctx); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRelay is publishing and deleting one stored event (JetStream
// PubAck included), with the default batch size and concurrency.
func BenchmarkRelay(b *testing.B) {
	pool := storetest.New(b)
	_, js := bustest.Connect(b)
	ctx := context.Background()
	relay := outbox.NewRelay(pool, bus.NewPublisher(js, "/bench", telemetry.Providers{}), outbox.RelayConfig{})
	const perTx = 200
	b.StopTimer()
	for start := 0; start < b.N; start += perTx {
		tx, err := pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for i := start; i < start+perTx && i < b.N; i++ {
			if err := outbox.Add(ctx, tx, benchEnvelope(b, i), nil); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StartTimer()
	n, err := relay.Flush(ctx)
	if err != nil || n != b.N {
		b.Fatalf("Flush = %d, %v; want %d", n, err, b.N)
	}
}

func benchEnvelope(b *testing.B, i int) events.Envelope {
	b.Helper()
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	env, err := events.New("/bench", &events.CertIssued{
		UUID: fmt.Sprintf("939b524b-13d4-1d18-e487-%012x", i), Serial: fmt.Sprintf("%x", i), FingerprintSHA256: "ab",
		NotBefore: at, NotAfter: at.Add(time.Hour), Purpose: "device-tls",
	}, fmt.Sprintf("bench-%d", i))
	if err != nil {
		b.Fatal(err)
	}
	return env
}
