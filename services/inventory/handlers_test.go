package inventory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/services/inventory/internal/pgstore"
	"github.com/amtprov/amtprov/services/inventory/internal/record"
)

const (
	uuidA = "4bac9510-04a6-4321-bae2-d45ddf07b684"
	sha   = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 123456789, time.UTC)

func envelope(t *testing.T, p events.Payload, id string) events.Envelope {
	t.Helper()
	env, err := events.New("/test", p, id)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// errNoHandler marks an event type without a row in the handler table.
var errNoHandler = errors.New("no inventory handler")

func decodeAndHandle(env events.Envelope) (*record.Update, error) {
	h, ok := handlers()[env.Type]
	if !ok {
		return nil, errNoHandler
	}
	p, err := env.Decode()
	if err != nil {
		return nil, err
	}
	return h(env, p)
}

func TestHandlers(t *testing.T) {
	at := t0.Truncate(time.Microsecond)
	ret := 0
	tests := []struct {
		name    string
		payload events.Payload
		want    *record.Update
		wantErr error
	}{
		{
			name: "hello v3",
			payload: &events.DeviceHello{UUID: "4BAC9510-04A6-4321-BAE2-D45DDF07B684", SourceIP: "::ffff:192.0.2.7", SourcePort: 40000,
				InterfaceVersion: 3, AdminCredentialsSet: true, RootHashes: []events.RootHash{{Alg: "sha256", Hex: sha}}, ReceivedAt: t0},
			want: &record.Update{UUID: uuidA, FirstSeen: at, LastSeen: at,
				Hello: &record.Hello{Mark: record.Mark{At: at, EventID: "e1"}, InterfaceVersion: 3, AdminCredentialsSet: true,
					RootHashes: []record.RootHash{{Alg: "sha256", Hex: sha}}},
				State:       &record.State{Mark: record.Mark{At: at, EventID: "e1"}, State: "in"},
				Addr:        &record.Addr{Mark: record.Mark{At: at, EventID: "e1"}, IP: "192.0.2.7"},
				LastHelloAt: at, LocationSeen: at},
		},
		{
			name:    "hello with a bad root hash",
			payload: &events.DeviceHello{UUID: uuidA, SourceIP: "192.0.2.7", InterfaceVersion: 3, RootHashes: []events.RootHash{{Alg: "sha256", Hex: "abcd"}}, ReceivedAt: t0},
			wantErr: events.ErrInvalid,
		},
		{
			name:    "hello with a bad ip",
			payload: &events.DeviceHello{UUID: uuidA, SourceIP: "not-an-ip", InterfaceVersion: 3, ReceivedAt: t0},
			wantErr: events.ErrInvalid,
		},
		{
			name:    "hello without time",
			payload: &events.DeviceHello{UUID: uuidA, SourceIP: "192.0.2.7", InterfaceVersion: 3},
			wantErr: events.ErrInvalid,
		},
		{
			name:    "discovered by uuid",
			payload: &events.DeviceDiscovered{UUID: uuidA, IP: "192.0.2.9", Ports: []int{16992, 16993}, AMTVersion: "16.1.25", ProvisioningState: "post", Method: "wsman", ScanID: "s1", SeenAt: t0},
			want: &record.Update{UUID: uuidA, FirstSeen: at, LastSeen: at,
				Addr:         &record.Addr{Mark: record.Mark{At: at, EventID: "e1"}, IP: "192.0.2.9"},
				LocationSeen: at,
				Ports:        &record.Ports{Mark: record.Mark{At: at, EventID: "e1"}, Ports: []int{16992, 16993}},
				Version:      &record.Version{Mark: record.Mark{At: at, EventID: "e1"}, AMTVersion: "16.1.25"},
				State:        &record.State{Mark: record.Mark{At: at, EventID: "e1"}, State: "post"},
				Stale:        &record.Stale{Mark: record.Mark{At: at, EventID: "e1"}, Stale: false}},
		},
		{
			name:    "discovered by ip only is ignored",
			payload: &events.DeviceDiscovered{IP: "192.0.2.9", Ports: []int{16992}, Method: "http", ScanID: "s1", SeenAt: t0},
			want:    nil,
		},
		{
			name:    "discovered with a bad state",
			payload: &events.DeviceDiscovered{UUID: uuidA, IP: "192.0.2.9", ProvisioningState: "done", Method: "http", SeenAt: t0},
			wantErr: events.ErrInvalid,
		},
		{
			name:    "discovered with a bad port",
			payload: &events.DeviceDiscovered{UUID: uuidA, IP: "192.0.2.9", Ports: []int{70000}, Method: "http", SeenAt: t0},
			wantErr: events.ErrInvalid,
		},
		{
			name:    "provisioning succeeded",
			payload: &events.Provisioning{Event: events.ProvisioningSucceeded, UUID: uuidA, JobID: "j1", Attempt: 2, Profile: "p", Step: "commit", Outcome: "ok", ReturnValue: &ret, At: t0},
			want: &record.Update{UUID: uuidA, FirstSeen: at, LastSeen: at,
				Provisioning: &record.Provisioning{Mark: record.Mark{At: at, EventID: "e1"}, State: "succeeded", JobID: "j1", Attempt: 2, Profile: "p", Step: "commit"},
				State:        &record.State{Mark: record.Mark{At: at, EventID: "e1"}, State: "post"}},
		},
		{
			name:    "provisioning failed keeps the state",
			payload: &events.Provisioning{Event: events.ProvisioningFailed, UUID: uuidA, JobID: "j1", Attempt: 1, ErrorCode: "DEVICE_UNREACHABLE", At: t0},
			want: &record.Update{UUID: uuidA, FirstSeen: at, LastSeen: at,
				Provisioning: &record.Provisioning{Mark: record.Mark{At: at, EventID: "e1"}, State: "failed", JobID: "j1", Attempt: 1, ErrorCode: "DEVICE_UNREACHABLE"}},
		},
		{
			name:    "provisioning step",
			payload: &events.Provisioning{Event: events.ProvisioningStep, UUID: uuidA, JobID: "j1", Attempt: 1, Step: "tls", At: t0},
			want: &record.Update{UUID: uuidA, FirstSeen: at, LastSeen: at,
				Provisioning: &record.Provisioning{Mark: record.Mark{At: at, EventID: "e1"}, State: "running", JobID: "j1", Attempt: 1, Step: "tls"}},
		},
		{
			name:    "provisioning started for a zero uuid",
			payload: &events.Provisioning{Event: events.ProvisioningStarted, UUID: "00000000-0000-0000-0000-000000000000", At: t0},
			wantErr: events.ErrInvalid,
		},
		{
			name:    "cert issued has no table yet",
			payload: &events.CertIssued{UUID: uuidA, Serial: "01", NotBefore: t0, NotAfter: t0.Add(time.Hour), Purpose: "tls"},
			wantErr: errNoHandler,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeAndHandle(envelope(t, tt.payload, "e1"))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("update\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestEveryKindHasAHandlerOrIsKnownToHaveNone(t *testing.T) {
	noTableYet := map[string]bool{events.TypeCertIssued: true}
	h, mh := handlers(), multiHandlers()
	for _, k := range events.Kinds() {
		if _, ok := mh[k.Type]; ok {
			continue
		}
		if _, ok := h[k.Type]; !ok && !noTableYet[k.Type] {
			t.Errorf("no inventory handler for %s", k.Type)
		}
	}
}

// history is a device's life in events, with duplicates, equal timestamps
// (tie-broken by id) and a reset back to setup mode after success.
func history(t *testing.T, uuid string, base time.Time) []events.Envelope {
	t.Helper()
	hello := func(i int, ip string, retry uint32) events.Envelope {
		return envelope(t, &events.DeviceHello{UUID: uuid, SourceIP: ip, SourcePort: 1000 + i, InterfaceVersion: 3,
			AdminCredentialsSet: i%2 == 0, RetryCount: retry,
			RootHashes: []events.RootHash{{Alg: "sha256", Hex: fmt.Sprintf("%064x", i)}},
			ReceivedAt: base.Add(time.Duration(i) * time.Minute)}, events.HelloID(uuid, retry)+fmt.Sprint("-", i))
	}
	prov := func(e events.ProvisioningEvent, i int, code string) events.Envelope {
		return envelope(t, &events.Provisioning{Event: e, UUID: uuid, JobID: "job-1", Attempt: 1, Step: fmt.Sprint("s", i),
			ErrorCode: code, At: base.Add(time.Duration(i) * time.Minute)}, fmt.Sprintf("prov-%s-%d", uuid, i))
	}
	disc := func(i int, ip, state string) events.Envelope {
		return envelope(t, &events.DeviceDiscovered{UUID: uuid, IP: ip, Ports: []int{16992, 16993 + i}, AMTVersion: fmt.Sprint("16.", i),
			ProvisioningState: state, Method: "wsman", ScanID: "scan", SeenAt: base.Add(time.Duration(i) * time.Minute)}, fmt.Sprintf("disc-%s-%d", uuid, i))
	}
	evs := []events.Envelope{
		hello(0, "192.0.2.1", 0),
		hello(1, "192.0.2.2", 1),
		disc(1, "192.0.2.3", "in"), // same minute as hello 1: ids break the tie
		prov(events.ProvisioningStarted, 2, ""),
		prov(events.ProvisioningStep, 3, ""),
		prov(events.ProvisioningSucceeded, 4, ""),
		disc(5, "192.0.2.4", "post"),
		hello(6, "192.0.2.5", 0), // reset to setup mode
		prov(events.ProvisioningFailed, 7, "AMT_INVALID_PASSWORD"),
		// The newest facts tie on time: the greater event id wins ("hello-" > "disc-").
		disc(8, "192.0.2.8", "pre"),
		hello(8, "192.0.2.9", 0),
	}
	return append(evs, evs[2], evs[5]) // redeliveries
}

func dump(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	var out string
	for _, table := range []string{"devices", "oob_capability", "device_location", "device_identification", "device_provisioning"} {
		var s string
		err := pool.QueryRow(context.Background(),
			fmt.Sprintf("SELECT coalesce(json_agg(t ORDER BY t.uuid)::text, '[]') FROM %s t", table)).Scan(&s)
		if err != nil {
			t.Fatal(err)
		}
		out += table + " " + s + "\n"
	}
	return out
}

// TestOrderTolerance applies the same events in many orders and batch
// groupings, each on a fresh database: every run must give the tables of
// applying them one at a time in time order, and the newest fact of each
// group must win.
func TestOrderTolerance(t *testing.T) {
	t.Parallel()
	uuids := []string{uuidA, "939b524b-13d4-1d18-e487-1c697a6b7a2b", "11111111-2222-3333-4444-555555555555"}
	var evs []events.Envelope
	for i, u := range uuids {
		evs = append(evs, history(t, u, t0.Add(time.Duration(i)*time.Second))...)
	}
	updates := make([]record.Update, 0, len(evs))
	for _, env := range evs {
		u, err := decodeAndHandle(env)
		if err != nil || u == nil {
			t.Fatalf("%s: %v", env.ID, err)
		}
		updates = append(updates, *u)
	}
	ctx := context.Background()

	ref := storetest.New(t)
	for _, u := range updates { // in order, one transaction each
		if err := pgstore.New(ref).Apply(ctx, []record.Update{u}); err != nil {
			t.Fatal(err)
		}
	}
	want := dump(t, ref)

	rng := rand.New(rand.NewPCG(1, 2))
	for run := range 4 {
		pool := storetest.New(t)
		repo := pgstore.New(pool)
		perm := rng.Perm(len(updates))
		for i := 0; i < len(perm); {
			n := 1 + rng.IntN(8) // batches of 1 to 8
			var b []record.Update
			for ; n > 0 && i < len(perm); n, i = n-1, i+1 {
				b = append(b, updates[perm[i]])
			}
			if err := repo.Apply(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		if got := dump(t, pool); got != want {
			t.Fatalf("run %d (order %v) differs from in-order application:\n got %s\nwant %s", run, perm, got, want)
		}
		// Everything again, all in one batch: changes nothing.
		if err := repo.Apply(ctx, updates); err != nil {
			t.Fatal(err)
		}
		if got := dump(t, pool); got != want {
			t.Fatalf("run %d: replaying everything changed the tables:\n got %s\nwant %s", run, got, want)
		}
	}

	d, err := pgstore.New(ref).Get(ctx, uuidA)
	if err != nil {
		t.Fatal(err)
	}
	// Newest per group: hello 8 beats discovery 8 on the id tie-break for
	// the state and the address; version and ports only come from discovery
	// 8; provisioning failed at minute 7 is the last provisioning event.
	if d.Capability.ProvisioningState != "in" || d.Location.IP != "192.0.2.9" || d.Capability.AMTVersion != "16.8" ||
		d.Provisioning.State != "failed" || d.Provisioning.ErrorCode != "AMT_INVALID_PASSWORD" ||
		!d.FirstSeen.Equal(t0.Truncate(time.Microsecond)) || !d.LastSeen.Equal(t0.Add(8*time.Minute).Truncate(time.Microsecond)) ||
		d.Capability.RootHashes[0].Hex != fmt.Sprintf("%064x", 8) || !d.Capability.AdminCredentialsSet {
		t.Fatalf("device after its history: %+v", d)
	}
}

func TestScanCompletedHandler(t *testing.T) {
	at := t0.Truncate(time.Microsecond)
	m := record.Mark{At: at, EventID: "e1"}
	env := envelope(t, &events.ScanCompleted{ScanID: "s1", Trigger: "cli", StartedAt: t0, FinishedAt: t0,
		Stale: []string{"4BAC9510-04A6-4321-BAE2-D45DDF07B684"}, OtherConsole: []string{uuidA}}, "e1")
	p, err := env.Decode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := multiHandlers()[events.TypeScanCompleted](env, p)
	if err != nil {
		t.Fatal(err)
	}
	want := []record.Update{
		{UUID: uuidA, Stale: &record.Stale{Mark: m, Stale: true}},
		{UUID: uuidA, Managed: &record.Managed{Mark: m, By: "other_console"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("updates\n got %+v\nwant %+v", got, want)
	}
	bad := envelope(t, &events.ScanCompleted{ScanID: "s1", Trigger: "cli", StartedAt: t0, FinishedAt: t0, Stale: []string{"nope"}}, "e2")
	p, _ = bad.Decode()
	if _, err := onScanCompleted(bad, p); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("bad uuid: err = %v, want ErrInvalid", err)
	}
}
