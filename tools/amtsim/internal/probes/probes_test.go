package probes

import (
	"sync"
	"testing"
	"time"
)

func TestRingBuckets(t *testing.T) {
	var r Ring
	t0 := time.Unix(1_000_000, 0)
	r.Add(RMCP, t0)
	r.Add(RMCP, t0.Add(300*time.Millisecond))
	r.Add(HTTP, t0.Add(900*time.Millisecond))
	r.Add(TLS, t0.Add(time.Second))
	got := r.Seconds(t0.Add(time.Second))
	want := []Second{{Unix: 1_000_000, RMCP: 2, HTTP: 1}, {Unix: 1_000_001, TLS: 1}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Seconds = %+v, want %+v", got, want)
	}
	if m := r.Max(t0.Add(time.Second)); m != 3 {
		t.Fatalf("Max = %d, want 3", m)
	}
	if m := r.Max(t0.Add(time.Second), TLS); m != 1 {
		t.Fatalf("Max(TLS) = %d, want 1", m)
	}
	// A bucket reused a minute later starts from zero, and old ones age out.
	later := t0.Add(Window * time.Second)
	r.Add(HTTP, later)
	got = r.Seconds(later)
	if len(got) != 2 || got[0] != (Second{Unix: 1_000_001, TLS: 1}) || got[1] != (Second{Unix: later.Unix(), HTTP: 1}) {
		t.Fatalf("after wrap Seconds = %+v", got)
	}
	if got := r.Seconds(later.Add(Window * time.Second)); len(got) != 0 {
		t.Fatalf("stale buckets returned: %+v", got)
	}
}

func TestRingConcurrent(t *testing.T) {
	var r Ring
	now := time.Unix(5_000, 0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				r.Add(RMCP, now)
			}
		}()
	}
	wg.Wait()
	if m := r.Max(now, RMCP); m != 800 {
		t.Fatalf("Max = %d, want 800", m)
	}
}
