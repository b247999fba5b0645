package fleetgen

import (
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
	"github.com/amtprov/amtprov/tools/amtsim/internal/keypool"
)

func opts(n int, seed int64) Options {
	return Options{
		Count: n, Seed: seed,
		Base: netip.MustParseAddr("127.10.0.1"), Range: netip.MustParsePrefix("127.10.0.0/16"),
		DNSSuffix: "corp.example.com", LegacyShare: 0.1, ProvisionedShare: 0.2, AdminPassword: "P@ssw0rd!",
	}
}

func TestDefaultRoots(t *testing.T) {
	roots := DefaultRoots()
	if len(roots) != 19 {
		t.Fatalf("%d default roots, want 19", len(roots))
	}
	seen := map[string]bool{}
	for _, h := range roots {
		if h.Alg != amt.HashSHA256 || len(h.Sum) != 32 {
			t.Fatalf("bad default root %v", h)
		}
		if seen[h.Hex()] {
			t.Fatalf("duplicate default root %v", h)
		}
		seen[h.Hex()] = true
	}
}

func TestGenerateDeterministic(t *testing.T) {
	a, err := Generate(opts(200, 42))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(opts(200, 42))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed gave different fleets")
	}
	c, err := Generate(opts(200, 43))
	if err != nil {
		t.Fatal(err)
	}
	if a[0].UUID == c[0].UUID || a[0].Realm == c[0].Realm {
		t.Fatal("different seeds gave the same first device")
	}
}

func TestGenerateDeviceStableWhenFleetGrows(t *testing.T) {
	o := opts(10, 7)
	o.LegacyShare, o.ProvisionedShare = 0, 0
	small, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	o.Count = 50
	big, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(small, big[:10]) {
		t.Fatal("growing the fleet changed existing devices")
	}
}

func TestGenerateShapes(t *testing.T) {
	cfgs, err := Generate(opts(500, 1))
	if err != nil {
		t.Fatal(err)
	}
	realm := regexp.MustCompile(`^Digest:[0-9A-F]{32}$`)
	uuids, macs := map[string]bool{}, map[string]bool{}
	versions := map[string]int{}
	var legacy, prov int
	pool := keypool.New(1)
	for i, c := range cfgs {
		if want := netip.MustParseAddr("127.10.0.1"); i == 0 && c.IP != want.String() {
			t.Fatalf("first IP %s, want %s", c.IP, want)
		}
		if !realm.MatchString(c.Realm) {
			t.Fatalf("realm %q", c.Realm)
		}
		if uuids[c.UUID] || macs[c.MAC] {
			t.Fatalf("duplicate identity %s %s", c.UUID, c.MAC)
		}
		uuids[c.UUID], macs[c.MAC] = true, true
		if len(c.TrustedRoots) != 19 {
			t.Fatalf("%d trusted roots", len(c.TrustedRoots))
		}
		major := strings.SplitN(c.AMTVersion, ".", 3)
		versions[major[0]+"."+major[1]]++
		switch {
		case c.Legacy:
			legacy++
			if err := amt.ValidatePID(c.PID); err != nil {
				t.Fatalf("legacy PID: %v", err)
			}
		case c.Provisioned:
			prov++
			if c.AdminPassword != "P@ssw0rd!" || c.MEBxPassword == FactoryMEBxPassword {
				t.Fatalf("provisioned device credentials %q / mebx %q", c.AdminPassword, c.MEBxPassword)
			}
		default:
			if c.MEBxPassword != FactoryMEBxPassword {
				t.Fatalf("setup-mode device MEBx password is not the factory default")
			}
		}
		if i < 40 { // NewDevice is the authority on what a valid config is.
			if _, err := firmware.NewDevice(c, firmware.Realism{}, pool); err != nil {
				t.Fatalf("device %d: firmware refuses generated config: %v", i, err)
			}
		}
	}
	if legacy != 50 || prov != 100 {
		t.Fatalf("legacy %d provisioned %d, want 50 and 100", legacy, prov)
	}
	for _, v := range []string{"11.8", "12.0", "15.0", "16.1"} {
		if versions[v] < 20 {
			t.Fatalf("version mix %v lacks %s", versions, v)
		}
	}
}

func TestGenerateRejects(t *testing.T) {
	bad := []func(*Options){
		func(o *Options) { o.Count = -1 },
		func(o *Options) { o.Base = netip.MustParseAddr("10.0.0.1") },
		func(o *Options) { o.LegacyShare = 1.5 },
		func(o *Options) { o.LegacyShare, o.ProvisionedShare = 0.6, 0.6 },
		func(o *Options) { o.AdminPassword = "" },
		func(o *Options) { o.DNSSuffix = "" },
		func(o *Options) { o.Base = netip.MustParseAddr("127.10.255.250") },
	}
	for i, mut := range bad {
		o := opts(10, 1)
		mut(&o)
		if _, err := Generate(o); err == nil {
			t.Errorf("case %d: Generate accepted %+v", i, o)
		}
	}
}
