package listener_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/hello-listener/listener"
)

type fixture struct {
	l       *listener.Listener
	addr    string
	js      jetstream.JetStream
	metrics http.Handler
	spans   *tracetest.SpanRecorder
	stop    func() // stops Serve and waits for it; also run at cleanup
}

func start(t *testing.T, cfg listener.Config) fixture {
	t.Helper()
	_, js := bustest.Connect(t)
	tel, spans := telemetry.NewForTest("hello-listener")
	pub := bus.NewPublisher(js, "/hello-listener/test", tel)
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	l, err := listener.New(cfg, pub, listener.Options{Tracer: tel.Tracer, Meter: tel.Meter, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := l.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, ln) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	t.Cleanup(stop)
	return fixture{l: l, addr: ln.Addr().String(), js: js, metrics: tel.Metrics, spans: spans, stop: stop}
}

// send writes pkt from the given local IP (nil: any) and closes, as firmware does.
func send(t testing.TB, addr string, from net.IP, pkt []byte) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != nil {
		d.LocalAddr = &net.TCPAddr{IP: from}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(pkt); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
}

func helloFor(t testing.TB, i int, retry uint32) ([]byte, string) {
	t.Helper()
	var u amt.UUID
	u[0], u[1], u[2], u[15] = byte(i), byte(i>>8), byte(i>>16), 0xaa
	h := amt.Hello{AdminCredentialsSet: true, InterfaceVersion: amt.InterfacePKI, RetryCount: retry, UUID: u,
		RootHashes: []amt.RootHash{amt.HashCertificate(amt.HashSHA256, []byte(fmt.Sprint("root", i)))}}
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b, u.String()
}

// sourceIP spreads senders over 127.20.0.0/16, as a fleet is spread over a
// network, so that per-IP buckets see realistic traffic.
func sourceIP(i int) net.IP { return net.IPv4(127, 20, byte(i>>8), byte(i)) }

func streamCount(t testing.TB, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metric scrapes one Prometheus sample from the listener's meter (see
// telemetry.SeriesValue for labels); 0 when the series is not exposed.
func metric(t testing.TB, h http.Handler, name string, labels map[string]string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	v, _ := telemetry.SeriesValue(rec.Body.String(), name, labels)
	return v
}

func TestValidHelloBecomesEvent(t *testing.T) {
	f := start(t, listener.Config{})
	pkt, uuid := helloFor(t, 1, 3)
	send(t, f.addr, sourceIP(1), pkt)
	waitFor(t, "one event", func() bool { return streamCount(t, f.js) == 1 })

	s, err := f.js.Stream(context.Background(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.GetLastMsgForSubject(context.Background(), events.SubjectDeviceHello+"."+uuid)
	if err != nil {
		t.Fatal(err)
	}
	env, err := events.Parse(raw.Subject, raw.Header, raw.Data)
	if err != nil {
		t.Fatal(err)
	}
	if env.ID != events.HelloID(uuid, 3) || raw.Header.Get(events.HeaderMsgID) != env.ID {
		t.Fatalf("ids: ce-id %q Nats-Msg-Id %q", env.ID, raw.Header.Get(events.HeaderMsgID))
	}
	// One trace per hello, of one span that stands for the receive and the
	// send: it is the parent the downstream consumers see, and it carries
	// the messaging attributes.
	ended := f.spans.Ended()
	if len(ended) != 1 || ended[0].Name() != "hello.receive" || ended[0].Parent().IsValid() {
		t.Fatalf("spans %v, want one root hello.receive", ended)
	}
	sc := ended[0].SpanContext()
	if want := fmt.Sprintf("00-%s-%s-01", sc.TraceID(), sc.SpanID()); raw.Header.Get("traceparent") != want {
		t.Fatalf("traceparent %q, want %q: the hello's trace would not continue downstream", raw.Header.Get("traceparent"), want)
	}
	attrs := map[attribute.Key]string{}
	for _, kv := range ended[0].Attributes() {
		attrs[kv.Key] = kv.Value.Emit()
	}
	for k, want := range map[attribute.Key]string{
		"amt.device.uuid": uuid, "net.peer.ip": "127.20.0.1", "amt.hello.retry_count": "3",
		"messaging.system": "nats", "messaging.destination.name": raw.Subject, "messaging.operation.type": "send",
		"messaging.message.id": env.ID, "cloudevents.event_type": events.TypeDeviceHello,
	} {
		if attrs[k] != want {
			t.Errorf("span attribute %s = %q, want %q", k, attrs[k], want)
		}
	}
	p, err := env.Decode()
	if err != nil {
		t.Fatal(err)
	}
	h := p.(*events.DeviceHello)
	if h.UUID != uuid || h.SourceIP != "127.20.0.1" || h.InterfaceVersion != 3 || h.RetryCount != 3 || !h.AdminCredentialsSet ||
		len(h.RootHashes) != 1 || h.RootHashes[0].Alg != "sha256" || h.Listener != "test" || h.SourcePort == 0 {
		t.Fatalf("event body %+v", h)
	}
	var body map[string]any
	if err := json.Unmarshal(raw.Data, &body); err != nil {
		t.Fatal(err)
	}
	if _, ok := body["pid"]; ok {
		t.Fatal("v3 hello event carries a pid field")
	}
}

func TestFirmwareRetriesCollapse(t *testing.T) {
	f := start(t, listener.Config{})
	pkt, _ := helloFor(t, 7, 0)
	for i := 0; i < 3; i++ {
		send(t, f.addr, sourceIP(7), pkt) // same (uuid, retry): one fact
	}
	pkt1, _ := helloFor(t, 7, 1)
	send(t, f.addr, sourceIP(7), pkt1) // the next retry is a new fact
	waitFor(t, "3 sends + 1 processed", func() bool {
		return metric(t, f.metrics, "hellos_published_total", nil) == 4
	})
	if n := streamCount(t, f.js); n != 2 {
		t.Fatalf("stream holds %d hellos, want 2 (retry 0 de-duplicated)", n)
	}
}

func TestRejections(t *testing.T) {
	f := start(t, listener.Config{ReadTimeout: 300 * time.Millisecond})
	good, _ := helloFor(t, 9, 0)
	badVersion := append([]byte(nil), good...)
	badVersion[2] = 9
	cases := []struct {
		name   string
		pkt    []byte
		hold   bool // keep the connection open (the listener must time out)
		reason string
	}{
		{"garbage", []byte("\x00\x01garbage that is not a hello at all"), false, "bad_admin_credentials"},
		{"short", good[:20], false, "short"},
		{"unknown version", badVersion, false, "unknown_version"},
		{"trailing garbage", append(append([]byte(nil), good...), 1, 2, 3), false, "trailing_garbage"},
		// Longer than the pooled read buffer, within the cap: read whole
		// (the buffer grows), then refused by the decoder.
		{"long trailing garbage", append(append([]byte(nil), good...), make([]byte, 5000)...), false, "trailing_garbage"},
		{"oversized", append([]byte{0, 0, 3, 0}, make([]byte, 20000)...), false, "oversized"},
		{"empty", nil, false, "empty"},
		{"stalled", good[:30], true, "timeout"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := metric(t, f.metrics, "hellos_rejected_total", map[string]string{"reason": c.reason})
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: sourceIP(100 + i)}}
			conn, err := d.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.pkt) > 0 {
				_, _ = conn.Write(c.pkt)
			}
			if !c.hold {
				_ = conn.(*net.TCPConn).CloseWrite()
			}
			waitFor(t, c.reason+" counted", func() bool {
				return metric(t, f.metrics, "hellos_rejected_total", map[string]string{"reason": c.reason}) == before+1
			})
			_ = conn.Close()
		})
	}
	if n := streamCount(t, f.js); n != 0 {
		t.Fatalf("%d rejected packets reached the bus", n)
	}
}

// TestConnectionCap holds MaxConns connections open: the next one is
// refused as overloaded, and once they finish the listener takes new ones
// again (its connection workers are reused, not lost).
func TestConnectionCap(t *testing.T) {
	f := start(t, listener.Config{MaxConns: 3, ReadTimeout: 5 * time.Second})
	good, _ := helloFor(t, 400, 0)
	var held []net.Conn
	for i := range 3 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: sourceIP(120 + i)}}
		conn, err := d.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write(good[:10]) // an unfinished hello keeps its slot
		held = append(held, conn)
	}
	waitFor(t, "3 connections open", func() bool { return metric(t, f.metrics, "hello_connections_active", nil) == 3 })
	before := metric(t, f.metrics, "hellos_rejected_total", map[string]string{"reason": "overloaded"})
	pkt, _ := helloFor(t, 401, 0)
	send(t, f.addr, sourceIP(130), pkt)
	waitFor(t, "the 4th connection refused", func() bool {
		return metric(t, f.metrics, "hellos_rejected_total", map[string]string{"reason": "overloaded"}) == before+1
	})
	for _, c := range held {
		_ = c.Close() // 10 bytes and EOF: rejected as short, slot freed
	}
	waitFor(t, "slots free", func() bool { return metric(t, f.metrics, "hello_connections_active", nil) == 0 })
	// One at a time: a connection holds its slot until its hello is
	// stored, so a burst of 20 would be partly refused with a cap of 3.
	for i := range 20 {
		pkt, _ := helloFor(t, 410+i, 0)
		send(t, f.addr, sourceIP(140+i), pkt)
		waitFor(t, "the hello stored and its slot free", func() bool {
			return streamCount(t, f.js) == uint64(i+1) && metric(t, f.metrics, "hello_connections_active", nil) == 0
		})
	}
	if got := metric(t, f.metrics, "hellos_rejected_total", map[string]string{"reason": "overloaded"}); got != before+1 {
		t.Fatalf("%v connections refused as overloaded, want %v", got, before+1)
	}
}

// TestServeLeavesNoGoroutine: once Serve returns, no connection worker of
// the listener is left, idle or busy.
func TestServeLeavesNoGoroutine(t *testing.T) {
	f := start(t, listener.Config{})
	for i := range 50 {
		pkt, _ := helloFor(t, 500+i, 0)
		send(t, f.addr, sourceIP(160+i), pkt)
	}
	waitFor(t, "50 hellos", func() bool { return streamCount(t, f.js) == 50 })
	f.stop()
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	if n := bytes.Count(buf, []byte("listener.(*Listener)")); n > 0 {
		t.Fatalf("%d listener frames still on goroutine stacks after Serve returned:\n%s", n, buf)
	}
}

// TestBusOutage: while the stream is gone, a hello is refused as
// publish_failed once PublishTimeout has passed (the firmware sends it again
// on its schedule); once the stream is back, the same hello is stored.
func TestBusOutage(t *testing.T) {
	f := start(t, listener.Config{PublishTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	if err := f.js.DeleteStream(ctx, events.StreamName); err != nil {
		t.Fatal(err)
	}
	pkt, _ := helloFor(t, 600, 0)
	began := time.Now()
	send(t, f.addr, sourceIP(170), pkt)
	waitFor(t, "the hello refused as publish_failed", func() bool {
		return metric(t, f.metrics, "hellos_rejected_total", map[string]string{"reason": "publish_failed"}) == 1
	})
	if took := time.Since(began); took < 300*time.Millisecond {
		t.Fatalf("refused after %s, before the 300ms publish timeout", took)
	}
	if ended := f.spans.Ended(); len(ended) != 1 || ended[0].Status().Code != codes.Error || len(ended[0].Events()) != 1 {
		t.Fatalf("spans %v: want the hello's one span, with status Error and one exception event", ended)
	}
	if _, err := bus.EnsureStream(ctx, f.js, bus.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	send(t, f.addr, sourceIP(170), pkt)
	waitFor(t, "the resent hello stored", func() bool { return streamCount(t, f.js) == 1 })
}

// TestSlowSenderKeepsItsPublishTimeout: the publish deadline counts from
// the publish, not from the accept, so a hello that took longer than
// PublishTimeout to arrive is still stored.
func TestSlowSenderKeepsItsPublishTimeout(t *testing.T) {
	f := start(t, listener.Config{PublishTimeout: 200 * time.Millisecond})
	pkt, _ := helloFor(t, 700, 0)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: sourceIP(180)}}
	conn, err := d.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write(pkt[:10])
	time.Sleep(500 * time.Millisecond)
	_, _ = conn.Write(pkt[10:])
	_ = conn.Close()
	waitFor(t, "the slow hello stored", func() bool { return streamCount(t, f.js) == 1 })
	if got := metric(t, f.metrics, "hellos_rejected_total", map[string]string{"reason": "publish_failed"}); got != 0 {
		t.Fatalf("%v hellos refused as publish_failed", got)
	}
}

func TestPerIPRateLimit(t *testing.T) {
	f := start(t, listener.Config{PerIPRate: 1, PerIPBurst: 3})
	for i := 0; i < 8; i++ {
		pkt, _ := helloFor(t, 200+i, 0)
		send(t, f.addr, sourceIP(50), pkt)
	}
	waitFor(t, "8 connections handled", func() bool {
		return metric(t, f.metrics, "hellos_published_total", nil)+metric(t, f.metrics, "hellos_rejected_total", map[string]string{"reason": "rate_limited"}) == 8
	})
	if got := metric(t, f.metrics, "hellos_published_total", nil); got < 3 || got > 4 {
		t.Fatalf("published %v hellos from one IP with a burst of 3", got)
	}
	// Another address is not affected.
	pkt, _ := helloFor(t, 300, 0)
	before := metric(t, f.metrics, "hellos_published_total", nil)
	send(t, f.addr, sourceIP(51), pkt)
	waitFor(t, "other IP published", func() bool { return metric(t, f.metrics, "hellos_published_total", nil) == before+1 })
}

func TestStatusPage(t *testing.T) {
	f := start(t, listener.Config{})
	resp, err := http.Get("http://" + f.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "amtprov hello listener") {
		t.Fatalf("status page: %d %q", resp.StatusCode, body)
	}
	if n := streamCount(t, f.js); n != 0 {
		t.Fatal("an HTTP probe reached the bus")
	}
}

// TestThousandHellosWithGarbage is the acceptance load of issue 2 at the
// listener: 1,000 distinct hellos interleaved with 10,000 garbage packets;
// every hello lands exactly once, every garbage packet is rejected with its
// reason, and sending it all again adds nothing.
func TestThousandHellosWithGarbage(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	f := start(t, listener.Config{PerIPBurst: 100})
	const hellos, garbage = 1000, 10000
	good := make([][]byte, hellos)
	for i := range good {
		good[i], _ = helloFor(t, i, 0)
	}
	// Garbage of known reasons, each from a spread of source addresses.
	kinds := []struct {
		reason string
		pkt    func(i int) []byte
	}{
		{"unknown_version", func(i int) []byte { b := append([]byte(nil), good[i%hellos]...); b[2] = byte(4 + i%200); return b }},
		{"bad_admin_credentials", func(i int) []byte { b := append([]byte(nil), good[i%hellos]...); b[0] = 2 + byte(i%250); return b }},
		{"short", func(i int) []byte { return good[i%hellos][:1+i%23] }},
		{"trailing_garbage", func(i int) []byte { return append(append([]byte(nil), good[i%hellos]...), byte(i)) }},
		{"bad_hash_type", func(i int) []byte { b := append([]byte(nil), good[i%hellos]...); b[25] = 9; return b }},
	}
	type job struct {
		from net.IP
		pkt  []byte
	}
	jobs := make(chan job, 256)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				send(t, f.addr, j.from, j.pkt)
			}
		}()
	}
	run := func() {
		g := 0
		for i := 0; i < hellos; i++ {
			jobs <- job{sourceIP(i), good[i]}
			for k := 0; k < garbage/hellos; k++ {
				jobs <- job{net.IPv4(127, 21, byte(g>>8), byte(g)), kinds[g%len(kinds)].pkt(g)}
				g++
			}
		}
	}
	run()
	waitFor(t, "all hellos published", func() bool { return streamCount(t, f.js) == hellos })
	run()
	close(jobs)
	wg.Wait()
	waitFor(t, "second round processed", func() bool {
		return metric(t, f.metrics, "hellos_published_total", nil) == 2*hellos
	})
	if n := streamCount(t, f.js); n != hellos {
		t.Fatalf("stream holds %d hellos after a replay, want %d", n, hellos)
	}
	for _, k := range kinds {
		if got := metric(t, f.metrics, "hellos_rejected_total", map[string]string{"reason": k.reason}); got != 2*garbage/float64(len(kinds)) {
			t.Errorf("reason %s: %v rejections, want %v", k.reason, got, 2*garbage/len(kinds))
		}
	}
}
