package events_test

import (
	"time"

	"github.com/amtprov/amtprov/libs/events"
)

// Realistic payloads of every kind, shared by the tests of this package.

const testUUID = "4bac9510-04a6-4321-bae2-d45ddf07b684" // PROTOCOL.md §4.5 example

var testTime = time.Date(2026, 11, 26, 19, 40, 1, 123456789, time.UTC)

func intPtr(i int) *int { return &i }

func helloV3() *events.DeviceHello {
	return &events.DeviceHello{
		UUID: testUUID, SourceIP: "192.0.2.7", SourcePort: 50123, InterfaceVersion: 3,
		AdminCredentialsSet: true, RetryCount: 1,
		RootHashes: []events.RootHash{
			{Alg: "sha256", Hex: "c3846bf24b9e93ca64274c0ec67c1ecc5e024ffcacd2d74019350e81fe546ae4"},
			{Alg: "sha1", Hex: "742c3192e607e424eb4549542be1bbc53e6174e2"},
			{Alg: "sha384", Hex: "9b2f3a3fb5d1ab4bf2c2a3d5e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6"},
		},
		ReceivedAt: testTime, Listener: "hello-listener-0",
	}
}

func helloV2() *events.DeviceHello {
	return &events.DeviceHello{
		UUID: testUUID, SourceIP: "2001:db8::7", SourcePort: 1024, InterfaceVersion: 2,
		PID: "0000037M", RootHashes: []events.RootHash{}, ReceivedAt: testTime, Listener: "l",
	}
}

// samples has at least one payload per ce-type.
func samples() map[string][]events.Payload {
	prov := func(e events.ProvisioningEvent, step, outcome, code string, rv *int) *events.Provisioning {
		return &events.Provisioning{Event: e, UUID: testUUID, JobID: "job-42", Attempt: 1, Profile: "acm-default",
			Step: step, Outcome: outcome, ReturnValue: rv, ErrorCode: code, At: testTime}
	}
	return map[string][]events.Payload{
		events.TypeDeviceHello: {helloV3(), helloV2(),
			&events.DeviceHello{UUID: testUUID, SourceIP: "198.51.100.1", InterfaceVersion: 2, ReceivedAt: testTime, Listener: "l"}, // nil hashes
		},
		events.TypeDeviceDiscovered: {
			&events.DeviceDiscovered{UUID: testUUID, IP: "192.0.2.9", Ports: []int{16992, 16993, 623}, AMTVersion: "16.1.25",
				ProvisioningState: "post", Method: "wsman", ScanID: "scan-1", SeenAt: testTime},
			&events.DeviceDiscovered{IP: "192.0.2.10", Ports: []int{623}, Method: "rmcp", ScanID: "scan-1", SeenAt: testTime},
		},
		events.TypeProvisioningStarted:   {prov(events.ProvisioningStarted, "", "", "", nil)},
		events.TypeProvisioningStep:      {prov(events.ProvisioningStep, "set_mebx_password", "ok", "", intPtr(0))},
		events.TypeProvisioningSucceeded: {prov(events.ProvisioningSucceeded, "", "ok", "", nil)},
		events.TypeProvisioningFailed: {func() events.Payload {
			p := prov(events.ProvisioningFailed, "commit_changes", "failed", "AMT_INVALID_PASSWORD", intPtr(2054))
			p.Hint = "reset the device's MEBx password or supply it in the profile"
			return p
		}()},
		events.TypeCertIssued: {&events.CertIssued{UUID: testUUID, Serial: "3f9a01c2d4", FingerprintSHA256: "0f4c8e1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6",
			NotBefore: testTime, NotAfter: testTime.AddDate(1, 0, 0), Purpose: "device-tls"}},
		events.TypeScanCompleted: {
			&events.ScanCompleted{ScanID: "scan-7f3a", Targets: []string{"192.0.2.0/24"}, Trigger: "cli", StartedAt: testTime, FinishedAt: testTime.Add(time.Minute),
				Addresses: 254, Found: 3, Identified: 1, States: events.ScanStates{In: 2, Post: 1}, Stale: []string{testUUID}, OtherConsole: []string{}},
			&events.ScanCompleted{ScanID: "s", Trigger: "provisioned", StartedAt: testTime, FinishedAt: testTime, Truncated: true}, // nil lists
		},
	}
}
