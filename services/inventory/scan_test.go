package inventory_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/inventory"
)

// TestScanCompletedStaleAndOtherConsole: scan.completed flags the stale
// devices (kept, last seen unchanged) and records other-console devices; a
// later discovery clears the flag, an older one does not.
func TestScanCompletedStaleAndOtherConsole(t *testing.T) {
	t.Parallel()
	_, js := bustest.Connect(t)
	tel, _ := telemetry.NewForTest("inventory")
	pool := storetest.New(t)
	r := startInventory(t, inventory.Config{}, pool, js, tel)
	srv := httptest.NewServer(r.svc.Handler())
	t.Cleanup(srv.Close)

	const ours, other = "4bac9510-04a6-4321-bae2-d45ddf07b684", "5bac9510-04a6-4321-bae2-d45ddf07b685"
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	ev := func(p events.Payload, id string) events.Envelope {
		env, err := events.New("/test", p, id)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	disc := func(u string, at time.Time, id string) events.Envelope {
		return ev(&events.DeviceDiscovered{UUID: u, IP: "192.0.2.9", Ports: []int{16993}, Method: "wsman", ScanID: "s1", SeenAt: at}, id)
	}
	done := ev(&events.ScanCompleted{ScanID: "s1", Targets: []string{"192.0.2.0/24"}, Trigger: "cli", StartedAt: t0, FinishedAt: t0.Add(time.Hour),
		Addresses: 254, Found: 1, Identified: 1, Stale: []string{ours}, OtherConsole: []string{other}}, "scan-completed-s1")
	publish(t, js, []events.Envelope{
		ev(&events.DeviceHello{UUID: ours, SourceIP: "192.0.2.7", InterfaceVersion: 3, ReceivedAt: t0, Listener: "l"}, "h1"),
		disc(other, t0.Add(30*time.Minute), "d-other"),
		done,
		disc(ours, t0.Add(40*time.Minute), "d-ours-older"), // older than the scan's end: does not clear
	})
	get := func(u string) inventory.Device {
		var d inventory.Device
		resp, err := http.Get(srv.URL + "/v1/devices/" + u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	waitAcked(t, js, "inventory", 20*time.Second)
	d := get(ours)
	if !d.Location.Stale || !d.LastSeen.Equal(t0.Add(40*time.Minute)) {
		t.Errorf("stale device: stale=%v last_seen=%v", d.Location.Stale, d.LastSeen.Time)
	}
	if o := get(other); o.Capability.ManagedBy != "other_console" || o.Location.Stale {
		t.Errorf("other-console device: managed_by=%q stale=%v", o.Capability.ManagedBy, o.Location.Stale)
	}
	// Replaying scan.completed changes nothing; a newer discovery clears.
	publish(t, js, []events.Envelope{disc(ours, t0.Add(2*time.Hour), "d-ours-newer")})
	deadline := time.Now().Add(10 * time.Second)
	for get(ours).Location.Stale {
		if time.Now().After(deadline) {
			t.Fatal("a newer discovery did not clear the stale flag")
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	_ = context.Background
}
