package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/libs/service"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/certauthority"
)

// startCA runs a real certauthority on a fresh database and NATS server and
// returns the NATS URL the CLI talks to.
func startCA(t *testing.T) string {
	t.Helper()
	url := bustest.RunServer(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	_, js := bustest.ConnectTo(t, url)
	keys, err := secrets.NewKeyring("k", map[string][]byte{"k": []byte(strings.Repeat("x", 32))})
	if err != nil {
		t.Fatal(err)
	}
	c, err := certauthority.New(context.Background(), certauthority.Config{}, storetest.New(t), keys, nc, js, telemetry.Providers{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("CA: %v", err)
		}
	})
	// Ready once the CA's subscriptions (sign + three domain verbs) reached
	// the server.
	deadline := time.Now().Add(10 * time.Second)
	for nc.NumSubscriptions() < 4 {
		if time.Now().After(deadline) {
			t.Fatal("CA did not subscribe")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return url
}

func TestDomainCommands(t *testing.T) {
	url := startCA(t)

	out, errOut, err := runCLI(t, "--nats", url, "domain", "create-dev", "--suffix", "corp.example.com")
	if err != nil {
		t.Fatalf("create-dev: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "domain corp.example.com (dev, suffix corp.example.com) created") || !strings.Contains(out, "root sha256:") {
		t.Fatalf("create-dev output:\n%s", out)
	}
	root := out[strings.Index(out, "root sha256:")+len("root sha256:"):][:64]

	out, _, err = runCLI(t, "--nats", url, "domain", "create-dev", "--suffix", "corp.example.com")
	if err != nil || !strings.Contains(out, ") exists;") || !strings.Contains(out, root) {
		t.Fatalf("second create-dev (%v):\n%s", err, out)
	}

	// Import the RPS sample PFX with its password from the environment.
	b64, err := os.ReadFile("../../services/certauthority/testdata/rps-vprodemo.pfx.b64")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b64)))
	if err != nil {
		t.Fatal(err)
	}
	pfxPath := filepath.Join(t.TempDir(), "vprodemo.pfx")
	if err := os.WriteFile(pfxPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_PFX_PASSWORD", "P@ssw0rd")
	out, errOut, err = runCLI(t, "--nats", url, "--json", "domain", "add", "--suffix", "vprodemo.com", "--pfx", pfxPath, "--password-env", "TEST_PFX_PASSWORD")
	if err != nil {
		t.Fatalf("add: %v\n%s", err, errOut)
	}
	var d certauthority.Domain
	if err := json.Unmarshal([]byte(out), &d); err != nil || d.RootSHA256 != "82f2ed575db4abe462499cf550dbff9584980d70a0272894639c3653b9ad932c" || d.Source != "imported" {
		t.Fatalf("add --json: %v %+v", err, d)
	}

	// Refusals name the rule; usage errors are usage errors.
	t.Setenv("TEST_PFX_PASSWORD", "Zq9-not-it")
	_, _, err = runCLI(t, "--nats", url, "domain", "add", "--suffix", "other.com", "--pfx", pfxPath, "--password-env", "TEST_PFX_PASSWORD")
	if err == nil || !strings.Contains(err.Error(), certauthority.CodePFXUnreadable) || strings.Contains(err.Error(), "Zq9-not-it") {
		t.Fatalf("wrong password: %v", err)
	}
	t.Setenv("TEST_PFX_PASSWORD", "P@ssw0rd")
	_, _, err = runCLI(t, "--nats", url, "domain", "add", "--suffix", "corp.example.com", "--name", "x", "--pfx", pfxPath, "--password-env", "TEST_PFX_PASSWORD")
	if err == nil || !strings.Contains(err.Error(), certauthority.CodeSuffixMismatch) {
		t.Fatalf("suffix mismatch: %v", err)
	}
	for _, args := range [][]string{
		{"domain", "add", "--pfx", pfxPath},
		{"domain", "add", "--suffix", "a.com", "--pfx", pfxPath, "--password-env", "NO_SUCH_VARIABLE_SET"},
		{"domain", "add", "--suffix", "a.com", "--pfx", filepath.Join(t.TempDir(), "missing.pfx")},
		{"domain", "create-dev"},
		{"domain", "create-dev", "--suffix", "bad_name"},
	} {
		if _, _, err := runCLI(t, append([]string{"--nats", url}, args...)...); !errors.Is(err, service.ErrUsage) {
			t.Errorf("%q: err = %v, want a usage error", args, err)
		}
	}

	out, _, err = runCLI(t, "--nats", url, "domain", "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "corp.example.com") || !strings.Contains(lines[1], root) || !strings.HasPrefix(lines[2], "vprodemo.com") {
		t.Fatalf("list:\n%s", out)
	}
	out, _, err = runCLI(t, "--nats", url, "--json", "domain", "list")
	var list certauthority.ListDomainsResponse
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list.Domains) != 2 {
		t.Fatalf("list --json (%v): %s", err, out)
	}
}

// `amtprov dev --simulate` creates the development provisioning domain for
// the fleet's suffix, and the simulated devices trust its root: their
// hellos list it, as inventory shows.
func TestDevDomainTrustedBySimulatedFleet(t *testing.T) {
	r := runDevForTest(t, "--simulate", "2", "--sim-base", "127.11.40.1")
	out, err := cli(t, "--nats", r.nats, "--json", "domain", "list")
	if err != nil {
		t.Fatalf("domain list: %v", err)
	}
	var list certauthority.ListDomainsResponse
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Domains) != 1 {
		t.Fatalf("domain list: %v %s", err, out)
	}
	d := list.Domains[0]
	if d.Suffix != "corp.example.com" || d.Source != certauthority.SourceDev {
		t.Fatalf("dev domain %+v", d)
	}
	waitFor(t, "a simulated device's hello to list the dev root", func() bool {
		out, err := cli(t, "--api", r.api, "--json", "devices", "list")
		return err == nil && strings.Contains(out, d.RootSHA256)
	})
}
