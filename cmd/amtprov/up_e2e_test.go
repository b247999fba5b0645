//go:build e2e

// The separate-process end-to-end test: `make test-e2e` (never `make
// test`). It runs bin/amtprov up (3 NATS nodes, PostgreSQL, Jaeger and every
// built service as its own process), points a simulated fleet (bin/amtsim)
// at the hello listener, and checks through the inventory API and Jaeger's
// HTTP API that each device's hello became one trace across the services,
// linked parent to child across NATS; then it stops the cluster with SIGTERM
// and checks that no process is left.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/services/certauthority"
	"github.com/amtprov/amtprov/tools/amtsim"
)

const (
	e2eDevices = 3
	// Loopback range of the e2e fleet (amtprov dev uses 127.10/16, unit
	// tests 127.11-16/16).
	e2eSimBase  = "127.17.0.1"
	e2eSimRange = "127.17.0.0/16"
)

// repoPaths are the repository's bin and deploy directories.
func repoPaths(t *testing.T) (bin, deploy string) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin, deploy = filepath.Join(root, "bin"), filepath.Join(root, "deploy")
	if d := os.Getenv("AMTPROV_E2E_BIN"); d != "" {
		bin = d // binaries built elsewhere (CI artifacts)
	}
	for _, b := range []string{"amtprov", "amtsim", "nats-server", "jaeger", "hello-listener", "inventory"} {
		if !isExecutable(filepath.Join(bin, b)) {
			t.Fatalf("%s missing in %s: run `make test-e2e` (it builds every binary first)", b, bin)
		}
	}
	return bin, deploy
}

// cluster is a running `amtprov up`.
type cluster struct {
	cmd   *exec.Cmd
	state upState
	exit  chan error
}

// startCluster runs bin/amtprov up in dir and waits for its ready line.
func startCluster(t *testing.T, bin, deploy, dir string) *cluster {
	t.Helper()
	// Two replicas of the consumers: the work is shared, and one attempt
	// is still one trace.
	cmd := exec.Command(filepath.Join(bin, "amtprov"), "up", "--dir", dir, "--bin-dir", bin, "--deploy-dir", deploy,
		"--log-level", "warn", "--ready-timeout", "3m", "--provisioner", "2", "--inventory", "2")
	cmd.Env = append(os.Environ(), "DATABASE_URL=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errLog, err := os.Create(filepath.Join(dir, "amtprov-up.stderr"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = errLog.Close() })
	cmd.Stderr = errLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &cluster{cmd: cmd, exit: make(chan error, 1)}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "amtprov up ready ") {
				ready <- line
			}
		}
		c.exit <- cmd.Wait()
	}()
	// Whatever happens, nothing outlives the test.
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.exit:
			case <-time.After(90 * time.Second):
				_ = cmd.Process.Kill()
			}
		}
		for _, p := range c.state.Processes {
			_ = syscall.Kill(-p.PID, syscall.SIGKILL)
		}
		if t.Failed() {
			dumpLogs(t, dir)
		}
	})
	select {
	case line := <-ready:
		t.Logf("%s", line)
	case err := <-c.exit:
		c.exit <- err
		t.Fatalf("amtprov up exited before it was ready: %v", err)
	case <-time.After(5 * time.Minute):
		t.Fatal("amtprov up not ready within 5 minutes")
	}
	b, err := os.ReadFile(filepath.Join(dir, upStateFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &c.state); err != nil {
		t.Fatalf("%s: %v", upStateFile, err)
	}
	return c
}

// dumpLogs prints the end of every log of the run, for a failed test.
func dumpLogs(t *testing.T, dir string) {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	logs = append(logs, filepath.Join(dir, "amtprov-up.stderr"), filepath.Join(dir, "amtsim.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		t.Logf("==== %s (end)\n%s", filepath.Base(l), b)
	}
}

// service returns the running instances of a service.
func (c *cluster) service(name string) []upInstance {
	var out []upInstance
	for _, p := range c.state.Processes {
		if p.Service == name {
			out = append(out, p)
		}
	}
	return out
}

// stop sends SIGTERM to amtprov up and checks that it and every process it
// started are gone.
func (c *cluster) stop(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.exit:
		if err != nil {
			t.Errorf("amtprov up after SIGTERM: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("amtprov up did not stop within 2 minutes of SIGTERM")
	}
	for _, p := range c.state.Processes {
		if left := waitGroupGone(t, p.PID, 5*time.Second); len(left) > 0 {
			t.Errorf("%s (process group %d) still has live processes %v after amtprov up stopped", p.Name, p.PID, left)
		}
	}
}

// startSim runs bin/amtsim with n devices sending hellos to hello.
func startSim(t *testing.T, bin, dir, hello string, n int, extra ...string) []simDevice {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, "amtsim.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logf.Close() })
	cmd := exec.Command(filepath.Join(bin, "amtsim"), "--devices", fmt.Sprint(n), "--seed", "6",
		"--base", e2eSimBase, "--range", e2eSimRange, "--provision-server", hello,
		"--control-addr", "127.0.0.1:0", "--rmcp-port", "16623", "--log-level", "warn")
	cmd.Args = append(cmd.Args, extra...)
	cmd.Stderr = logf
	cmd.SysProcAttr = upSysProcAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = signalGroup(cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = signalGroup(cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "amtsim ready ") {
				ready <- sc.Text()
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var line string
	select {
	case line = <-ready:
	case <-time.After(time.Minute):
		t.Fatal("amtsim not ready within a minute")
	}
	control := ""
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "control="); ok {
			control = v
		}
	}
	var devs []simDevice
	getJSON(t, control+"/devices", &devs)
	if len(devs) != n {
		t.Fatalf("amtsim lists %d devices, want %d", len(devs), n)
	}
	return devs
}

type simDevice struct {
	UUID  string `json:"uuid"`
	IP    string `json:"ip"`
	State string `json:"state"`
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	if err := fetchJSON(u, v); err != nil {
		t.Fatal(err)
	}
}

func fetchJSON(u string, v any) error {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// eventually polls cond until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		<-tick.C
	}
}

// Jaeger's /api/traces answer (the part the test reads).
type jaegerTraces struct {
	Data []jaegerTrace `json:"data"`
}

type jaegerTrace struct {
	TraceID   string                   `json:"traceID"`
	Spans     []jaegerSpan             `json:"spans"`
	Processes map[string]jaegerProcess `json:"processes"`
}

type jaegerSpan struct {
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	ProcessID     string `json:"processID"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
}

type jaegerProcess struct {
	ServiceName string `json:"serviceName"`
}

// service of a span.
func (tr jaegerTrace) service(s jaegerSpan) string { return tr.Processes[s.ProcessID].ServiceName }

// parent returns the span's CHILD_OF parent in the trace, if any.
func (tr jaegerTrace) parent(s jaegerSpan) (jaegerSpan, bool) {
	for _, r := range s.References {
		if r.RefType != "CHILD_OF" {
			continue
		}
		for _, p := range tr.Spans {
			if p.SpanID == r.SpanID {
				return p, true
			}
		}
	}
	return jaegerSpan{}, false
}

// roots are the spans without a parent in the trace.
func (tr jaegerTrace) roots() []jaegerSpan {
	var out []jaegerSpan
	for _, s := range tr.Spans {
		if _, ok := tr.parent(s); !ok {
			out = append(out, s)
		}
	}
	return out
}

// crossLinks counts parent→child edges from service from to service to.
func (tr jaegerTrace) crossLinks(from, to string) int {
	n := 0
	for _, s := range tr.Spans {
		if p, ok := tr.parent(s); ok && tr.service(p) == from && tr.service(s) == to {
			n++
		}
	}
	return n
}

func (tr jaegerTrace) services() []string {
	var out []string
	for _, s := range tr.Spans {
		if svc := tr.service(s); !slices.Contains(out, svc) {
			out = append(out, svc)
		}
	}
	slices.Sort(out)
	return out
}

// deviceTraces asks Jaeger for the traces whose hello-listener span carries
// the device's uuid.
func deviceTraces(jaeger, uuid string) ([]jaegerTrace, error) {
	tags, _ := json.Marshal(map[string]string{"amt.device.uuid": uuid})
	q := url.Values{"service": {"hello-listener"}, "tags": {string(tags)}, "lookback": {"1h"}, "limit": {"20"}}
	var out jaegerTraces
	if err := fetchJSON(jaeger+"/api/traces?"+q.Encode(), &out); err != nil {
		return nil, err
	}
	return out.Data, nil
}

// e2eRunDir makes a run directory for an end-to-end test, removed when the
// test passes and kept (and logged) when it fails. Not t.TempDir: its
// parent is 0700, and the private PostgreSQL runs as the postgres user when
// the tests run as root.
func e2eRunDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			_ = os.RemoveAll(dir)
		} else {
			t.Logf("run directory kept: %s", dir)
		}
	})
	return dir
}

func TestE2EUpProvisionsAndTraces(t *testing.T) {
	bin, deploy := repoPaths(t)
	dir := e2eRunDir(t, "amtprov-e2e-")
	c := startCluster(t, bin, deploy, dir)
	hellos := c.service("hello-listener")
	inventories := c.service("inventory")
	if len(hellos) == 0 || len(inventories) == 0 {
		t.Fatalf("cluster runs %d hello listeners and %d inventories, want at least one of each", len(hellos), len(inventories))
	}
	provisioning := len(c.service("provisioner")) > 0 && len(c.service("certauthority")) > 0
	t.Logf("services: %v; provisioning checks: %v", runningServices(c), provisioning)

	var simArgs []string
	if provisioning {
		simArgs = setUpProvisioning(t, bin, c)
	}
	devs := startSim(t, bin, dir, hellos[0].Hello, e2eDevices, simArgs...)

	// Inventory (read through the API of the first replica) knows every device.
	api := inventories[0].Ops
	eventually(t, 3*time.Minute, "inventory lists every simulated device (provisioned when the provisioner runs)", func() error {
		for _, d := range devs {
			var dev struct {
				UUID     string `json:"uuid"`
				Location struct {
					IP string `json:"ip"`
				} `json:"location"`
				Provisioning struct {
					State     string `json:"state"`
					ErrorCode string `json:"error_code"`
				} `json:"provisioning"`
			}
			if err := fetchJSON(api+"/v1/devices/"+d.UUID, &dev); err != nil {
				return err
			}
			if dev.Location.IP != d.IP {
				return fmt.Errorf("device %s: inventory ip %q, simulator %q", d.UUID, dev.Location.IP, d.IP)
			}
			if provisioning && dev.Provisioning.State != "succeeded" {
				return fmt.Errorf("device %s: provisioning %+v in the inventory, want succeeded", d.UUID, dev.Provisioning)
			}
		}
		return nil
	})

	// Jaeger: one trace per device hello, hello-listener at the root, the
	// inventory's consumer span a child of the listener's publish span
	// (the context crossed NATS in the message headers).
	want := []string{"hello-listener", "inventory"}
	if provisioning {
		want = append(want, "certauthority", "provisioner")
	}
	slices.Sort(want)
	for _, d := range devs {
		var tr jaegerTrace
		eventually(t, time.Minute, "Jaeger trace of device "+d.UUID, func() error {
			trs, err := deviceTraces(c.state.JaegerQuery, d.UUID)
			if err != nil {
				return err
			}
			// The trace of the device's hello that was provisioned: the
			// one with spans from every wanted service. A later hello
			// (firmware retry) makes its own, shorter trace.
			var full []jaegerTrace
			var seen [][]string
			for _, cand := range trs {
				seen = append(seen, cand.services())
				if hasAll(cand.services(), want) {
					full = append(full, cand)
				}
			}
			switch {
			case len(full) == 0:
				return fmt.Errorf("%d traces, services %v, none with all of %v", len(trs), seen, want)
			case provisioning && len(full) > 1:
				return fmt.Errorf("%d traces with all of %v, want one provisioning attempt", len(full), want)
			}
			tr = full[0]
			// Spans reach Jaeger when they end (a job's outer spans end
			// last, then wait for the exporter's batch): until the trace
			// has one root, parents are still missing.
			if roots := tr.roots(); len(roots) != 1 {
				return fmt.Errorf("trace %s not complete yet: %d spans without a parent: %v", tr.TraceID, len(roots), spanNames(tr, roots))
			}
			return nil
		})
		if roots := tr.roots(); len(roots) != 1 || tr.service(roots[0]) != "hello-listener" {
			t.Errorf("device %s trace %s: roots %v, want one hello-listener span", d.UUID, tr.TraceID, spanNames(tr, roots))
		}
		if tr.crossLinks("hello-listener", "inventory") == 0 {
			t.Errorf("device %s trace %s: no inventory span is a child of a hello-listener span", d.UUID, tr.TraceID)
		}
		if provisioning {
			checkProvisioningSpans(t, d.UUID, tr)
			if tr.crossLinks("hello-listener", "provisioner") == 0 {
				t.Errorf("device %s trace %s: no provisioner span is a child of a hello-listener span", d.UUID, tr.TraceID)
			}
			if tr.crossLinks("provisioner", "certauthority") == 0 {
				t.Errorf("device %s trace %s: no certauthority span is a child of a provisioner span", d.UUID, tr.TraceID)
			}
		}
		t.Logf("device %s: trace %s, %d spans from %v", d.UUID, tr.TraceID, len(tr.Spans), tr.services())
	}

	checkMetrics(t, c, deploy)
	c.stop(t)
}

func runningServices(c *cluster) []string {
	var out []string
	for _, p := range c.state.Processes {
		out = append(out, p.Name)
	}
	return out
}

func spanNames(tr jaegerTrace, spans []jaegerSpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, tr.service(s)+":"+s.OperationName)
	}
	return out
}

// checkMetrics scrapes /metrics of every service process and checks that
// every metric the alert rules and the dashboard read is exposed by some
// service of the cluster.
func checkMetrics(t *testing.T, c *cluster, deploy string) {
	t.Helper()
	// A malformed hello and a refused sign request, so the reject and
	// refusal counters exist (they appear at their first event).
	sendJunkHello(t, c.service("hello-listener")[0].Hello)
	if len(c.service("certauthority")) > 0 {
		provokeCARefusal(t, c)
	}
	_, rules := readAlertRules(t, deploy)
	_, panels := readDashboard(t, deploy)
	exprs := append(rules, panels...)
	eventually(t, 30*time.Second, "every metric of the alerts and the dashboard is exposed", func() error {
		scraped := map[string]bool{}
		for _, p := range c.state.Processes {
			if p.Ops == "" {
				continue
			}
			text, err := fetchText(p.Ops + "/metrics")
			if err != nil {
				return err
			}
			for n := range scrapedNames(text) {
				scraped[n] = true
			}
		}
		if missing := missingMetrics(exprs, scraped); len(missing) > 0 {
			return fmt.Errorf("not exposed by any service:\n  %s", strings.Join(missing, "\n  "))
		}
		return nil
	})
}

func fetchText(u string) (string, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return string(b), nil
}

// sendJunkHello writes bytes that are not a hello to the listener.
func sendJunkHello(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("this is not an AMT hello packet")); err != nil {
		t.Fatal(err)
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	_, _ = io.Copy(io.Discard, conn)
}

// setUpProvisioning does what an operator does before devices can be
// provisioned, through the CLI's NATS user: a development provisioning
// domain for the simulator's DNS suffix (whose root the simulated devices
// are then told to trust) and a default profile, both with the CLI. It returns the amtsim
// flags for the trust.
func setUpProvisioning(t *testing.T, bin string, c *cluster) []string {
	t.Helper()
	cliURL, err := os.ReadFile(filepath.Join(c.state.NATSURLDir, natsUserCLI+".url"))
	if err != nil {
		t.Fatal(err)
	}
	natsURL := strings.TrimSpace(string(cliURL))
	out, err := exec.Command(filepath.Join(bin, "amtprov"), "--nats", natsURL, "--json",
		"domain", "create-dev", "--suffix", amtsim.DefaultDNSSuffix).Output()
	if err != nil {
		t.Fatalf("amtprov domain create-dev: %v (%s)", err, stderrOf(err))
	}
	var dom struct {
		RootSHA256 string `json:"root_sha256"`
	}
	if err := json.Unmarshal(out, &dom); err != nil || dom.RootSHA256 == "" {
		t.Fatalf("amtprov domain create-dev printed %q: %v", out, err)
	}

	if out, err := exec.Command(filepath.Join(bin, "amtprov"), "--nats", natsURL,
		"profile", "create", "e2e", "--default").Output(); err != nil {
		t.Fatalf("amtprov profile create: %v (%s) %s", err, stderrOf(err), out)
	}
	return []string{"--trust-hash", "sha256:" + dom.RootSHA256, "--dns-suffix", amtsim.DefaultDNSSuffix}
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

// checkProvisioningSpans: the provisioner made one span per step of the
// device's job, each inside the trace, and certauthority's sign span hangs
// below one of them.
func checkProvisioningSpans(t *testing.T, uuid string, tr jaegerTrace) {
	t.Helper()
	steps := map[string]int{}
	for _, s := range tr.Spans {
		if tr.service(s) != "provisioner" {
			continue
		}
		if step, ok := spanTag(s, "amtprov.step"); ok {
			steps[fmt.Sprint(step)]++
		}
	}
	if len(steps) < 2 {
		t.Errorf("device %s trace %s: provisioner step spans %v, want one per step", uuid, tr.TraceID, steps)
	}
	for step, n := range steps {
		if n != 1 {
			t.Errorf("device %s trace %s: step %s has %d spans, want 1", uuid, tr.TraceID, step, n)
		}
	}
	t.Logf("device %s: provisioner steps %v", uuid, steps)
}

func spanTag(s jaegerSpan, key string) (any, bool) {
	for _, tg := range s.Tags {
		if tg.Key == key {
			return tg.Value, true
		}
	}
	return nil, false
}

func hasAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// provokeCARefusal sends certauthority a sign request it must refuse (as
// the ops user: no service but the provisioner may ask) and checks the
// refusal is a typed error.
func provokeCARefusal(t *testing.T, c *cluster) {
	t.Helper()
	opsURL, err := os.ReadFile(filepath.Join(c.state.NATSURLDir, natsUserOps+".url"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(strings.TrimSpace(string(opsURL)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = certauthority.NewClient(nc).Sign(ctx, certauthority.SignRequest{UUID: "not-a-uuid", Purpose: certauthority.PurposeDeviceTLS})
	var aerr *admin.Error
	if !errors.As(err, &aerr) {
		t.Fatalf("sign request with a bad uuid: %v, want a refusal (*admin.Error)", err)
	}
}
