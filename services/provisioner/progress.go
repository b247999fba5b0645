package provisioner

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Progress prints a live line to w every interval while work is pending,
// and once more when it settles: hellos received, jobs in progress,
// devices provisioned and failed, and the provisioning rate over the last
// interval. `amtprov dev` runs it on stderr. It returns when ctx ends.
func Progress(ctx context.Context, w io.Writer, stats func() Stats, interval time.Duration) error {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var last Stats
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			s := stats()
			busy := s.InProgress > 0
			changed := s != last
			if !busy && !changed {
				continue // idle: nothing new since the last line
			}
			rate := float64(s.Provisioned-last.Provisioned) / now.Sub(lastAt).Seconds()
			state := "working"
			if !busy {
				state = "idle"
			}
			fmt.Fprintf(w, "provisioner: received %d, in progress %d, provisioned %d, failed %d, %.1f/s (%s)\n",
				s.Received, s.InProgress, s.Provisioned, s.Failed, rate, state)
			last, lastAt = s, now
		}
	}
}
