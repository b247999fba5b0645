package provisioner_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/certauthority"
	"github.com/amtprov/amtprov/services/provisioner"
	"github.com/amtprov/amtprov/tools/amtsim"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkProvision measures the whole loop the way production runs it:
// the simulated fleet in its own process (tools/amtsim, default 30 ms mean
// latency per WS-Man call), and in this process the embedded NATS server,
// hello listener, inventory, certauthority (real device certificates) and
// AMTPROV_BENCH_REPLICAS provisioner replicas of AMTPROV_BENCH_WORKERS
// workers. PostgreSQL is a separate process. It reports devices provisioned
// per second, hello→committed latency percentiles, and this process's CPU
// time per provisioned device (getrusage: amtprov's services plus NATS).
//
//	AMTPROV_BENCH_DEVICES=2000 go test -run '^$' -bench Provision -benchtime 1x .
func BenchmarkProvision(b *testing.B) {
	n := envInt("AMTPROV_BENCH_DEVICES", 200)
	workers := envInt("AMTPROV_BENCH_WORKERS", 256)
	replicas := envInt("AMTPROV_BENCH_REPLICAS", 1)
	latency := envInt("AMTPROV_BENCH_LATENCY_MS", 30)
	sim := buildAmtsim(b)
	for i := range b.N {
		runProvisionBench(b, sim, n, workers, replicas, latency, byte(100+i%50))
	}
}

func buildAmtsim(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "amtsim")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/amtsim")
	cmd.Dir = filepath.Join("..", "..", "tools", "amtsim")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build amtsim: %v\n%s", err, out)
	}
	return bin
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru) // cannot fail for RUSAGE_SELF
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func runProvisionBench(b *testing.B, sim string, n, workers, replicas, latencyMS int, second byte) {
	h := newHarness(b)
	ctx := context.Background()
	// The real CA, and its development domain for the fleet's suffix.
	caNC, err := nats.Connect(h.natsURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(caNC.Close)
	caTel, _ := telemetry.NewForTest("certauthority")
	ca, err := certauthority.New(ctx, certauthority.Config{}, h.pool, h.keys, caNC, h.js, caTel, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	cdone := make(chan error, 1)
	go func() { cdone <- ca.Run(cctx) }()
	b.Cleanup(func() { ccancel(); <-cdone })
	root, err := certauthority.EnsureDevDomain(ctx, h.pool, h.keys, amtsim.DefaultDNSSuffix)
	if err != nil {
		b.Fatal(err)
	}
	for i := range replicas {
		name := fmt.Sprintf("bench%d", i)
		cfg := testConfig(name)
		cfg.Workers = workers
		cfg.Lease, cfg.AckWait = time.Minute, 30*time.Second
		cfg.Workflow = provisioner.WorkflowConfig{} // production defaults: port 16993, 2 s post-commit pause
		h.startReplicaWith(name, cfg, &provisioner.CADomains{DB: h.pool, Keys: h.keys}, provisioner.CASigner{Client: certauthority.NewClient(caNC)})
	}

	// First hello per device, as the listener stamped it.
	firstHello := map[string]time.Time{}
	var mu sync.Mutex
	sub, err := caNC.Subscribe(events.SubjectDeviceHello+".>", func(m *nats.Msg) {
		var hb events.DeviceHello
		if json.Unmarshal(m.Data, &hb) != nil {
			return
		}
		mu.Lock()
		if t, ok := firstHello[hb.UUID]; !ok || hb.ReceivedAt.Before(t) {
			firstHello[hb.UUID] = hb.ReceivedAt
		}
		mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sub.Unsubscribe() })

	b.ResetTimer()
	cpu0, wall0 := cpuTime(), time.Now()
	cmd := exec.Command(sim, "--devices", strconv.Itoa(n), "--base", fmt.Sprintf("127.14.%d.1", second), "--range", "127.14.0.0/16",
		"--provision-server", h.hello, "--trust-hash", root.String(), "--latency", fmt.Sprintf("%dms", latencyMS),
		"--time-scale", "1", "--control-addr", "127.0.0.1:0", "--log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			b.Log(sc.Text())
		}
	}()
	eventually(b, "every device provisioned", 20*time.Minute, func() (bool, string) { return h.jobsSettled(n) })
	wall, cpu := time.Since(wall0), cpuTime()-cpu0
	b.StopTimer()

	rows, err := h.pool.Query(ctx, `SELECT j.uuid::text, s.finished FROM provisioning_jobs j
		JOIN provisioning_steps s ON s.job_id = j.id AND s.step = 'commit' AND s.outcome = 'ok' WHERE j.state = 'succeeded'`)
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	mu.Lock()
	for rows.Next() {
		var u string
		var at time.Time
		if err := rows.Scan(&u, &at); err != nil {
			b.Fatal(err)
		}
		if t, ok := firstHello[u]; ok {
			lat = append(lat, at.Sub(t))
		}
	}
	mu.Unlock()
	if len(lat) != n {
		b.Fatalf("%d of %d devices committed with a known first hello", len(lat), n)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Milliseconds()) }
	srows, err := h.pool.Query(ctx, `SELECT step, count(*), avg(extract(epoch FROM finished - started)) * 1000,
		max(extract(epoch FROM finished - started)) * 1000, sum(attempt_no) FROM provisioning_steps GROUP BY step ORDER BY min(seq)`)
	if err != nil {
		b.Fatal(err)
	}
	for srows.Next() {
		var step string
		var cnt, tries int
		var avg, mx float64
		if err := srows.Scan(&step, &cnt, &avg, &mx, &tries); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(os.Stderr, "step %-24s %5d rows %6d tries  avg %8.1f ms  max %8.1f ms\n", step, cnt, tries, avg, mx)
	}
	b.ReportMetric(float64(n)/wall.Seconds(), "devices/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.95), "p95-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(n), "cpu-ms/device")
	b.Logf("%d devices, %d replica(s) x %d workers, %d ms latency: %s wall, %.1f devices/s, CPU %s (%.2f ms/device); latency p50 %s p95 %s p99 %s",
		n, replicas, workers, latencyMS, wall.Round(time.Millisecond), float64(n)/wall.Seconds(), cpu.Round(time.Millisecond),
		float64(cpu.Milliseconds())/float64(n), lat[len(lat)/2], lat[len(lat)*95/100], lat[len(lat)*99/100])
}
