package events

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestAppendJSONMatchesMarshal checks the hand-written DeviceHello encoder
// against encoding/json, byte for byte, on random values, including strings
// that need escaping and the boundaries of the fields.
func TestAppendJSONMatchesMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"", "a", "4bac9510-04a6-4321-bae2-d45ddf07b684", "10.0.0.1", "::1", "fe80::1%eth0",
		`"`, `\`, "<", ">", "&", "\x00", "\n", "\x7f", "é", "\u2028", "\u2029", "\xff", "日本", "host-1.example.com", " "}
	str := func() string {
		var b strings.Builder
		for range r.IntN(4) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		return b.String()
	}
	zones := []*time.Location{time.UTC, time.FixedZone("x", 5*3600+30*60), time.FixedZone("y", -7*3600)}
	for i := range 20000 {
		h := &DeviceHello{
			UUID: str(), SourceIP: str(), SourcePort: r.IntN(1<<17) - 1<<15, InterfaceVersion: r.IntN(300) - 10,
			AdminCredentialsSet: r.IntN(2) == 1, RetryCount: r.Uint32(), PID: str(), Listener: str(),
			ReceivedAt: time.Unix(r.Int64N(1<<36)-1<<34, r.Int64N(1e9)).In(zones[r.IntN(len(zones))]),
		}
		switch r.IntN(3) {
		case 0: // nil: "null"
		case 1:
			h.RootHashes = []RootHash{}
		default:
			for range 1 + r.IntN(4) {
				h.RootHashes = append(h.RootHashes, RootHash{Alg: str(), Hex: str()})
			}
		}
		if i%1000 == 0 {
			h.ReceivedAt = time.Date(10000+i, 1, 1, 0, 0, 0, 0, time.UTC) // MarshalJSON refuses it
		}
		want, wantErr := json.Marshal(h)
		got, gotErr := marshal(h)
		if (wantErr != nil) != (gotErr != nil) || string(got) != string(want) {
			t.Fatalf("value %+v:\n got %s (err %v)\nwant %s (err %v)", h, got, gotErr, want, wantErr)
		}
	}
}

// benchHello is a realistic hello event: a v3 hello with 20 SHA-256 roots.
func benchHello() *DeviceHello {
	h := &DeviceHello{UUID: "4bac9510-04a6-4321-bae2-d45ddf07b684", SourceIP: "10.1.2.3", SourcePort: 51234,
		InterfaceVersion: 3, RetryCount: 2, ReceivedAt: time.Now(), Listener: "host-1"}
	for range 20 {
		h.RootHashes = append(h.RootHashes, RootHash{Alg: "sha256", Hex: strings.Repeat("ab", 32)})
	}
	return h
}

func BenchmarkNewHello(b *testing.B) {
	h := benchHello()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New("/bench", h, "id"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMarshalHelloEncodingJSON is what BenchmarkNewHello's JSON cost
// before the hand-written encoder.
func BenchmarkMarshalHelloEncodingJSON(b *testing.B) {
	h := benchHello()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(h); err != nil {
			b.Fatal(err)
		}
	}
}
