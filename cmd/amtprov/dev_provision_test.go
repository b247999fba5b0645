package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/amtprov/amtprov/services/provisioner"
)

// TestDevSimulateProvisionsEveryDevice: `amtprov dev --simulate N` runs the
// whole loop: the simulated devices trust the development domain, and every
// one of them ends provisioned with TLS on, visible through the CLI (jobs,
// explain, credentials) and the inventory API.
func TestDevSimulateProvisionsEveryDevice(t *testing.T) {
	const n = 6
	r := runDevForTest(t, "--simulate", "6", "--sim-base", "127.14.200.1", "--sim-time-scale", "60")
	var jobs []provisioner.Job
	waitFor(t, "every simulated device provisioned", func() bool {
		out, err := cli(t, "--nats", r.nats, "--json", "jobs", "list", "--state", "succeeded")
		return err == nil && json.Unmarshal([]byte(out), &jobs) == nil && len(jobs) == n
	})
	waitFor(t, "inventory shows them post-provisioned with TLS", func() bool {
		out, err := cli(t, "--api", r.api, "--json", "devices", "list", "--state", "post")
		if err != nil {
			return false
		}
		var l struct {
			Devices []struct {
				Capability struct {
					TLSEnabled  bool   `json:"tls_enabled"`
					ControlMode string `json:"control_mode"`
				} `json:"capability"`
			}
		}
		if json.Unmarshal([]byte(out), &l) != nil || len(l.Devices) != n {
			return false
		}
		for _, d := range l.Devices {
			if !d.Capability.TLSEnabled || d.Capability.ControlMode != "acm" {
				return false
			}
		}
		return true
	})
	u := jobs[0].UUID
	out, err := cli(t, "--nats", r.nats, "explain", u)
	if err != nil || !strings.Contains(out, "provisioned by attempt 1") {
		t.Fatalf("explain: %v %q", err, out)
	}
	out, err = cli(t, "--nats", r.nats, "--json", "device", "credentials", u)
	var c map[string]string
	if err != nil || json.Unmarshal([]byte(out), &c) != nil || c["username"] != "admin" || len(c["password"]) < 8 || len(c["tls_cert_sha256"]) != 64 {
		t.Fatalf("credentials: %v %q", err, out)
	}
}
