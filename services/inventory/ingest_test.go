package inventory_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/inventory"
)

var base = time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func deviceUUID(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i+1, i*7919) }

// fleet returns the events of n devices: every device says hello twice
// (firmware retries), a third of them are then provisioned (started,
// succeeded, found by discovery afterwards), every fifth fails once first.
// The slice is shuffled, so the stream is not in event-time order.
func fleet(t testing.TB, n int, seed uint64) []events.Envelope {
	t.Helper()
	var out []events.Envelope
	add := func(p events.Payload, id string) {
		env, err := events.New("/test", p, id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, env)
	}
	for i := range n {
		u := deviceUUID(i)
		at := base.Add(time.Duration(i) * time.Millisecond)
		for retry := range uint32(2) {
			add(&events.DeviceHello{UUID: u, SourceIP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), SourcePort: 50000,
				InterfaceVersion: 3, AdminCredentialsSet: true, RetryCount: retry,
				RootHashes: []events.RootHash{{Alg: "sha256", Hex: fmt.Sprintf("%064x", i)}, {Alg: "sha1", Hex: fmt.Sprintf("%040x", retry)}},
				ReceivedAt: at.Add(time.Duration(retry) * time.Minute), Listener: "test"}, events.HelloID(u, retry))
		}
		if i%5 == 0 {
			add(&events.Provisioning{Event: events.ProvisioningFailed, UUID: u, JobID: "j" + u, Attempt: 1, Profile: "default",
				ErrorCode: "DEVICE_UNREACHABLE", At: at.Add(2 * time.Minute)}, "failed-"+u)
		}
		if i%3 == 0 {
			add(&events.Provisioning{Event: events.ProvisioningStarted, UUID: u, JobID: "j" + u, Attempt: 2, Profile: "default",
				At: at.Add(3 * time.Minute)}, "started-"+u)
			add(&events.Provisioning{Event: events.ProvisioningSucceeded, UUID: u, JobID: "j" + u, Attempt: 2, Profile: "default",
				At: at.Add(4 * time.Minute)}, "succeeded-"+u)
			add(&events.DeviceDiscovered{UUID: u, IP: fmt.Sprintf("10.200.%d.%d", i>>8&255, i&255), Ports: []int{16992, 16993},
				AMTVersion: "16.1.25", ProvisioningState: "post", Method: "wsman", ScanID: "scan-1", SeenAt: at.Add(5 * time.Minute)}, "disc-"+u)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// publish stores envs in the stream, asynchronously in chunks (so that a
// slow server never makes the client give up on stalled publishes), and
// waits for every PubAck.
func publish(t testing.TB, js jetstream.JetStream, envs []events.Envelope) {
	t.Helper()
	const chunk = 1000
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, 0, chunk)
	for start := 0; start < len(envs); start += chunk {
		futures = futures[:0]
		for i, env := range envs[start:min(start+chunk, len(envs))] {
			msg := &nats.Msg{Subject: env.Topic, Header: nats.Header(env.Headers()), Data: env.Data}
			f, err := js.PublishMsgAsync(msg)
			if err != nil {
				t.Fatalf("publish %d: %v", start+i, err)
			}
			futures = append(futures, f)
		}
		for i, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				t.Fatalf("publish %d: %v", start+i, err)
			case <-ctx.Done():
				t.Fatal("publish: PubAcks did not arrive in time")
			}
		}
	}
}

type running struct {
	svc    *inventory.Service
	stop   func() error                      // cancels Run and returns its error
	result func(time.Duration) (bool, error) // Run's error if it returns on its own within the time
}

func startInventory(t testing.TB, cfg inventory.Config, pool *pgxpool.Pool, js jetstream.JetStream, tel telemetry.Providers) running {
	t.Helper()
	svc, err := inventory.New(cfg, pool, js, tel, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var (
		finished bool
		runErr   error
	)
	stop := func() error {
		if !finished {
			cancel()
			runErr, finished = <-done, true
		}
		return runErr
	}
	result := func(d time.Duration) (bool, error) {
		if !finished {
			select {
			case runErr = <-done:
				finished = true
			case <-time.After(d):
			}
		}
		return finished, runErr
	}
	t.Cleanup(func() { _ = stop() })
	return running{svc: svc, stop: stop, result: result}
}

func consumerInfo(t testing.TB, js jetstream.JetStream, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, events.StreamName, durable)
	if err != nil {
		return nil
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// waitAcked polls until durable has every message of the stream acked.
func waitAcked(t testing.TB, js jetstream.JetStream, durable string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	si, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := si.State.LastSeq
	deadline := time.Now().Add(timeout)
	for {
		info := consumerInfo(t, js, durable)
		if info != nil && info.AckFloor.Stream >= last && info.NumAckPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s: not every message acked within %v: %+v", durable, timeout, info)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not a wait for a condition
	}
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

func count(t testing.TB, pool *pgxpool.Pool, table string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReplayGivesIdenticalTables: the tables built from a shuffled stream
// are the same when the whole stream is applied again on top of them, and
// when it is applied from scratch on an empty database.
func TestReplayGivesIdenticalTables(t *testing.T) {
	t.Parallel()
	_, js := bustest.Connect(t)
	tel, _ := telemetry.NewForTest("inventory")
	const devices = 300
	publish(t, js, fleet(t, devices, 1))

	pool := storetest.New(t)
	first := startInventory(t, inventory.Config{BatchSize: 64}, pool, js, tel)
	waitAcked(t, js, "inventory", 30*time.Second)
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	want := dump(t, pool)
	if n := count(t, pool, "devices"); n != devices {
		t.Fatalf("%d devices, want %d", n, devices)
	}

	again := startInventory(t, inventory.Config{Durable: "replay", BatchSize: 17}, pool, js, tel)
	waitAcked(t, js, "replay", 30*time.Second)
	if err := again.stop(); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, pool); got != want {
		t.Fatalf("replaying the stream onto its own tables changed them:\n got %.2000s\nwant %.2000s", got, want)
	}

	fresh := storetest.New(t)
	scratch := startInventory(t, inventory.Config{Durable: "scratch", BatchSize: 512}, fresh, js, tel)
	waitAcked(t, js, "scratch", 30*time.Second)
	if err := scratch.stop(); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, fresh); got != want {
		t.Fatalf("replaying the stream on an empty database gave other tables:\n got %.2000s\nwant %.2000s", got, want)
	}
}

// TestRestartMidStream stops the inventory while thousands of events are in
// flight and starts a new one on the same durable consumer: the tables end
// up exactly as an uninterrupted run makes them, and every message is acked.
func TestRestartMidStream(t *testing.T) {
	// Registered first, so it runs after every other cleanup (servers,
	// pools, consumers) and sees what Run left behind.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	_, js := bustest.Connect(t)
	tel, _ := telemetry.NewForTest("inventory")
	const devices = 1000
	evs := fleet(t, devices, 2)
	publish(t, js, evs)
	total := uint64(len(evs))

	pool := storetest.New(t)
	cfg := inventory.Config{BatchSize: 128, Workers: 1024}
	first := startInventory(t, cfg, pool, js, tel)
	deadline := time.Now().Add(30 * time.Second)
	for {
		info := consumerInfo(t, js, "inventory")
		if info != nil && info.AckFloor.Stream > 0 {
			t.Logf("stopping with %d events acked, %d delivered and not acked yet", info.AckFloor.Stream, info.NumAckPending)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no progress within 30s")
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	if err := first.stop(); err != nil {
		t.Fatalf("stop mid-stream: %v", err)
	}
	info := consumerInfo(t, js, "inventory")
	if info.AckFloor.Stream >= total {
		t.Fatalf("the first run finished all %d events before it was stopped; the test proves nothing", total)
	}
	t.Logf("stopped after %d of %d events acked (%d devices written)", info.AckFloor.Stream, total, count(t, pool, "devices"))

	second := startInventory(t, cfg, pool, js, tel)
	waitAcked(t, js, "inventory", 60*time.Second)
	if err := second.stop(); err != nil {
		t.Fatal(err)
	}

	ref := storetest.New(t)
	whole := startInventory(t, inventory.Config{Durable: "reference"}, ref, js, tel)
	waitAcked(t, js, "reference", 60*time.Second)
	if err := whole.stop(); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, "devices"); n != devices {
		t.Fatalf("%d devices after the restart, want %d", n, devices)
	}
	if got, want := dump(t, pool), dump(t, ref); got != want {
		t.Fatalf("tables after a restart differ from an uninterrupted run:\n got %.2000s\nwant %.2000s", got, want)
	}
	if info := consumerInfo(t, js, "inventory"); info.NumPending != 0 || info.NumAckPending != 0 {
		t.Fatalf("consumer still has work: pending %d, ack pending %d", info.NumPending, info.NumAckPending)
	}
}

// TestCrashMidStream kills the inventory's NATS connection without a drain
// while events are in flight (as a crashed process would leave them), then
// starts a new inventory: JetStream redelivers what was never acked, the
// rows already committed for it are written again without change, and the
// tables end up as an uninterrupted run makes them.
func TestCrashMidStream(t *testing.T) {
	t.Parallel()
	url := bustest.RunServer(t)
	_, js := bustest.ConnectTo(t, url)
	tel, _ := telemetry.NewForTest("inventory")
	const devices = 600
	publish(t, js, fleet(t, devices, 5))

	pool := storetest.New(t)
	cfg := inventory.Config{BatchSize: 64, Workers: 512, AckWait: time.Second}
	crashConn, crashJS := bustest.ConnectTo(t, url)
	crashed := startInventory(t, cfg, pool, crashJS, tel)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if info := consumerInfo(t, js, "inventory"); info != nil && info.AckFloor.Stream > 0 {
			t.Logf("crash with %d events acked, %d delivered and not acked", info.AckFloor.Stream, info.NumAckPending)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no progress within 30s")
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	crashConn.Close()
	if ok, err := crashed.result(30 * time.Second); !ok || err == nil {
		t.Errorf("Run after its connection was closed under it: returned %v, error %v; want an error", ok, err)
	}

	restarted := startInventory(t, cfg, pool, js, tel)
	waitAcked(t, js, "inventory", 60*time.Second)
	if err := restarted.stop(); err != nil {
		t.Fatal(err)
	}
	ref := storetest.New(t)
	whole := startInventory(t, inventory.Config{Durable: "reference"}, ref, js, tel)
	waitAcked(t, js, "reference", 60*time.Second)
	if err := whole.stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := dump(t, pool), dump(t, ref); got != want {
		t.Fatalf("tables after a crash differ from an uninterrupted run:\n got %.2000s\nwant %.2000s", got, want)
	}
}

// TestReplicasShareTheWork runs three inventories on one durable consumer
// and one database, as replicas would: they split the stream between them,
// their concurrent transactions on the same devices do not deadlock or
// lose updates, and the tables equal those of a single inventory.
func TestReplicasShareTheWork(t *testing.T) {
	t.Parallel()
	url := bustest.RunServer(t)
	_, js := bustest.ConnectTo(t, url)
	tel, _ := telemetry.NewForTest("inventory")
	publish(t, js, fleet(t, 500, 6))

	pool := storetest.New(t)
	var (
		replicas []running
		tels     []telemetry.Providers
	)
	for range 3 {
		_, rjs := bustest.ConnectTo(t, url) // a connection each, as separate processes have
		rtel, _ := telemetry.NewForTest("inventory")
		tels = append(tels, rtel)
		replicas = append(replicas, startInventory(t, inventory.Config{BatchSize: 32, Workers: 64}, pool, rjs, rtel))
	}
	waitAcked(t, js, "inventory", 60*time.Second)
	for i, r := range replicas {
		if err := r.stop(); err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		rec := httptest.NewRecorder()
		tels[i].Metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if !strings.Contains(rec.Body.String(), `outcome="applied"`) {
			t.Errorf("replica %d applied no event", i)
		}
	}

	ref := storetest.New(t)
	single := startInventory(t, inventory.Config{Durable: "single"}, ref, js, tel)
	waitAcked(t, js, "single", 60*time.Second)
	if err := single.stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := dump(t, pool), dump(t, ref); got != want {
		t.Fatalf("tables written by three replicas differ from one inventory's:\n got %.2000s\nwant %.2000s", got, want)
	}
}

func getJSON(t *testing.T, url string, wantStatus int, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("GET %s: status %d, want %d; body %s", url, resp.StatusCode, wantStatus, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET %s: Content-Type %q", url, ct)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
}

type apiError struct {
	Error struct{ Code, Message string } `json:"error"`
}

// TestHelloToReadAPI publishes one hello the way the listener does, waits
// for the device to appear in the API, checks the document, and that the
// inventory's write continued the hello's trace.
func TestHelloToReadAPI(t *testing.T) {
	t.Parallel()
	_, js := bustest.Connect(t)
	tel, rec := telemetry.NewForTest("inventory")
	pool := storetest.New(t)
	r := startInventory(t, inventory.Config{}, pool, js, tel)
	srv := httptest.NewServer(r.svc.Handler())
	t.Cleanup(srv.Close)

	const u = "4bac9510-04a6-4321-bae2-d45ddf07b684"
	at := time.Date(2026, 11, 26, 9, 30, 0, 0, time.UTC)
	hello := &events.DeviceHello{UUID: u, SourceIP: "192.0.2.7", SourcePort: 51000, InterfaceVersion: 3, AdminCredentialsSet: true,
		RootHashes: []events.RootHash{{Alg: "sha256", Hex: fmt.Sprintf("%064x", 42)}}, ReceivedAt: at, Listener: "l1"}
	ctx, span := tel.Tracer.Tracer("test").Start(context.Background(), "hello")
	if err := bus.NewPublisher(js, "/hello-listener/test", tel).Publish(ctx, hello, events.HelloID(u, 0)); err != nil {
		t.Fatal(err)
	}
	span.End()

	var d inventory.Device
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(srv.URL + "/v1/devices/" + u)
		if err != nil {
			t.Fatal(err)
		}
		ok := resp.StatusCode == http.StatusOK
		if ok {
			if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
				t.Fatal(err)
			}
		}
		resp.Body.Close()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("device not in the API within 10s (last status %d)", resp.StatusCode)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	if d.UUID != u || d.Location.IP != "192.0.2.7" || !d.Location.LastHelloAt.Equal(at) || !d.FirstSeen.Equal(at) ||
		d.Capability.ProvisioningState != "in" || d.Capability.HelloInterfaceVersion != 3 || !d.Capability.AdminCredentialsSet ||
		len(d.Capability.RootHashes) != 1 || d.Capability.RootHashes[0].Hex != fmt.Sprintf("%064x", 42) ||
		d.Capability.ControlMode != "none" || d.Provisioning.State != "" || !d.Provisioning.UpdatedAt.IsZero() {
		t.Fatalf("device document: %+v", d)
	}

	// The raw JSON has every field of INTERFACES.md's DEVICE, with "" for
	// times nothing reported.
	var raw map[string]map[string]any
	resp, err := http.Get(srv.URL + "/v1/devices/" + u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatal(err)
	}
	raw = map[string]map[string]any{}
	for _, k := range []string{"identification", "location", "capability", "provisioning"} {
		var m map[string]any
		if err := json.Unmarshal(top[k], &m); err != nil {
			t.Fatalf("%s: %v in %s", k, err, body)
		}
		raw[k] = m
	}
	want := map[string][]string{
		"identification": {"hostname", "domain", "fqdn", "serial", "model", "manufacturer"},
		"location":       {"ip", "mac", "last_hello_at"},
		"capability": {"amt_version", "sku", "provisioning_state", "control_mode", "hello_interface_version",
			"admin_credentials_set", "root_hashes", "tls_enabled", "sol", "ider", "kvm"},
		"provisioning": {"state", "attempt", "error_code", "updated_at"},
	}
	for group, keys := range want {
		for _, k := range keys {
			if _, ok := raw[group][k]; !ok {
				t.Errorf("DEVICE.%s.%s missing in %s", group, k, body)
			}
		}
	}
	for _, k := range []string{"uuid", "first_seen", "last_seen"} {
		if _, ok := top[k]; !ok {
			t.Errorf("DEVICE.%s missing", k)
		}
	}
	if raw["provisioning"]["updated_at"] != "" {
		t.Errorf("provisioning.updated_at = %v, want \"\" before any provisioning event", raw["provisioning"]["updated_at"])
	}

	// The events counter and the batch histogram reach /metrics.
	mrec := httptest.NewRecorder()
	tel.Metrics.ServeHTTP(mrec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{`inventory_events_total{`, `outcome="applied"`, `type="io.amtprov.device.hello.v1"`, `inventory_batch_size_count`} {
		if !strings.Contains(mrec.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// The batch span links to the consumer span of the hello's trace.
	linked := false
	for _, s := range rec.Ended() {
		if s.Name() != "inventory.write_batch" {
			continue
		}
		for _, l := range s.Links() {
			if l.SpanContext.TraceID() == span.SpanContext().TraceID() {
				linked = true
			}
		}
	}
	if !linked {
		t.Error("no inventory.write_batch span links to the hello's trace")
	}
	committed := false
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() != span.SpanContext().TraceID() || s.SpanKind() != trace.SpanKindConsumer {
			continue
		}
		for _, e := range s.Events() {
			committed = committed || e.Name == "inventory rows committed"
		}
	}
	if !committed {
		t.Error("the hello's consumer span has no \"inventory rows committed\" event")
	}
}

// TestReadAPI covers pagination, the state filter and the error shape.
func TestReadAPI(t *testing.T) {
	t.Parallel()
	_, js := bustest.Connect(t)
	tel, _ := telemetry.NewForTest("inventory")
	const devices = 25 // fleet: devices 0, 3, 6, ... 24 are provisioned (post), the rest in
	publish(t, js, fleet(t, devices, 3))
	pool := storetest.New(t)
	r := startInventory(t, inventory.Config{}, pool, js, tel)
	waitAcked(t, js, "inventory", 30*time.Second)
	srv := httptest.NewServer(r.svc.Handler())
	t.Cleanup(srv.Close)

	var all []string
	for i := range devices {
		all = append(all, deviceUUID(i))
	}
	sort.Strings(all)

	t.Run("pages", func(t *testing.T) {
		var got []string
		pages, next := 0, ""
		for {
			var p inventory.Page
			getJSON(t, srv.URL+"/v1/devices?limit=7&after="+next, http.StatusOK, &p)
			pages++
			for _, d := range p.Devices {
				got = append(got, d.UUID)
			}
			if p.Next == "" {
				break
			}
			if len(p.Devices) != 7 {
				t.Fatalf("page %d has %d devices and a next cursor", pages, len(p.Devices))
			}
			next = p.Next
		}
		if pages != 4 || fmt.Sprint(got) != fmt.Sprint(all) {
			t.Fatalf("%d pages, devices %v, want 4 pages of %v", pages, got, all)
		}
	})
	t.Run("state filter", func(t *testing.T) {
		for state, want := range map[string]int{"post": 9, "in": 16, "pre": 0} {
			var p inventory.Page
			getJSON(t, srv.URL+"/v1/devices?state="+state, http.StatusOK, &p)
			if len(p.Devices) != want || p.Next != "" {
				t.Errorf("state=%s: %d devices (next %q), want %d", state, len(p.Devices), p.Next, want)
			}
			for _, d := range p.Devices {
				if d.Capability.ProvisioningState != state {
					t.Errorf("state=%s returned %s in state %s", state, d.UUID, d.Capability.ProvisioningState)
				}
				if state == "post" && (d.Provisioning.State != "succeeded" || d.Provisioning.Attempt != 2) {
					t.Errorf("provisioned device %s: provisioning %+v", d.UUID, d.Provisioning)
				}
			}
		}
		var p inventory.Page
		getJSON(t, srv.URL+"/v1/devices?state=post&limit=4", http.StatusOK, &p)
		getJSON(t, srv.URL+"/v1/devices?state=post&limit=10&after="+p.Next, http.StatusOK, &p)
		if len(p.Devices) != 5 {
			t.Errorf("second page of state=post: %d devices, want 5", len(p.Devices))
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			path   string
			status int
			code   string
		}{
			{"/v1/devices/00000000-0000-4000-8000-00000000ffff", http.StatusNotFound, "NOT_FOUND"},
			{"/v1/devices/not-a-uuid", http.StatusBadRequest, "BAD_REQUEST"},
			{"/v1/devices?state=done", http.StatusBadRequest, "BAD_REQUEST"},
			{"/v1/devices?limit=0", http.StatusBadRequest, "BAD_REQUEST"},
			{"/v1/devices?limit=1001", http.StatusBadRequest, "BAD_REQUEST"},
			{"/v1/devices?limit=ten", http.StatusBadRequest, "BAD_REQUEST"},
			{"/v1/devices?after=%21%21", http.StatusBadRequest, "BAD_REQUEST"},
			{"/v1/nothing", http.StatusNotFound, "NOT_FOUND"},
		} {
			var e apiError
			getJSON(t, srv.URL+tc.path, tc.status, &e)
			if e.Error.Code != tc.code || e.Error.Message == "" {
				t.Errorf("GET %s: error %+v, want code %s and a message", tc.path, e.Error, tc.code)
			}
		}
		resp, err := http.Post(srv.URL+"/v1/devices", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		var e apiError
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != http.StatusMethodNotAllowed || e.Error.Code != "METHOD_NOT_ALLOWED" {
			t.Errorf("POST /v1/devices: %d %+v %v", resp.StatusCode, e, err)
		}
		resp.Body.Close()
	})
}

// TestInvalidEventsDoNotBlockTheStream: events that can never be applied (a
// hello from an impossible address, a truncated body) are terminated, and
// the valid events around them are all written and acked.
func TestInvalidEventsDoNotBlockTheStream(t *testing.T) {
	t.Parallel()
	_, js := bustest.Connect(t)
	tel, _ := telemetry.NewForTest("inventory")
	evs := fleet(t, 20, 4)
	bad, err := events.New("/test", &events.DeviceHello{UUID: deviceUUID(999), SourceIP: "999.1.1.1", InterfaceVersion: 3, ReceivedAt: base}, "bad-ip")
	if err != nil {
		t.Fatal(err)
	}
	garbled := evs[0]
	garbled.ID, garbled.Data = "garbled", []byte(`{"uuid":`)
	evs = append(evs[:10:10], append([]events.Envelope{bad, garbled}, evs[10:]...)...)
	publish(t, js, evs)
	pool := storetest.New(t)
	r := startInventory(t, inventory.Config{}, pool, js, tel)
	waitAcked(t, js, "inventory", 30*time.Second)
	if err := r.stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if n := count(t, pool, "devices"); n != 20 {
		t.Fatalf("%d devices, want the 20 valid ones", n)
	}
}
