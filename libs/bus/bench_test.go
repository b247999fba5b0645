package bus_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/telemetry"
)

// BenchmarkPublish: one publisher waiting for each PubAck (file storage,
// embedded server, same machine).
func BenchmarkPublish(b *testing.B) {
	_, js := bustest.Connect(b)
	tel, _ := telemetry.NewForTest("bench")
	pub := bus.NewPublisher(js, "/bench", tel)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := pub.Publish(ctx, hello(i), ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkPublishParallel: many goroutines publishing at once, as the
// hello-listener does with one goroutine per connection.
func BenchmarkPublishParallel(b *testing.B) {
	_, js := bustest.Connect(b)
	pub := bus.NewPublisher(js, "/bench", telemetry.Providers{})
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := pub.Publish(ctx, hello(int(n.Add(1))), ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkConsume: events already on the stream, handled by a no-op
// endpoint through the full adapter (parse, span, AckSync) with 64 workers.
func BenchmarkConsume(b *testing.B) { benchConsume(b, false) }

// BenchmarkConsumeAckAsync: as BenchmarkConsume with plain Acks.
func BenchmarkConsumeAckAsync(b *testing.B) { benchConsume(b, true) }

func benchConsume(b *testing.B, async bool) {
	_, js := bustest.Connect(b)
	pub := bus.NewPublisher(js, "/bench", telemetry.Providers{})
	ctx := context.Background()
	for i := range b.N {
		if err := pub.Publish(ctx, hello(i), ""); err != nil {
			b.Fatal(err)
		}
	}
	cons, err := bus.EnsureConsumer(ctx, js, bus.ConsumerConfig{Durable: "bench", AckWait: time.Minute, MaxAckPending: 10000})
	if err != nil {
		b.Fatal(err)
	}
	var done atomic.Int64
	all := make(chan struct{})
	tel, _ := telemetry.NewForTest("bench")
	b.ReportAllocs()
	b.ResetTimer()
	sub, err := bus.Consume(ctx, cons, func(context.Context, any) (any, error) {
		if done.Add(1) == int64(b.N) {
			close(all)
		}
		return nil, nil
	}, bus.ConsumeOptions{Workers: 64, Tel: tel, AckAsync: async})
	if err != nil {
		b.Fatal(err)
	}
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		b.Fatalf("consumed %d of %d", done.Load(), b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if err := sub.Stop(ctx); err != nil {
		b.Fatal(err)
	}
}
