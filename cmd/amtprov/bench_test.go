package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/service"
)

// TestBenchInProcess runs a small benchmark end to end (in-process system,
// 20 simulated devices) and checks the --json object has exactly the keys
// of INTERFACES.md with sane numbers, and that the report and the chart
// agree with it.
func TestBenchInProcess(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "bench.json")
	var stdout, stderr bytes.Buffer
	root := newRoot(&stdout, &stderr)
	root.SetArgs([]string{"bench", "--devices", "20", "--latency", "5ms", "--sim-base", "127.21.0.1", "--json",
		"--out", out, "--timeout", "90s", "--sample", "200ms"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("amtprov bench: %v\n%s", err, stderr.String())
	}

	var keys map[string]json.RawMessage
	if err := json.Unmarshal(stdout.Bytes(), &keys); err != nil {
		t.Fatalf("--json output %q: %v", stdout.String(), err)
	}
	want := []string{"devices", "provisioned", "failed", "hellos_per_s", "provisioned_per_s", "latency_ms", "cpu_ms_per_device", "peak_rss_mb"}
	got := make([]string, 0, len(keys))
	for k := range keys {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("--json keys %v, want %v", got, want)
	}
	var res benchResult
	dec := json.NewDecoder(bytes.NewReader(stdout.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("--json object: %v", err)
	}
	if res.Devices != 20 || res.Provisioned != 20 || res.Failed != 0 {
		t.Errorf("devices %d provisioned %d failed %d, want 20/20/0", res.Devices, res.Provisioned, res.Failed)
	}
	l := res.LatencyMS
	if !(l.P50 > 0 && l.P50 <= l.P95 && l.P95 <= l.P99) {
		t.Errorf("latency percentiles %+v: want 0 < p50 <= p95 <= p99", l)
	}
	if res.HellosPerS <= 0 || res.ProvisionedPerS <= 0 {
		t.Errorf("hellos/s %v provisioned/s %v: want both > 0", res.HellosPerS, res.ProvisionedPerS)
	}
	for _, m := range []map[string]float64{res.CPUMSPerDevice, res.PeakRSSMB} {
		if m["amtprov"] <= 0 || m["postgres"] <= 0 {
			t.Errorf("per-service figures %v: want amtprov and postgres > 0", m)
		}
	}

	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep benchReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report: %v", err)
	}
	if len(rep.Runs) != 1 {
		t.Fatalf("report has %d runs, want 1", len(rep.Runs))
	}
	r := rep.Runs[0]
	if r.Mode != "in-process" || r.Result.Provisioned != 20 {
		t.Errorf("report run: mode %q provisioned %d", r.Mode, r.Result.Provisioned)
	}
	// The simulator's ground truth agrees with the events. (Its
	// max-concurrent-sessions figure is only required to be counted: in the
	// dev wiring discovery verifies a device right after provisioning and
	// may overlap the provisioner's closing connection.)
	if r.SimPost != 20 || r.SimMaxConc < 1 {
		t.Errorf("simulator: %d devices post-provisioning (want 20), max concurrent sessions per device %d", r.SimPost, r.SimMaxConc)
	}
	if last := r.Curve[len(r.Curve)-1]; last.Count != 20 || last.T <= 0 {
		t.Errorf("curve ends at %+v, want 20 devices after t > 0", last)
	}
	if len(r.Lag) == 0 {
		t.Error("no consumer lag samples")
	}
	if r.Hellos < 20 {
		t.Errorf("%d hellos on the stream, want >= 20", r.Hellos)
	}
	svg, err := os.ReadFile(strings.TrimSuffix(out, ".json") + ".svg")
	if err != nil {
		t.Fatal(err)
	}
	if n := checkSVG(t, svg); n != 1 {
		t.Errorf("chart has %d lines, want 1", n)
	}
}

// checkSVG parses b as XML with an <svg> root and returns its polylines.
func checkSVG(t *testing.T, b []byte) int {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	lines, depth := 0, 0
	rootName := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, b)
		}
		switch v := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				rootName = v.Name.Local
			}
			depth++
			if v.Name.Local == "polyline" {
				lines++
			}
		case xml.EndElement:
			depth--
		}
	}
	if rootName != "svg" || depth != 0 {
		t.Fatalf("SVG root %q, open elements at the end %d", rootName, depth)
	}
	return lines
}

func TestBenchSVGSweep(t *testing.T) {
	var b bytes.Buffer
	series := []benchSeries{
		{Label: `provisioners=1 <"&">`, Points: []benchPoint{{0, 0}, {1.5, 10}, {3, 20}}},
		{Label: "provisioners=2", Points: []benchPoint{{0, 0}, {0.7, 10}, {1.2, 20}}},
		{Label: "empty", Points: nil},
	}
	if err := writeBenchSVG(&b, "a & b", series); err != nil {
		t.Fatal(err)
	}
	if n := checkSVG(t, b.Bytes()); n != 3 {
		t.Errorf("%d polylines, want 3", n)
	}
	if !strings.Contains(b.String(), "provisioners=1 &lt;&#34;&amp;&#34;&gt;") {
		t.Error("legend label not escaped")
	}
}

func TestNiceTicks(t *testing.T) {
	tests := []struct {
		max  float64
		want []float64
	}{
		{0, []float64{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}},
		{20, []float64{0, 5, 10, 15, 20}},
		{5000, []float64{0, 1000, 2000, 3000, 4000, 5000}},
		{73, []float64{0, 20, 40, 60, 80}},
	}
	for _, tt := range tests {
		got := niceTicks(tt.max)
		if len(got) != len(tt.want) || got[0] != 0 || got[len(got)-1] < tt.max {
			t.Errorf("niceTicks(%v) = %v, want %v", tt.max, got, tt.want)
		}
	}
}

func TestBenchPlan(t *testing.T) {
	base := benchOptions{devices: 10, provisioners: 1, inventory: 1, chaosAt: 0.25, latency: 30 * time.Millisecond, timeout: time.Minute, sample: time.Second, simBase: "127.20.0.1"}
	chaos := func(o *benchOptions) { o.cluster, o.chaos, o.provisioners, o.inventory = true, true, 2, 2 }
	tests := []struct {
		name    string
		edit    func(*benchOptions)
		want    []benchConfig
		wantErr bool
	}{
		{"default", func(*benchOptions) {}, []benchConfig{{Provisioners: 1, Latency: 30 * time.Millisecond, LatencyMS: 30}}, false},
		{"provisioner sweep", func(o *benchOptions) { o.cluster, o.sweep = true, "provisioners=1,2,4" }, []benchConfig{
			{Provisioners: 1, Latency: 30 * time.Millisecond, LatencyMS: 30},
			{Provisioners: 2, Latency: 30 * time.Millisecond, LatencyMS: 30},
			{Provisioners: 4, Latency: 30 * time.Millisecond, LatencyMS: 30}}, false},
		{"worker sweep", func(o *benchOptions) { o.sweep = "workers=64, 256" }, []benchConfig{
			{Provisioners: 1, Workers: 64, Latency: 30 * time.Millisecond, LatencyMS: 30},
			{Provisioners: 1, Workers: 256, Latency: 30 * time.Millisecond, LatencyMS: 30}}, false},
		{"latency sweep", func(o *benchOptions) { o.sweep = "latency=0s,100ms" }, []benchConfig{
			{Provisioners: 1, LatencyMS: 0},
			{Provisioners: 1, Latency: 100 * time.Millisecond, LatencyMS: 100}}, false},
		{"replicas need the cluster", func(o *benchOptions) { o.sweep = "provisioners=1,2" }, nil, true},
		{"replicas flag needs the cluster", func(o *benchOptions) { o.provisioners = 2 }, nil, true},
		{"no devices", func(o *benchOptions) { o.devices = 0 }, nil, true},
		{"too many devices", func(o *benchOptions) { o.devices = 70000 }, nil, true},
		{"unknown sweep key", func(o *benchOptions) { o.sweep = "replicas=1,2" }, nil, true},
		{"sweep without values", func(o *benchOptions) { o.sweep = "workers=" }, nil, true},
		{"bad sweep value", func(o *benchOptions) { o.sweep = "workers=10,x" }, nil, true},
		{"zero workers in sweep", func(o *benchOptions) { o.sweep = "workers=0" }, nil, true},
		{"negative latency", func(o *benchOptions) { o.latency = -time.Second }, nil, true},
		{"bad sim base", func(o *benchOptions) { o.simBase = "nope" }, nil, true},
		{"chaos", chaos, []benchConfig{{Provisioners: 2, Latency: 30 * time.Millisecond, LatencyMS: 30}}, false},
		{"chaos sweep", func(o *benchOptions) { chaos(o); o.sweep = "provisioners=2,3" }, []benchConfig{
			{Provisioners: 2, Latency: 30 * time.Millisecond, LatencyMS: 30},
			{Provisioners: 3, Latency: 30 * time.Millisecond, LatencyMS: 30}}, false},
		{"chaos needs the cluster", func(o *benchOptions) { chaos(o); o.cluster = false }, nil, true},
		{"chaos needs 2 provisioners", func(o *benchOptions) { chaos(o); o.provisioners = 1 }, nil, true},
		{"chaos sweep needs 2 provisioners in every run", func(o *benchOptions) { chaos(o); o.sweep = "provisioners=1,2" }, nil, true},
		{"chaos needs 2 inventories", func(o *benchOptions) { chaos(o); o.inventory = 1 }, nil, true},
		{"chaos at 0", func(o *benchOptions) { chaos(o); o.chaosAt = 0 }, nil, true},
		{"chaos at 1", func(o *benchOptions) { chaos(o); o.chaosAt = 1 }, nil, true},
		{"inventory replicas need the cluster", func(o *benchOptions) { o.inventory = 2 }, nil, true},
		{"lease needs the cluster", func(o *benchOptions) { o.lease = time.Second }, nil, true},
		{"negative lease", func(o *benchOptions) { o.cluster, o.lease = true, -time.Second }, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.edit(&o)
			got, err := o.plan()
			if tt.wantErr {
				if !errors.Is(err, service.ErrUsage) {
					t.Fatalf("plan() error %v, want a usage error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("plan() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench"},
		{"bench", "--devices", "5", "--provisioners", "3"},
		{"bench", "--devices", "5", "--sweep", "nodes=1"},
		{"bench", "--devices", "5", "--chaos"},
	} {
		if _, err := cli(t, args...); !errors.Is(err, service.ErrUsage) {
			t.Errorf("%v: error %v, want a usage error", args, err)
		}
	}
	// The chaos error says what it needs.
	_, err := cli(t, "bench", "--devices", "5", "--cluster", "--chaos", "--provisioners", "2")
	if !errors.Is(err, service.ErrUsage) || !strings.Contains(err.Error(), "--provisioners 2 --inventory 2 or more") {
		t.Errorf("--chaos with one inventory replica: %v, want a usage error naming --provisioners 2 --inventory 2", err)
	}
}

// benchMsg builds the subject, headers and body of an event as the stream
// carries it.
func benchMsg(t *testing.T, p events.Payload) (string, nats.Header, []byte) {
	t.Helper()
	e, err := events.New("/test", p, "")
	if err != nil {
		t.Fatal(err)
	}
	return e.Topic, nats.Header(e.Headers()), e.Data
}

func TestBenchCollector(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	const a, b, c = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222", "33333333-3333-3333-3333-333333333333"
	col := newBenchCollector(3)
	feed := func(p events.Payload) {
		s, h, d := benchMsg(t, p)
		col.add(s, h, d)
	}
	feed(&events.DeviceHello{UUID: a, ReceivedAt: ms(0)})
	feed(&events.DeviceHello{UUID: b, ReceivedAt: ms(500)})
	feed(&events.DeviceHello{UUID: c, ReceivedAt: ms(1000)})
	feed(&events.DeviceHello{UUID: a, ReceivedAt: ms(60000)}) // a repeat: latency stays from the first
	feed(&events.Provisioning{Event: events.ProvisioningFailed, UUID: b, At: ms(1500)})
	feed(&events.Provisioning{Event: events.ProvisioningSucceeded, UUID: a, At: ms(2000)})
	feed(&events.Provisioning{Event: events.ProvisioningSucceeded, UUID: a, At: ms(9000)}) // duplicate: first one counts
	col.add("amt.v1.device.hello.x", nats.Header{}, []byte("{}"))                          // not an event
	select {
	case <-col.done:
		t.Fatal("done with one device still open")
	default:
	}
	feed(&events.Provisioning{Event: events.ProvisioningSucceeded, UUID: c, At: ms(5000)})
	select {
	case <-col.done:
	default:
		t.Fatal("not done after every device ended")
	}
	m := col.measures()
	if m.Provisioned != 2 || m.Failed != 1 || m.Hellos != 4 || m.Unparsed != 1 {
		t.Errorf("provisioned %d failed %d hellos %d unparsed %d, want 2 1 4 1", m.Provisioned, m.Failed, m.Hellos, m.Unparsed)
	}
	// Latencies 2000 ms (a) and 4000 ms (c).
	if m.Latency != (benchLatency{P50: 2000, P95: 4000, P99: 4000}) {
		t.Errorf("latency %+v", m.Latency)
	}
	if m.SpanS != 5 || m.ProvisionedPerS != 0.4 {
		t.Errorf("span %v s, %v provisioned/s; want 5 and 0.4", m.SpanS, m.ProvisionedPerS)
	}
	if m.HellosPerS != 3 {
		t.Errorf("hellos/s %v, want 3 first hellos over 1 s (the repeat is not ingestion)", m.HellosPerS)
	}
	want := []benchPoint{{0, 0}, {2, 1}, {5, 2}}
	if !slices.Equal(m.Curve, want) {
		t.Errorf("curve %v, want %v", m.Curve, want)
	}
}

func TestPercentileAndCurve(t *testing.T) {
	v := make([]float64, 100)
	for i := range v {
		v[i] = float64(i + 1)
	}
	for _, tt := range []struct{ p, want float64 }{{50, 50}, {95, 95}, {99, 99}, {100, 100}, {0, 1}} {
		if got := percentile(v, tt.p); got != tt.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v", got)
	}
	c := curve(v, 10)
	if len(c) != 11 || c[len(c)-1] != (benchPoint{T: 100, Count: 100}) {
		t.Errorf("curve of 100 points to 10: %v", c)
	}
	c = curve(v[:7], 3)
	if last := c[len(c)-1]; last.Count != 7 {
		t.Errorf("curve must end at the last completion: %v", c)
	}
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name, line string
		want       procStat
		wantErr    bool
	}{
		{"plain", "1234 (nats-server) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 150 30 20 20 0 12 0 100 0 0",
			procStat{ppid: 1, utime: 2.5, stime: 1.5, cutime: 0.3, cstime: 0.2}, false},
		{"name with spaces and parens", "77 (a) b (c)) R 5 77 77 0 -1 0 0 0 0 0 100 100 0 0 20 0 1 0",
			procStat{ppid: 5, utime: 1, stime: 1}, false},
		{"no parens", "77 name R 5", procStat{}, true},
		{"too short", "77 (x) R 5 6 7", procStat{}, true},
		{"not a number", "77 (x) R 5 77 77 0 -1 0 0 0 0 0 x 100 0 0 20", procStat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tt.line))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseProcStat = %+v, %v; want %+v (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\tpostgres\nVmPeak:\t  300000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n"
	if n, err := parseStatusKB([]byte(status), "VmHWM"); err != nil || n != 20480 {
		t.Errorf("VmHWM = %d, %v", n, err)
	}
	for _, bad := range []string{"Name:\tx\n", "VmHWM:\t12 MB\n", "VmHWM:\tlots kB\n"} {
		if _, err := parseStatusKB([]byte(bad), "VmHWM"); err == nil {
			t.Errorf("parseStatusKB(%q): no error", bad)
		}
	}
}

// fakeProc writes a /proc-like tree: pid -> (ppid, utime ticks, cutime ticks, VmHWM kB).
func fakeProc(t *testing.T, procs map[string][4]int) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		d := filepath.Join(root, pid)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := pid + " (proc) S " + strconv.Itoa(p[0]) + " 0 0 0 -1 0 0 0 0 0 " + strconv.Itoa(p[1]) + " 0 " + strconv.Itoa(p[2]) + " 0 20 0 1 0"
		status := "Name:\tproc\nVmHWM:\t" + strconv.Itoa(p[3]) + " kB\n"
		if err := os.WriteFile(filepath.Join(d, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "status"), []byte(status), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestUsageOf(t *testing.T) {
	root := fakeProc(t, map[string][4]int{
		"10": {1, 100, 0, 2048},   // provisioner-1: 1 s, 2 MB
		"11": {1, 300, 0, 4096},   // provisioner-2: 3 s, 4 MB
		"20": {1, 50, 200, 1024},  // postmaster: 0.5 s + 2 s reaped children
		"21": {20, 70, 0, 8192},   // a live backend: 0.7 s, 8 MB
		"30": {1, 1000, 0, 99999}, // someone else's process
	})
	log := slog.New(slog.DiscardHandler)
	got := usageOf(root, []benchProc{
		{service: "provisioner", pid: 10}, {service: "provisioner", pid: 11},
		{service: "postgres", pid: 20, tree: true},
		{service: "gone", pid: 99},
	}, log)
	near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
	if p := got["provisioner"]; !near(p.CPUSeconds, 4) || p.PeakRSSMB != 4 || p.procs != 2 {
		t.Errorf("provisioner %+v, want 4 s, 4 MB, 2 processes", p)
	}
	if p := got["postgres"]; !near(p.CPUSeconds, 3.2) || p.PeakRSSMB != 8 {
		t.Errorf("postgres %+v, want 3.2 s (own, reaped and live children), 8 MB", p)
	}
	if _, ok := got["gone"]; ok {
		t.Error("a process that cannot be read is reported")
	}
}

func TestPostmasterPID(t *testing.T) {
	dir := t.TempDir()
	if _, err := postmasterPID(dir); err == nil {
		t.Error("no postmaster.pid: no error")
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "postmaster.pid"), []byte("4242\n/x/data\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pid, err := postmasterPID(dir); err != nil || pid != 4242 {
		t.Errorf("postmasterPID = %d, %v; want 4242", pid, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte("junk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := postmasterPID(dir); err == nil {
		t.Error("junk postmaster.pid: no error")
	}
}

func TestBenchGroundTruth(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const a, b = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
	col := newBenchCollector(2)
	for _, h := range []*events.DeviceHello{{UUID: a, ReceivedAt: t0}, {UUID: b, ReceivedAt: t0.Add(time.Second)}} {
		s, hd, d := benchMsg(t, h)
		col.add(s, hd, d)
	}
	seen := map[string]time.Time{
		a:                                      t0.Add(3 * time.Second),
		b:                                      t0.Add(5 * time.Second),
		"33333333-3333-3333-3333-333333333333": t0, // no hello in this run: left out
	}
	m := col.groundTruthMeasures(col.measures(), seen)
	if m.Provisioned != 2 || m.SpanS != 5 || m.ProvisionedPerS != 0.4 {
		t.Errorf("provisioned %d span %v rate %v, want 2, 5 s, 0.4/s", m.Provisioned, m.SpanS, m.ProvisionedPerS)
	}
	if m.Latency != (benchLatency{P50: 3000, P95: 4000, P99: 4000}) {
		t.Errorf("latency %+v, want p50 3000 p95/p99 4000", m.Latency)
	}
}

func TestReadBenchReport(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `{"runs":[{"label":"provisioners=1","result":{"devices":5,"provisioned":5}}]}`)
	rep, err := readBenchReport(good)
	if err != nil || len(rep.Runs) != 1 || rep.Runs[0].Result.Provisioned != 5 {
		t.Fatalf("readBenchReport = %+v, %v", rep, err)
	}
	for _, p := range []string{filepath.Join(dir, "missing.json"), write("bad.json", "{"), write("empty.json", `{"runs":[]}`)} {
		if _, err := readBenchReport(p); !errors.Is(err, service.ErrUsage) {
			t.Errorf("readBenchReport(%s): %v, want a usage error", filepath.Base(p), err)
		}
	}
}
