package listener_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/hello-listener/listener"
)

// blast sends n hellos (distinct UUIDs from offset) with conc concurrent
// senders, each connection from one of 4096 loopback source addresses, and
// returns when every connection is written and closed.
func blast(b *testing.B, addr string, pkts [][]byte, conc int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 10 * time.Second}
			for {
				i := int(next.Add(1)) - 1
				if i >= len(pkts) {
					return
				}
				d.LocalAddr = &net.TCPAddr{IP: sourceIP(i % 4096)}
				conn, err := d.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := conn.Write(pkts[i]); err != nil {
					b.Error(err)
				}
				_ = conn.Close()
			}
		}()
	}
	wg.Wait()
}

func packets(b *testing.B, offset, n int) [][]byte {
	pkts := make([][]byte, n)
	for i := range pkts {
		pkts[i], _ = helloFor(b, offset+i, 0)
	}
	return pkts
}

var benchOffset atomic.Int64

// peakRSSMB is the process's peak resident set (VmHWM), in MiB.
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb float64
			if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), &kb); err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}

// cpuTime is the user+system CPU time of the whole test process: sender,
// listener and (embedded) NATS server together, as on one host.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// baselineServer is the yardstick for hello ingestion: a bare Go listener
// that only accepts, reads to EOF and closes. Each hello is its own TCP
// connection, so this bounds what any hello listener can do on the machine.
// handled counts the connections it finished.
func baselineServer(b *testing.B) (addr string, handled *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	handled = new(atomic.Int64)
	bufs := sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				bp := bufs.Get().(*[]byte)
				defer bufs.Put(bp)
				for {
					if _, err := c.Read(*bp); err != nil {
						break
					}
				}
				handled.Add(1)
			}()
		}
	}()
	return ln.Addr().String(), handled
}

// ingestServer runs the real listener publishing to an embedded nats-server
// with JetStream file storage, as in production; stored reports how many
// events the stream holds.
func ingestServer(b *testing.B) (addr string, stored func() uint64) {
	_, js := bustest.Connect(b)
	// Real providers without an exporter, as in production minus the OTLP batcher.
	tel, shutdown, err := telemetry.New(context.Background(), "hello-listener")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = shutdown(context.Background()) })
	pub := bus.NewPublisher(js, "/hello-listener/bench", tel)
	l, err := listener.New(listener.Config{Addr: "127.0.0.1:0", Name: "bench", PerIPBurst: 1 << 20, PerIPRate: 1 << 20},
		pub, listener.Options{Tracer: tel.Tracer, Meter: tel.Meter, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := l.Listen()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String(), func() uint64 { return streamCount(b, js) }
}

// senders is the number of concurrent connections the benchmarks keep open.
const senders = 64

// BenchmarkBaselineAcceptReadClose measures the baseline alone.
func BenchmarkBaselineAcceptReadClose(b *testing.B) {
	addr, handled := baselineServer(b)
	pkts := packets(b, int(benchOffset.Add(int64(b.N)))-b.N, b.N)
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	blast(b, addr, pkts, senders)
	for handled.Load() < int64(b.N) {
		time.Sleep(100 * time.Microsecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "conns/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/conn")
	b.ReportMetric(peakRSSMB(), "peak-rss-MiB")
}

// BenchmarkHelloIngest measures hellos/s from TCP in to JetStream acked
// (file storage, as in production) with the sender on the same machine.
func BenchmarkHelloIngest(b *testing.B) {
	addr, stored := ingestServer(b)
	before := stored()
	pkts := packets(b, int(benchOffset.Add(int64(b.N)))-b.N, b.N)
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	blast(b, addr, pkts, senders)
	for stored()-before < uint64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "hellos/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/hello")
	b.ReportMetric(peakRSSMB(), "peak-rss-MiB")
}

// BenchmarkIngestVsBaseline is the target's measure: hello ingestion as a
// share of the baseline in the same run. It sends b.N connections to each,
// alternating in rounds of benchRound so that both see the same machine: on
// a shared 2-core VM the speed drifts by ±15 % between runs a few seconds
// apart, which made two separate benchmarks disagree by more than the
// difference being measured (docs/benchmarks.md). Reported: both rates over
// all their rounds, the ratio, and the CPU of the whole process per
// connection for each.
func BenchmarkIngestVsBaseline(b *testing.B) {
	const benchRound = 2000
	baseAddr, handled := baselineServer(b)
	ingAddr, stored := ingestServer(b)
	n := b.N
	basePkts := packets(b, int(benchOffset.Add(int64(n)))-n, n)
	ingPkts := packets(b, int(benchOffset.Add(int64(n)))-n, n)
	var baseTime, ingTime, baseCPU, ingCPU time.Duration
	before := stored()
	b.ResetTimer()
	for lo := 0; lo < n; lo += benchRound {
		hi := min(lo+benchRound, n)
		start, cpu0 := time.Now(), cpuTime()
		blast(b, baseAddr, basePkts[lo:hi], senders)
		for handled.Load() < int64(hi) {
			time.Sleep(100 * time.Microsecond)
		}
		baseTime += time.Since(start)
		baseCPU += cpuTime() - cpu0

		start, cpu0 = time.Now(), cpuTime()
		blast(b, ingAddr, ingPkts[lo:hi], senders)
		for stored()-before < uint64(hi) {
			time.Sleep(time.Millisecond)
		}
		ingTime += time.Since(start)
		ingCPU += cpuTime() - cpu0
	}
	baseRate, ingRate := float64(n)/baseTime.Seconds(), float64(n)/ingTime.Seconds()
	b.ReportMetric(baseRate, "baseline-conns/s")
	b.ReportMetric(ingRate, "ingest-hellos/s")
	b.ReportMetric(100*ingRate/baseRate, "ingest-%-of-baseline")
	b.ReportMetric(float64(baseCPU.Microseconds())/float64(n), "baseline-cpu-µs/conn")
	b.ReportMetric(float64(ingCPU.Microseconds())/float64(n), "ingest-cpu-µs/hello")
}
