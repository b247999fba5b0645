package main

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/store/storetest"
	"github.com/amtprov/amtprov/services/certauthority"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// The binary wires config, database, bus and service: it answers
// domain.list and stops cleanly on cancel.
func TestRunWiring(t *testing.T) {
	dbURL := storetest.NewEmpty(t)
	natsURL := bustest.RunServer(t)
	nc, _ := bustest.ConnectTo(t, natsURL)
	t.Setenv("AMTPROV_SECRET_KEYS", "test:"+base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32))))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--database-url", dbURL, "--nats", natsURL, "--ops-addr", "127.0.0.1:0", "--log-level", "error"})
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, ccancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		var list certauthority.ListDomainsResponse
		err := admin.Call(cctx, nc, admin.Subject(admin.AreaDomain, certauthority.VerbDomainList), nil, &list)
		ccancel()
		if err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving: %v", err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestRunUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"--bogus"}, {}} {
		t.Setenv("DATABASE_URL", "")
		if err := run(context.Background(), args); err == nil || !strings.Contains(err.Error(), "usage error") {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
}
