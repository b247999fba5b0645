package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/service"
	"github.com/amtprov/amtprov/services/discovery"
)

func TestParseCredentials(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []discovery.CredentialRow
		err  bool
	}{
		{"header and rows", "match,username,password\n10.0.0.0/16,admin,P@ss,word\n", nil, true},
		{"quoted comma", "match,username,password\n10.0.0.0/16,admin,\"P@ss,word\"\n# comment\n\n939b524b-13d4-1d18-e487-1c697a6b7a2b, root ,x\n",
			[]discovery.CredentialRow{{Match: "10.0.0.0/16", Username: "admin", Password: "P@ss,word"}, {Match: "939b524b-13d4-1d18-e487-1c697a6b7a2b", Username: "root", Password: "x"}}, false},
		{"no header", "10.0.0.1,admin,pw\n", []discovery.CredentialRow{{Match: "10.0.0.1", Username: "admin", Password: "pw"}}, false},
		{"empty", "", nil, true},
		{"header only", "match,username,password\n", nil, true},
		{"two fields", "10.0.0.0/8,admin\n", nil, true},
		{"empty password", "10.0.0.0/8,admin,\n", nil, true},
		{"bad quote", "10.0.0.0/8,admin,\"pw\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCredentials(strings.NewReader(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if err != nil {
				if strings.Contains(err.Error(), "P@ss") || strings.Contains(err.Error(), "pw") {
					t.Fatalf("error %q shows a password", err)
				}
				return
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("row %d: %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// fakeDiscovery answers the scan verbs like services/discovery: a scan runs
// for three status calls, then completes.
type fakeDiscovery struct {
	mu     sync.Mutex
	runReq discovery.RunRequest
	polls  int
}

func startFakeDiscovery(t *testing.T) (string, *fakeDiscovery) {
	t.Helper()
	url := bustest.RunServer(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	f := &fakeDiscovery{}
	srv := admin.NewServer(nc, admin.ServerOptions{Queue: admin.QueueGroup("discovery")})
	start := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	admin.Handle(srv, admin.Subject(admin.AreaScan, discovery.VerbRun), func(_ context.Context, r discovery.RunRequest) (discovery.Scan, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.runReq = r
		return discovery.Scan{ID: "scan-1", State: "running", Trigger: "cli", ShardsTotal: 2, AddressesTotal: 510, CreatedAt: start}, nil
	})
	admin.Handle(srv, admin.Subject(admin.AreaScan, discovery.VerbStatus), func(_ context.Context, r discovery.StatusRequest) (discovery.Scan, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if r.ID != "scan-1" {
			return discovery.Scan{}, admin.Errorf(admin.CodeNotFound, "no scan %q", r.ID)
		}
		f.polls++
		s := discovery.Scan{ID: "scan-1", State: "running", Trigger: "cli", ShardsTotal: 2, AddressesTotal: 510, CreatedAt: start}
		switch {
		case f.polls == 1:
			s.ShardsDone, s.AddressesProbed, s.Found = 1, 255, 3
		case f.polls >= 3:
			end := start.Add(4 * time.Second)
			s.State, s.ShardsDone, s.AddressesProbed, s.Found, s.Identified, s.FinishedAt = "completed", 2, 510, 5, 2, &end
		default:
			s.ShardsDone, s.AddressesProbed, s.Found = 1, 255, 3
		}
		return s, nil
	})
	admin.Handle(srv, admin.Subject(admin.AreaScan, discovery.VerbAdd), func(_ context.Context, r discovery.AddTargetRequest) (discovery.Target, error) {
		return discovery.Target{CIDR: r.CIDR, RateLimit: 1000, Schedule: r.Schedule, Enabled: true}, nil
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	return url, f
}

func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRoot(&out, &errb)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = root.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

func TestScanRunWaitShowsProgressAndSummary(t *testing.T) {
	url, f := startFakeDiscovery(t)
	creds := filepath.Join(t.TempDir(), "creds.csv")
	if err := os.WriteFile(creds, []byte("match,username,password\n10.0.0.0/23,admin,S3cret-Other\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runCLI(t, "--nats", url, "scan", "run", "10.0.0.0/23", "--credentials", creds, "--wait", "--interval", "20ms")
	if err != nil {
		t.Fatalf("scan run: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "scan scan-1: probed 255/510 addresses, found 3, identified 0") {
		t.Errorf("progress lines:\n%s", errOut)
	}
	if !strings.Contains(out, "scan scan-1 completed: 510/510 addresses probed in 2/2 shards, 5 AMT devices found, 2 identified, took 4s") {
		t.Errorf("summary:\n%s", out)
	}
	if strings.Contains(out+errOut, "S3cret") {
		t.Error("a password was printed")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.runReq.CIDRs) != 1 || f.runReq.CIDRs[0] != "10.0.0.0/23" || len(f.runReq.Credentials) != 1 || f.runReq.Credentials[0].Password != "S3cret-Other" {
		t.Errorf("request %+v", f.runReq)
	}
}

func TestScanCommandsJSONAndErrors(t *testing.T) {
	t.Setenv("NATS_URL", "")
	url, _ := startFakeDiscovery(t)
	out, _, err := runCLI(t, "--nats", url, "--json", "scan", "add", "10.1.0.0/16", "--schedule", "6h")
	if err != nil || !strings.Contains(out, `"cidr":"10.1.0.0/16"`) || !strings.Contains(out, `"schedule":"6h"`) {
		t.Errorf("scan add --json: %v %s", err, out)
	}
	if _, _, err := runCLI(t, "--nats", url, "scan", "status", "scan-nope"); err == nil || !strings.Contains(err.Error(), admin.CodeNotFound) || errors.Is(err, service.ErrUsage) {
		t.Errorf("status of an unknown scan: %v", err)
	}
	for _, args := range [][]string{
		{"--nats", url, "scan", "add", "nope"},
		{"--nats", url, "scan", "add"},
		{"--nats", url, "scan", "run", "10.0.0.0/33"},
		{"--nats", url, "scan", "run", "10.0.0.0/24", "--credentials", filepath.Join(t.TempDir(), "missing.csv")},
		{"scan", "list"}, // no --nats
	} {
		if _, _, err := runCLI(t, args...); !errors.Is(err, service.ErrUsage) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}
