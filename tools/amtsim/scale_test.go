package amtsim_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/tools/amtsim"
	"github.com/amtprov/amtprov/tools/amtsim/internal/rmcp"
)

// TestScale starts AMTSIM_SCALE devices (e.g. 10000) in this process,
// waits for a hello from every setup-mode device, pings every device over
// RMCP and fetches GET / from every device, and logs start time, memory and
// rates. It is a measurement, run by hand (docs/simulator.md has the
// numbers): AMTSIM_SCALE=10000 go test -run TestScale -v .
func TestScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("AMTSIM_SCALE"))
	if n <= 0 {
		t.Skip("set AMTSIM_SCALE=10000 to measure a large fleet")
	}
	sink := newHelloSink(t)
	o := amtsim.Options{
		Devices: n, Seed: 1,
		Base: netip.MustParseAddr("127.50.0.1"), Range: netip.MustParsePrefix("127.50.0.0/16"),
		HTTPPort: 22992, TLSPort: 22993, RMCPPort: 22623,
		ProvisionServer: sink.ln.Addr().String(), TimeScale: 60, HelloSpread: 5 * time.Second,
		ProvisionedShare: 0.1, AdminPassword: "P@ssw0rd!", LegacyShare: 0.05,
		Sockets: amtsim.SocketLayout(os.Getenv("AMTSIM_SOCKETS")),
	}
	runtime.GC()
	began := time.Now()
	f, err := amtsim.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	startDur := time.Since(began)
	rssStart := procStatus(t, "VmRSS")
	t.Logf("start: %d devices listening in %v, layout %s, RSS %s, goroutines %d, fds %d",
		n, startDur, f.Layout(), rssStart, runtime.NumGoroutine(), openFDs())

	inSetup := 0
	for _, d := range f.Devices() {
		if d.State() == amt.InProvisioning {
			inSetup++
		}
	}
	eventually := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	eventually("a hello from every setup-mode device", 2*time.Minute, func() bool { return sink.devicesHeard() == inSetup })
	helloDur := time.Since(began)
	t.Logf("hellos: all %d setup-mode devices heard %v after start began (%.0f hellos/s over the %v spread); total sent %d",
		inSetup, helloDur, float64(inSetup)/o.HelloSpread.Seconds(), o.HelloSpread, f.Stats().HellosSent)

	// RMCP: ping every device from one socket, as a scanner would.
	pingStart := time.Now()
	answered := pingAll(t, f, o.RMCPPort)
	pingDur := time.Since(pingStart)
	if answered != n {
		t.Fatalf("%d of %d devices answered RMCP", answered, n)
	}
	t.Logf("rmcp: %d pongs in %v (%.0f/s)", answered, pingDur, float64(answered)/pingDur.Seconds())

	// HTTP: GET / on every device, 64 at a time.
	httpStart := time.Now()
	var ok atomic.Int64
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, d := range f.Devices() {
		ip := d.Config().IP
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if banner(ip, o.HTTPPort) {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	httpDur := time.Since(httpStart)
	if int(ok.Load()) != n {
		t.Fatalf("%d of %d devices answered GET /", ok.Load(), n)
	}
	t.Logf("http: %d banners in %v (%.0f/s)", n, httpDur, float64(n)/httpDur.Seconds())
	t.Logf("memory: RSS %s, peak %s after probing", procStatus(t, "VmRSS"), procStatus(t, "VmHWM"))

	closeStart := time.Now()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("close: %v", time.Since(closeStart))
}

func pingAll(t *testing.T, f *amtsim.Fleet, port int) int {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadBuffer(4 << 20)
	devs := f.Devices()
	seen := make(map[netip.Addr]bool, len(devs))
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		for {
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if _, err := rmcp.ParsePong(buf[:n]); err == nil {
				mu.Lock()
				seen[from.Addr().Unmap()] = true
				full := len(seen) == len(devs)
				mu.Unlock()
				if full {
					return
				}
			}
		}
	}()
	ping := rmcp.AppendPing(nil, rmcp.Ping{})
	for round := 0; round < 3; round++ { // MeshCentral pings twice; one more for luck
		for i, d := range devs {
			a := netip.MustParseAddr(d.Config().IP)
			mu.Lock()
			got := seen[a]
			mu.Unlock()
			if got {
				continue
			}
			_, _ = conn.WriteToUDPAddrPort(ping, netip.AddrPortFrom(a, uint16(port)))
			if i%100 == 99 {
				time.Sleep(time.Millisecond) // pace like a scanner, keep buffers from overflowing
			}
		}
		mu.Lock()
		full := len(seen) == len(devs)
		mu.Unlock()
		if full {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	return len(seen)
}

func banner(ip string, port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), 10*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", ip)
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "HTTP/1.1 303")
}

func procStatus(t *testing.T, key string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key+":") {
			return strings.TrimSpace(strings.TrimPrefix(l, key+":"))
		}
	}
	return "unknown"
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// BenchmarkStart1000 measures starting and stopping a 1,000-device fleet.
func BenchmarkStart1000(b *testing.B) {
	o := amtsim.Options{
		Devices: 1000, Seed: 1,
		Base: netip.MustParseAddr("127.51.0.1"), Range: netip.MustParsePrefix("127.51.0.0/16"),
		HTTPPort: 23992, TLSPort: 23993, RMCPPort: 23623, ProvisionServer: "127.0.0.1:1", HelloSpread: time.Hour,
	}
	for b.Loop() {
		f, err := amtsim.Start(context.Background(), o)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
