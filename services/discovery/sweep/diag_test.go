package sweep_test

import (
	"context"
	"net/netip"
	"os"
	"sync"
	"testing"

	"github.com/amtprov/amtprov/services/discovery/internal/simfleet"
	"github.com/amtprov/amtprov/services/discovery/sweep"
)

// TestSweep16Diagnose (AMTPROV_DIAG=1): a /16 with 2,000 devices swept as
// one replica does (64 shard sweeps sharing one limiter); lists what was
// missed with the simulator's counters for it.
func TestSweep16Diagnose(t *testing.T) {
	if os.Getenv("AMTPROV_DIAG") != "1" {
		t.Skip("AMTPROV_DIAG=1")
	}
	block := netip.MustParsePrefix("127.15.0.0/16")
	fleet, cfgs := simfleet.Start(t, simfleet.Options{Block: block, N: 2000, Seed: 21})
	cfg := sweep.Config{RMCPPort: simfleet.RMCPPort, HTTPPort: simfleet.HTTPPort, TLSPort: simfleet.TLSPort, Rate: 1000}
	cfg.Shared = nil
	lim := sweep.Config{}
	_ = lim
	var mu sync.Mutex
	found := map[string]sweep.Found{}
	var stats []sweep.Stats
	jobs := make(chan netip.Prefix)
	var wg sync.WaitGroup
	shared := newLimiter(1000)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sh := range jobs {
				c := cfg
				c.Shared = shared
				res, err := sweep.Sweep(context.Background(), c, sweep.Addresses(sh, block), nil)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, f := range res.Found {
					found[f.Addr.String()] = f
				}
				stats = append(stats, res.Stats)
				mu.Unlock()
			}
		}()
	}
	for i := range 256 {
		jobs <- netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 15, byte(i), 0}), 24)
	}
	close(jobs)
	wg.Wait()
	var bad int64
	for _, s := range stats {
		bad += s.BadPongs
	}
	t.Logf("found %d of %d, bad pongs %d", len(found), len(cfgs), bad)
	for _, c := range cfgs {
		if _, ok := found[c.IP]; !ok {
			p, _ := fleet.Probes(c.UUID)
			d, _ := fleet.Device(c.UUID)
			t.Errorf("missed %s: probes %+v pings %d", c.IP, p, d.Counters.RMCPPings.Load())
		}
	}
}
