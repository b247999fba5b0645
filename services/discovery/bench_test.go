package discovery_test

import (
	"context"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/amtprov/amtprov/services/discovery"
	"github.com/amtprov/amtprov/services/discovery/internal/simfleet"
	"github.com/amtprov/amtprov/services/discovery/sweep"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScan16 sweeps a /16 holding 2,000 simulated devices (every
// fifth provisioned by "another console", identified over WS-Man with a
// credentials row) with one replica at several target rates, production
// probe settings (per-device interval 500 ms, ping wait 1.5 s, default
// timeouts). Reported: seconds per scan, devices found (must be 2,000),
// and CPU per 1,000 addresses of the whole process (scanner, simulated
// fleet, embedded NATS client side, database client). Run:
//
//	go test -run X -bench BenchmarkScan16 -benchtime 1x -timeout 30m .
func BenchmarkScan16(b *testing.B) {
	h := newHarness(b)
	block := netip.MustParsePrefix("127.16.0.0/16")
	_, cfgs := simfleet.Start(b, simfleet.Options{Block: block, N: 2000, Seed: 21, ProvisionedEvery: 5})
	h.replicaWith("bench", func(c *discovery.Config) {
		c.GlobalRate = 1e6
		c.ShardWorkers = 0 // default
		c.Sweep = sweep.Config{RMCPPort: simfleet.RMCPPort, HTTPPort: simfleet.HTTPPort, TLSPort: simfleet.TLSPort}
		c.AckWait = 0
	})
	for _, rate := range []int{1000, 5000, 20000, 50000, 100000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			var tgt discovery.Target
			h.call(discovery.VerbAdd, discovery.AddTargetRequest{CIDR: block.String(), RateLimit: rate,
				RMCPPort: simfleet.RMCPPort, HTTPPort: simfleet.HTTPPort, TLSPort: simfleet.TLSPort}, &tgt)
			for range b.N {
				cpu0, t0 := cpuTime(), time.Now()
				var sc discovery.Scan
				h.call(discovery.VerbRun, discovery.RunRequest{CIDRs: []string{block.String()},
					Credentials: []discovery.CredentialRow{{Match: block.String(), Username: simfleet.AdminUser, Password: simfleet.AdminPassword}}}, &sc)
				var final discovery.Scan
				h.eventually(30*time.Minute, func() bool { final = h.status(sc.ID); return final.State != "running" })
				secs, cpu := time.Since(t0).Seconds(), cpuTime()-cpu0
				b.ReportMetric(secs, "s/scan")
				b.ReportMetric(float64(final.Found), "found")
				b.ReportMetric(float64(final.Identified), "identified")
				b.ReportMetric(float64(cpu.Milliseconds())/float64(final.AddressesProbed)*1000, "cpu-ms/1000addr")
				b.ReportMetric(float64(final.AddressesProbed)/secs, "addr/s")
				if final.Found != len(cfgs) {
					b.Errorf("rate %d: found %d of %d", rate, final.Found, len(cfgs))
				}
			}
		})
	}
}

// BenchmarkSweepEmpty16 is the scanner alone: a /16 with nothing on it,
// swept in /24 shards by 64 concurrent sweeps sharing one limiter (as one
// replica does), no simulator in the process: CPU per 1,000 addresses of
// probing itself.
func BenchmarkSweepEmpty16(b *testing.B) {
	block := netip.MustParsePrefix("127.17.0.0/16")
	for _, rate := range []int{1000, 50000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			if rate == 1000 && testing.Short() {
				b.Skip("65 s at the default rate")
			}
			for range b.N {
				cpu0, t0 := cpuTime(), time.Now()
				n := sweepBlock(b, block, float64(rate))
				secs, cpu := time.Since(t0).Seconds(), cpuTime()-cpu0
				b.ReportMetric(secs, "s/sweep")
				b.ReportMetric(float64(cpu.Milliseconds())/float64(n)*1000, "cpu-ms/1000addr")
			}
		})
	}
}

func sweepBlock(b *testing.B, block netip.Prefix, rate float64) int {
	b.Helper()
	ctx := context.Background()
	cfg := sweep.Config{RMCPPort: simfleet.RMCPPort, HTTPPort: simfleet.HTTPPort, TLSPort: simfleet.TLSPort, Rate: rate}
	shared := rateLimiter(rate)
	cfg.Shared = shared
	jobs := make(chan netip.Prefix)
	errs := make(chan error, 64)
	total := 0
	for i := 0; i < 256; i++ {
		total += len(sweep.Addresses(netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 17, byte(i), 0}), 24), block))
	}
	for range 64 {
		go func() {
			for sh := range jobs {
				if _, err := sweep.Sweep(ctx, cfg, sweep.Addresses(sh, block), nil); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for i := 0; i < 256; i++ {
		jobs <- netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 17, byte(i), 0}), 24)
	}
	close(jobs)
	for range 64 {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	return total
}
