package inventory_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/inventory"
)

// BenchmarkInventoryIngest measures the inventory alone: b.N hellos of
// distinct devices are stored in the stream first, then the timer runs from
// the start of Run until the consumer has acked the last one. Every hello
// writes three rows (devices, oob_capability, device_location), reported as
// rows/s next to events/s. Run with e.g. -benchtime=50000x.
func BenchmarkInventoryIngest(b *testing.B) {
	_, js := bustest.Connect(b)
	// Production providers without an exporter (the in-memory recorder of
	// NewForTest would keep every span and skew time and memory).
	b.Setenv("OTEL_TRACES_EXPORTER", "none")
	tel, shutdown, err := telemetry.New(context.Background(), "inventory")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = shutdown(context.Background()) })
	pool := storetest.New(b)
	evs := make([]events.Envelope, b.N)
	for i := range b.N {
		u := deviceUUID(i)
		env, err := events.New("/bench", &events.DeviceHello{UUID: u, SourceIP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
			SourcePort: 50000, InterfaceVersion: 3, AdminCredentialsSet: true,
			RootHashes: []events.RootHash{{Alg: "sha256", Hex: fmt.Sprintf("%064x", i)}},
			ReceivedAt: base.Add(time.Duration(i) * time.Microsecond), Listener: "bench"}, events.HelloID(u, 0))
		if err != nil {
			b.Fatal(err)
		}
		evs[i] = env
	}
	publish(b, js, evs)

	b.ResetTimer()
	start := time.Now()
	cpu0, cpuOK := cpuTime()
	r := startInventory(b, inventory.Config{}, pool, js, tel)
	waitAcked(b, js, "inventory", 10*time.Minute)
	elapsed := time.Since(start)
	cpu1, _ := cpuTime()
	b.StopTimer()
	if err := r.stop(); err != nil {
		b.Fatal(err)
	}
	if n := count(b, pool, "devices"); n != b.N {
		b.Fatalf("%d devices, want %d", n, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(3*float64(b.N)/elapsed.Seconds(), "rows/s")
	if cpuOK {
		// CPU of this process (inventory, bus adapter and the embedded NATS
		// server; PostgreSQL is another process) per event: unlike the rates
		// above, it does not depend on what else the machine is doing.
		b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
	}
	if os.Getenv("INV_BENCH_METRICS") != "" {
		rec := httptest.NewRecorder()
		tel.Metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		for _, l := range strings.Split(rec.Body.String(), "\n") {
			if strings.HasPrefix(l, "inventory_batch") && (strings.Contains(l, "_sum") || strings.Contains(l, "_count")) {
				b.Log(l)
			}
		}
	}
	if mb, ok := peakRSSMB(); ok {
		b.ReportMetric(mb, "peak-RSS-MB") // the whole test process, embedded NATS server included
	}
}

// peakRSSMB reads VmHWM from /proc (Linux only).
func peakRSSMB() (float64, bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024, err == nil
		}
	}
	return 0, false
}
