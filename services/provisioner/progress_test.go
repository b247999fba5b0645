package provisioner_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amtprov/amtprov/services/provisioner"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

func TestProgressPrintsWhileBusyAndOnceWhenIdle(t *testing.T) {
	var cur atomic.Pointer[provisioner.Stats]
	cur.Store(&provisioner.Stats{Received: 3, InProgress: 2, Provisioned: 1})
	var out syncBuf
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- provisioner.Progress(ctx, &out, func() provisioner.Stats { return *cur.Load() }, 10*time.Millisecond)
	}()
	eventually(t, "busy lines", 5*time.Second, func() (bool, string) {
		l := out.lines()
		return len(l) >= 2, strings.Join(l, "|")
	})
	cur.Store(&provisioner.Stats{Received: 5, InProgress: 0, Provisioned: 4, Failed: 1})
	eventually(t, "an idle line", 5*time.Second, func() (bool, string) {
		l := out.lines()
		return strings.HasSuffix(l[len(l)-1], "(idle)"), strings.Join(l, "|")
	})
	n := len(out.lines())
	// Idle and unchanged: no more lines (checked over several intervals).
	deadline := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) {
		if len(out.lines()) != n {
			t.Fatalf("printed while idle: %q", out.lines())
		}
		time.Sleep(10 * time.Millisecond)
	}
	last := out.lines()[n-1]
	for _, want := range []string{"received 5", "in progress 0", "provisioned 4", "failed 1", "/s"} {
		if !strings.Contains(last, want) {
			t.Errorf("last line %q lacks %q", last, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
