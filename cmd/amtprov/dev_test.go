package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/service"
	"github.com/amtprov/amtprov/libs/store/storetest"
)

// cli runs one amtprov command in-process and returns stdout and the error.
func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRoot(&out, &errb)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

type devRun struct {
	hello, api, nats, sim string
}

// runDevForTest runs `amtprov dev` in-process on random ports with a fresh
// database and returns the addresses from its ready line.
func runDevForTest(t *testing.T, extra ...string) devRun {
	t.Helper()
	t.Setenv("DATABASE_URL", storetest.NewEmpty(t))
	pr, pw := io.Pipe()
	root := newRoot(pw, io.Discard)
	root.SetArgs(append([]string{"dev", "--hello-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0",
		"--nats-addr", "127.0.0.1:0", "--sim-control-addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-level", "warn"}, extra...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx); _ = pw.Close() }()
	exited := false
	t.Cleanup(func() {
		cancel()
		if exited {
			return
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("amtprov dev: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("amtprov dev did not shut down within 60s of the signal")
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "amtprov ready ") {
				lines <- sc.Text()
			}
		}
		close(lines)
		_, _ = io.Copy(io.Discard, pr)
	}()
	var r devRun
	select {
	case line, ok := <-lines:
		if !ok {
			exited = true
			t.Fatalf("amtprov dev exited before its ready line: %v", <-done)
		}
		for _, f := range strings.Fields(line)[2:] {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "hello":
				r.hello = v
			case "api":
				r.api = v
			case "nats":
				r.nats = v
			case "sim":
				r.sim = v
			}
		}
	case <-time.After(90 * time.Second):
		t.Fatal("no ready line within 90s")
	}
	if r.hello == "" || r.api == "" || r.nats == "" {
		t.Fatalf("ready line incomplete: %+v", r)
	}
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDevHelloToInventory is the acceptance path of issue 2: `amtprov dev`
// reaches its ready line, `amtprov hello send` to it makes the device appear
// in `amtprov devices show UUID --json` with its root hashes, IP and
// provisioning state "in".
func TestDevHelloToInventory(t *testing.T) {
	r := runDevForTest(t)
	const uuid = "4bac9510-04a6-4321-bae2-d45ddf07b684"
	const root = "82f2ed575db4abe462499cf550dbff9584980d70a0272894639c3653b9ad932c"
	if _, err := cli(t, "hello", "send", "--to", r.hello, "--uuid", uuid, "--pki-hash", "sha256:"+root, "--from", "127.0.0.77"); err != nil {
		t.Fatal(err)
	}
	var dev struct {
		UUID     string `json:"uuid"`
		Location struct {
			IP string `json:"ip"`
		} `json:"location"`
		Capability struct {
			ProvisioningState string                      `json:"provisioning_state"`
			RootHashes        []struct{ Alg, Hex string } `json:"root_hashes"`
		} `json:"capability"`
	}
	waitFor(t, "device in inventory", func() bool {
		out, err := cli(t, "--api", r.api, "devices", "show", uuid, "--json")
		return err == nil && json.Unmarshal([]byte(out), &dev) == nil
	})
	if dev.UUID != uuid || dev.Location.IP != "127.0.0.77" || dev.Capability.ProvisioningState != "in" ||
		len(dev.Capability.RootHashes) != 1 || dev.Capability.RootHashes[0].Alg != "sha256" || dev.Capability.RootHashes[0].Hex != root {
		t.Fatalf("device = %+v", dev)
	}
	out, err := cli(t, "--api", r.api, "devices", "list", "--state", "in")
	if err != nil || !strings.Contains(out, uuid) {
		t.Fatalf("devices list: %v\n%s", err, out)
	}
}

// TestDevSimulatedFleet checks that `amtprov dev --simulate N` fills the
// inventory from the simulator's hellos.
func TestDevSimulatedFleet(t *testing.T) {
	r := runDevForTest(t, "--simulate", "5", "--sim-base", "127.11.0.1", "--sim-time-scale", "60")
	if r.sim == "" {
		t.Fatal("no sim= in the ready line")
	}
	waitFor(t, "5 simulated devices in inventory", func() bool {
		out, err := cli(t, "--api", r.api, "--json", "devices", "list")
		if err != nil {
			return false
		}
		var l struct{ Devices []json.RawMessage }
		return json.Unmarshal([]byte(out), &l) == nil && len(l.Devices) == 5
	})
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"hello", "send", "--uuid", "not-a-uuid"},
		{"hello", "send", "--uuid", "4bac9510-04a6-4321-bae2-d45ddf07b684", "--pki-hash", "md5:00"},
		{"hello", "send", "--uuid", "4bac9510-04a6-4321-bae2-d45ddf07b684", "--pid", "0000037N"},
		{"devices", "list", "--state", "done"},
		{"devices", "show"},
		{"devices", "show", "xyz"},
		{"dev", "--simulate", "-1"},
		{"dev", "--no-such-flag"},
		{"events", "tail", "--nats", ""},
	} {
		_, err := cli(t, args...)
		if !errors.Is(err, service.ErrUsage) {
			t.Errorf("amtprov %s: err = %v, want a usage error (exit 2)", strings.Join(args, " "), err)
		}
	}
	// A failure that is not a usage error: nothing listens there.
	_, err := cli(t, "--api", "http://127.0.0.1:1", "devices", "list")
	if err == nil || errors.Is(err, service.ErrUsage) {
		t.Errorf("unreachable API: err = %v, want a plain failure (exit 1)", err)
	}
}

// TestDevExternalNATS runs `amtprov dev` against an external nats-server
// (NATS_URL / --nats) instead of its embedded one.
func TestDevExternalNATS(t *testing.T) {
	url := bustest.RunServer(t)
	r := runDevForTest(t, "--nats", url)
	if r.nats != url {
		t.Fatalf("ready line nats=%s, want the external %s", r.nats, url)
	}
	const uuid = "11111111-2222-3333-4444-555555555555"
	if _, err := cli(t, "hello", "send", "--to", r.hello, "--uuid", uuid, "--pki-hash", "sha1:47d7b7db23f3e300189f54802482b1bd18b945ef"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "device in inventory", func() bool {
		_, err := cli(t, "--api", r.api, "devices", "show", uuid)
		return err == nil
	})
}
