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

// BenchmarkBaselineAcceptReadClose is the yardstick for hello ingestion: a
// bare Go listener that only accepts, reads to EOF and closes the same
// connections. Each hello is its own TCP connection, so this bounds what
// any hello listener can do on the machine.
func BenchmarkBaselineAcceptReadClose(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var handled atomic.Int64
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
	defer ln.Close()
	pkts := packets(b, int(benchOffset.Add(int64(b.N)))-b.N, b.N)
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	blast(b, ln.Addr().String(), pkts, 64)
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
	_, js := bustest.Connect(b)
	// Real providers without an exporter, as in production minus the OTLP batcher.
	tel, shutdown, err := telemetry.New(context.Background(), "hello-listener")
	if err != nil {
		b.Fatal(err)
	}
	defer shutdown(context.Background())
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
	defer func() { cancel(); <-done }()

	before := streamCount(b, js)
	pkts := packets(b, int(benchOffset.Add(int64(b.N)))-b.N, b.N)
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	blast(b, ln.Addr().String(), pkts, 64)
	for streamCount(b, js)-before < uint64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "hellos/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/hello")
	b.ReportMetric(peakRSSMB(), "peak-rss-MiB")
}
