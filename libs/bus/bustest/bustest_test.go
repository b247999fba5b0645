package bustest_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/amtprov/amtprov/libs/bus/bustest"
	"github.com/amtprov/amtprov/libs/events"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConnectGivesJetStreamWithAMTStream(t *testing.T) {
	nc, js := bustest.Connect(t)
	if !nc.IsConnected() {
		t.Fatal("not connected")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatalf("stream %s: %v", events.StreamName, err)
	}
	if cfg := s.CachedInfo().Config; cfg.Storage != jetstream.FileStorage || !slices.Equal(cfg.Subjects, events.StreamSubjectList()) {
		t.Fatalf("stream config = %+v", cfg)
	}
	if _, err := js.Publish(ctx, events.SubjectDeviceHello+".x", []byte("{}")); err != nil {
		t.Fatalf("publish into the stream: %v", err)
	}
}

func TestServersAreIndependent(t *testing.T) {
	a, b := bustest.RunServer(t), bustest.RunServer(t)
	if a == b {
		t.Fatalf("two servers share the URL %s", a)
	}
}
