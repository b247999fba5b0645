package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var readyLine = regexp.MustCompile(`^amtsim ready devices=(\d+) first=(\S+) control=(http://\S+)$`)

func TestRunReadyControlAndSignal(t *testing.T) {
	fleet := filepath.Join(t.TempDir(), "fleet.json")
	args := []string{
		"--devices", "5", "--seed", "3", "--base", "127.46.0.1", "--range", "127.46.0.0/16",
		"--http-port", "26992", "--tls-port", "26993", "--rmcp-port", "26623",
		"--provision-server", "127.0.0.1:1", "--control-addr", "127.0.0.1:0",
		"--provisioned-share", "0.4", "--admin-password", "P@ssw0rd!", "--faults", "slow=0.2",
		"--fleet", fleet, "--log-level", "error",
	}
	pr, pw := io.Pipe()
	status := make(chan int, 1)
	go func() {
		status <- run(args, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no ready line: %v", err)
	}
	go io.Copy(io.Discard, pr)
	m := readyLine.FindStringSubmatch(line[:len(line)-1])
	if m == nil || m[1] != "5" || m[2] != "127.46.0.1" {
		t.Fatalf("ready line %q", line)
	}
	resp, err := http.Get(m[3] + "/devices?state=post")
	if err != nil {
		t.Fatal(err)
	}
	var devs []map[string]any
	err = json.NewDecoder(resp.Body).Decode(&devs)
	resp.Body.Close()
	if err != nil || len(devs) != 2 {
		t.Fatalf("post devices %v (err %v)", devs, err)
	}
	if _, err := os.Stat(fleet); err != nil {
		t.Fatalf("fleet file not written: %v", err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-status:
		if s != 0 {
			t.Fatalf("exit status %d after SIGTERM", s)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no shutdown after SIGTERM")
	}
}

func TestRunUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"--faults", "meltdown=1"},
		{"--base", "not-an-ip"},
		{"--trust-hash", "sha256:zz"},
		{"--log-level", "loud"},
		{"extra"},
	} {
		if s := run(args, io.Discard, io.Discard); s != 2 {
			t.Errorf("run(%q) = %d, want 2", args, s)
		}
	}
	if s := run([]string{"--devices", "1", "--range", "127.47.0.0/16", "--base", "127.48.0.1", "--control-addr", "127.0.0.1:0"}, io.Discard, io.Discard); s != 1 {
		t.Errorf("base outside range: status %d, want 1", s)
	}
}
