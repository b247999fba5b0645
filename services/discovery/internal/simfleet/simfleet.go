// Package simfleet starts simulated AMT fleets scattered over an address
// block for discovery's tests and benchmarks: the simulator's own fleets
// take consecutive addresses, a real network does not.
package simfleet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/amtprov/amtprov/tools/amtsim"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
)

// Ports the test fleets listen on: high ports, so tests need no root and do
// not meet a real AMT stack or `amtprov dev` on the defaults.
const (
	HTTPPort = 26992
	TLSPort  = 26993
	RMCPPort = 26623
)

// AdminUser and AdminPassword are the credentials of the devices a fleet
// starts provisioned ("by another console").
const (
	AdminUser     = "admin"
	AdminPassword = "Other-C0nsole!"
)

// versions is the firmware mix (the simulator's own, PROTOCOL.md §9.1).
var versions = []string{"11.8.50.3425", "12.0.45.1509", "15.0.23.1706", "16.1.25.2124", "16.1.30.2307"}

// Options say what fleet to start.
type Options struct {
	Block netip.Prefix // addresses are drawn from it (network and broadcast excluded)
	N     int
	Seed  uint64
	// ProvisionedEvery makes every k-th device start provisioned (0: none).
	ProvisionedEvery int
}

// Configs draws n distinct addresses of o.Block and makes a device at each.
func Configs(o Options) ([]firmware.Config, error) {
	size := 1 << (32 - o.Block.Bits())
	if o.N > size-2 {
		return nil, fmt.Errorf("simfleet: %d devices do not fit %v", o.N, o.Block)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0xd15c))
	base := o.Block.Masked().Addr().As4()
	b := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	picked := map[int]bool{}
	out := make([]firmware.Config, 0, o.N)
	for len(out) < o.N {
		off := 1 + rng.IntN(size-2)
		if picked[off] {
			continue
		}
		picked[off] = true
		v := b + uint32(off)
		ip := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		i := len(out)
		var u [16]byte
		for j := range u {
			u[j] = byte(rng.Uint32())
		}
		u[6] = u[6]&0x0f | 0x40
		u[8] = u[8]&0x3f | 0x80
		c := firmware.Config{
			UUID:         fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]),
			MAC:          fmt.Sprintf("a4:bb:6d:%02x:%02x:%02x", byte(i>>16), byte(i>>8), byte(i)),
			IP:           ip.String(),
			Hostname:     fmt.Sprintf("pc-%05d", i),
			DNSSuffix:    "corp.example.com",
			AMTVersion:   versions[rng.IntN(len(versions))],
			SKU:          "16392",
			Realm:        fmt.Sprintf("Digest:%016X%016X", rng.Uint64(), rng.Uint64()),
			MEBxPassword: "admin",
			Seed:         int64(rng.Uint64() >> 1),
		}
		if o.ProvisionedEvery > 0 && i%o.ProvisionedEvery == 0 {
			c.Provisioned, c.AdminUser, c.AdminPassword = true, AdminUser, AdminPassword
		}
		out = append(out, c)
	}
	return out, nil
}

// Start runs the fleet until the test ends. Hellos go to a closed port in
// the block (the tests have no provisioning server).
func Start(t testing.TB, o Options) (*amtsim.Fleet, []firmware.Config) {
	t.Helper()
	cfgs, err := Configs(o)
	if err != nil {
		t.Fatal(err)
	}
	f, err := StartConfigs(context.Background(), o.Block, cfgs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("close fleet: %v", err)
		}
	})
	return f, cfgs
}

// StartConfigs starts a fleet of cfgs inside block on the test ports.
func StartConfigs(ctx context.Context, block netip.Prefix, cfgs []firmware.Config) (*amtsim.Fleet, error) {
	last := block.Masked().Addr().As4()
	last[3] |= 0xff
	return amtsim.Start(ctx, amtsim.Options{
		Configs:         cfgs,
		Range:           block,
		ProvisionServer: netip.AddrPortFrom(netip.AddrFrom4(last), 9).String(),
		HTTPPort:        HTTPPort, TLSPort: TLSPort, RMCPPort: RMCPPort,
	})
}
