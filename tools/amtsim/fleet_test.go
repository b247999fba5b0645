package amtsim_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/tools/amtsim"
	"github.com/amtprov/amtprov/tools/amtsim/firmware"
	"github.com/amtprov/amtprov/tools/amtsim/internal/rmcp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// helloSink counts hellos per device UUID.
type helloSink struct {
	ln     net.Listener
	mu     sync.Mutex
	counts map[string]int
	from   map[string]string
}

func newHelloSink(t *testing.T) *helloSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &helloSink{ln: ln, counts: map[string]int{}, from: map[string]string{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				b, err := io.ReadAll(io.LimitReader(c, amt.MaxHelloSize+1))
				if err != nil || len(b) == 0 {
					// Empty: a dial cancelled by Close after the kernel
					// completed the handshake.
					return
				}
				h, err := amt.DecodeHello(b)
				if err != nil {
					t.Errorf("bad hello from %v: %v", c.RemoteAddr(), err)
					return
				}
				s.mu.Lock()
				s.counts[h.UUID.String()]++
				s.from[h.UUID.String()] = c.RemoteAddr().(*net.TCPAddr).IP.String()
				s.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return s
}

func (s *helloSink) devicesHeard() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.counts)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func baseOptions(t *testing.T, n int, third byte, sink *helloSink) amtsim.Options {
	t.Helper()
	o := amtsim.Options{
		Devices: n, Seed: 11,
		Base:     netip.AddrFrom4([4]byte{127, 30, third, 1}),
		Range:    netip.MustParsePrefix("127.30.0.0/16"),
		HTTPPort: 21992, TLSPort: 21993, RMCPPort: 21623, // below the ephemeral range: the shared layout binds the wildcard address
		TimeScale: 6000, HelloSpread: 50 * time.Millisecond,
		ProvisionedShare: 0.25, AdminPassword: "P@ssw0rd!", LegacyShare: 0.1,
	}
	if sink != nil {
		o.ProvisionServer = sink.ln.Addr().String()
	}
	return o
}

func start(t *testing.T, o amtsim.Options) *amtsim.Fleet {
	t.Helper()
	f, err := amtsim.Start(context.Background(), o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return f
}

func TestFleetListensAndSendsHellos(t *testing.T) {
	for _, layout := range []amtsim.SocketLayout{amtsim.LayoutPerDevice, amtsim.LayoutShared} {
		t.Run(string(layout), func(t *testing.T) { testFleetListensAndSendsHellos(t, layout) })
	}
}

func testFleetListensAndSendsHellos(t *testing.T, layout amtsim.SocketLayout) {
	sink := newHelloSink(t)
	o := baseOptions(t, 20, 1, sink)
	o.Sockets = layout
	f := start(t, o)
	if f.Layout() != layout {
		t.Fatalf("layout %q, want %q", f.Layout(), layout)
	}
	devs := f.Devices()
	if len(devs) != 20 {
		t.Fatalf("%d devices", len(devs))
	}
	var inSetup int
	for i, d := range devs {
		c := d.Config()
		if want := netip.AddrFrom4([4]byte{127, 30, 1, byte(1 + i)}).String(); c.IP != want {
			t.Fatalf("device %d at %s, want %s", i, c.IP, want)
		}
		if got, ok := f.Device(strings.ToUpper(c.UUID)); !ok || got != d {
			t.Fatalf("Device(%s) did not find device %d", c.UUID, i)
		}
		if d.State() == amt.InProvisioning {
			inSetup++
		}
		// 16992 answers with the AMT banner (the firmware's handler).
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(c.IP, "21992"), 5*time.Second)
		if err != nil {
			t.Fatalf("device %d not listening: %v", i, err)
		}
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", c.IP)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatalf("device %d: %v", i, err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Server"); got != "Intel(R) Active Management Technology "+c.AMTVersion {
			t.Fatalf("device %d banner %q", i, got)
		}
		// RMCP answers with the device's state.
		pc, err := net.Dial("udp", net.JoinHostPort(c.IP, "21623"))
		if err != nil {
			t.Fatal(err)
		}
		pc.Write(rmcp.AppendPing(nil, rmcp.Ping{Tag: byte(i)}))
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, err := pc.Read(buf)
		pc.Close()
		if err != nil {
			t.Fatalf("device %d no pong: %v", i, err)
		}
		pong, err := rmcp.ParsePong(buf[:n])
		if err != nil || pong.Tag != byte(i) || pong.State != int(d.State()) {
			t.Fatalf("device %d pong %+v err %v", i, pong, err)
		}
	}
	if inSetup != 15 {
		t.Fatalf("%d devices in setup mode, want 15 (25%% provisioned)", inSetup)
	}
	eventually(t, "a hello from every setup-mode device", func() bool { return sink.devicesHeard() == inSetup })
	sink.mu.Lock()
	for u, ip := range sink.from {
		d, ok := f.Device(u)
		if !ok || d.Config().IP != ip || d.State() != amt.InProvisioning {
			t.Errorf("hello for %s from %s does not match a setup-mode device", u, ip)
		}
	}
	sink.mu.Unlock()
	st := f.Stats()
	if st.Devices != 20 || st.States["in"] != 15 || st.States["post"] != 5 || st.HellosSent < 15 || st.RMCPPings != 20 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFleetSaveLoad(t *testing.T) {
	o := baseOptions(t, 5, 2, nil)
	o.ProvisionServer = "127.0.0.1:1" // nothing listens; hellos fail quietly
	f, err := amtsim.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "fleet.json")
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	want := configs(f)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("fleet file mode %v err %v", fi.Mode(), err)
	}
	o.Seed = 999 // ignored: the file decides the devices
	g, err := amtsim.Load(context.Background(), path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if got := configs(g); !reflect.DeepEqual(got, want) {
		t.Fatalf("loaded fleet differs:\n got %+v\nwant %+v", got, want)
	}

	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"format":"something else","devices":[]}`), 0o600)
	if _, err := amtsim.Load(context.Background(), bad, o); err == nil {
		t.Fatal("Load accepted a foreign format")
	}
}

func configs(f *amtsim.Fleet) []firmware.Config {
	var out []firmware.Config
	for _, d := range f.Devices() {
		out = append(out, d.Config())
	}
	return out
}

func TestFleetDeterministic(t *testing.T) {
	a := start(t, baseOptions(t, 8, 3, nil))
	wantCfgs := configs(a)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := start(t, baseOptions(t, 8, 3, nil))
	if !reflect.DeepEqual(configs(b), wantCfgs) {
		t.Fatal("same seed, different fleet")
	}
}

func TestStartRejects(t *testing.T) {
	bad := []func(*amtsim.Options){
		func(o *amtsim.Options) { o.TimeScale = -1 },
		func(o *amtsim.Options) { o.ProvisionServer = "nowhere" },
		func(o *amtsim.Options) { o.Faults = []amtsim.FaultSpec{{Kind: "meltdown", Share: 1}} },
		func(o *amtsim.Options) { o.ProvisionedShare, o.AdminPassword = 0.5, "" },
		func(o *amtsim.Options) { o.Base = netip.MustParseAddr("127.31.0.1") }, // outside Range
		func(o *amtsim.Options) { o.Sockets = "sideways" },
		func(o *amtsim.Options) { o.RMCPPort = 70000 },
		func(o *amtsim.Options) { o.TLSPort = o.HTTPPort },
	}
	for i, mut := range bad {
		o := baseOptions(t, 2, 4, nil)
		mut(&o)
		if f, err := amtsim.Start(context.Background(), o); err == nil {
			f.Close()
			t.Errorf("case %d: Start accepted bad options", i)
		}
	}
	// A taken address fails the start and releases what was opened.
	o := baseOptions(t, 3, 5, nil)
	ln, err := net.Listen("tcp", "127.30.5.2:21992")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if f, err := amtsim.Start(context.Background(), o); err == nil {
		f.Close()
		t.Fatal("Start succeeded on a taken port")
	}
	ln2, err := net.Listen("tcp", "127.30.5.1:21992") // the first device's socket was released
	if err != nil {
		t.Fatalf("first device's port still held after the failed start: %v", err)
	}
	ln2.Close()
}

func TestStartAppliesFaultShares(t *testing.T) {
	o := baseOptions(t, 20, 6, nil)
	o.ProvisionServer = "127.0.0.1:1"
	o.Faults = []amtsim.FaultSpec{{Kind: firmware.FaultSlow, Share: 0.25, For: time.Hour}, {Kind: firmware.FaultUnreachable, Share: 0.1}}
	f := start(t, o)
	var slow, unreachable int
	for _, d := range f.Devices() {
		if d.HasFault(firmware.FaultSlow) {
			slow++
		}
		if d.HasFault(firmware.FaultUnreachable) {
			unreachable++
		}
	}
	if slow != 5 || unreachable != 2 {
		t.Fatalf("slow %d unreachable %d, want 5 and 2", slow, unreachable)
	}
}

func TestParseFaults(t *testing.T) {
	got, err := amtsim.ParseFaults("slow=0.05, reset=0.01@10m,,")
	if err != nil {
		t.Fatal(err)
	}
	want := []amtsim.FaultSpec{{Kind: firmware.FaultSlow, Share: 0.05}, {Kind: firmware.FaultReset, Share: 0.01, For: 10 * time.Minute}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v", got)
	}
	for _, bad := range []string{"slow", "melt=0.1", "slow=2", "slow=x", "slow=0.1@-1s", "slow=0.1@soon"} {
		if _, err := amtsim.ParseFaults(bad); err == nil {
			t.Errorf("ParseFaults(%q) accepted", bad)
		}
	}
}

func TestControlAPI(t *testing.T) {
	o := baseOptions(t, 4, 7, nil)
	o.ProvisionServer = "127.0.0.1:1"
	f := start(t, o)
	srv := httptest.NewServer(f.ControlHandler())
	t.Cleanup(srv.Close)
	d := f.Devices()[0]
	u := d.Config().UUID

	call := func(method, path, body string, wantStatus int, out any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantStatus {
			t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, wantStatus, b)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: content type %q", method, path, ct)
		}
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				t.Fatalf("%s %s: %v: %s", method, path, err, b)
			}
		}
	}

	var list []map[string]any
	call("GET", "/devices", "", 200, &list)
	if len(list) != 4 {
		t.Fatalf("%d devices listed", len(list))
	}
	for _, k := range []string{"uuid", "ip", "mac", "hostname", "dns_suffix", "amt_version", "realm", "state", "control_mode", "tls_enabled", "hellos_sent", "sessions_max_concurrent"} {
		if _, ok := list[0][k]; !ok {
			t.Fatalf("device JSON lacks %q: %v", k, list[0])
		}
	}
	call("GET", "/devices?state=post", "", 200, &list)
	if len(list) != 1 || list[0]["state"] != "post" {
		t.Fatalf("state=post gave %v", list)
	}
	call("GET", "/devices?state=sideways", "", 400, nil)

	var info firmware.Info
	call("GET", "/devices/"+u, "", 200, &info)
	if info.UUID != u || info.IP != d.Config().IP {
		t.Fatalf("show gave %+v", info)
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	call("GET", "/devices/00000000-0000-0000-0000-000000000001", "", 404, &e)
	if e.Error.Code != "NOT_FOUND" {
		t.Fatalf("error body %+v", e)
	}

	call("POST", "/devices/"+u+"/fault", `{"kind":"slow","for":"10s"}`, 200, &info)
	if !d.HasFault(firmware.FaultSlow) || len(info.Faults) != 1 || info.Faults[0] != "slow" {
		t.Fatalf("fault not injected: %+v", info.Faults)
	}
	for _, body := range []string{`{"kind":"meltdown"}`, `{"kind":"slow","for":"forever"}`, `{"kind":"slow","for":"-1s"}`, `{"kind":"slow","extra":1}`, `not json`, `{"kind":"slow"}{}`, `{"kind":"` + strings.Repeat("x", 5000) + `"}`} {
		call("POST", "/devices/"+u+"/fault", body, 400, &e)
		if e.Error.Code != "BAD_REQUEST" || e.Error.Message == "" {
			t.Fatalf("body %.40q: error %+v", body, e)
		}
	}

	var prov *firmware.Device
	for _, x := range f.Devices() {
		if x.State() == amt.PostProvisioning {
			prov = x
		}
	}
	call("POST", "/devices/"+prov.Config().UUID+"/reset", "", 200, &info)
	if prov.State() != amt.InProvisioning || info.State != "in" {
		t.Fatalf("reset left state %v / %q", prov.State(), info.State)
	}
	call("POST", "/devices/"+u+"/reboot", "", 200, nil)

	var probes struct {
		UUID    string
		Seconds []amtsim.ProbeSecond
	}
	pc, _ := net.Dial("udp", net.JoinHostPort(d.Config().IP, "21623"))
	pc.Write(rmcp.AppendPing(nil, rmcp.Ping{}))
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	pc.Read(make([]byte, 64))
	pc.Close()
	call("GET", "/devices/"+u+"/probes", "", 200, &probes)
	if len(probes.Seconds) == 0 || probes.Seconds[len(probes.Seconds)-1].RMCP != 1 {
		t.Fatalf("probes %+v", probes)
	}

	var st amtsim.Stats
	call("GET", "/stats", "", 200, &st)
	if st.Devices != 4 || st.States["in"] != 4 || st.MaxProbesPerSecond < 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestStart1000 checks that a thousand devices come up quickly with every
// socket bound, and that Close releases them.
func TestStart1000(t *testing.T) {
	o := baseOptions(t, 1000, 0, nil)
	o.Range = netip.MustParsePrefix("127.32.0.0/16")
	o.Base = netip.MustParseAddr("127.32.0.1")
	o.ProvisionServer = "127.0.0.1:1"
	o.HelloSpread = time.Hour // keep hellos out of the measurement
	begin := time.Now()
	f := start(t, o)
	t.Logf("1000 devices listening in %v (goroutines %d)", time.Since(begin), runtime.NumGoroutine())
	last := f.Devices()[999].Config().IP
	c, err := net.DialTimeout("tcp", net.JoinHostPort(last, "21993"), 5*time.Second)
	if err != nil {
		t.Fatalf("last device not listening: %v", err)
	}
	c.Close()
}
