// Package hello makes simulated devices in setup mode announce themselves
// to a provisioning server as AMT firmware does (PROTOCOL.md §3, §4): from
// the device's own address, one hello per TCP connection, on the firmware's
// retry schedule, until the device leaves setup mode or the window closes.
package hello

import (
	"errors"
	"fmt"
	"time"
)

// Phase is a run of hellos Every apart.
type Phase struct {
	Every time.Duration
	Count int
}

// Schedule is when hellos go out, in firmware time (before TimeScale): a
// first hello when the setup window opens, then each phase in turn, until
// Cutoff after the first hello.
type Schedule struct {
	Phases []Phase
	Cutoff time.Duration
}

// DefaultSchedule is the SCCM-documented firmware schedule (PROTOCOL.md §3):
// once a minute for 5 minutes, every 5 minutes for an hour, then hourly, the
// window closing 24 hours after the first hello. Sources disagree on the
// cut-off (6 h in HP and Altiris documents); SixHourCutoff gives that variant.
func DefaultSchedule() Schedule {
	return Schedule{
		Phases: []Phase{{Every: time.Minute, Count: 4}, {Every: 5 * time.Minute, Count: 12}, {Every: time.Hour, Count: 23}},
		Cutoff: 24 * time.Hour,
	}
}

// SixHourCutoff is DefaultSchedule with the window closing after 6 hours.
func SixHourCutoff() Schedule {
	s := DefaultSchedule()
	s.Cutoff = 6 * time.Hour
	return s
}

// Validate rejects schedules that would spin or never send.
func (s Schedule) Validate() error {
	if s.Cutoff <= 0 {
		return errors.New("hello schedule: cut-off must be positive")
	}
	for i, p := range s.Phases {
		if p.Every <= 0 || p.Count < 0 {
			return fmt.Errorf("hello schedule: phase %d: interval %v and count %d", i, p.Every, p.Count)
		}
	}
	return nil
}

// Offset is when the n-th hello (0-based) goes out, counted from the first
// one, and false once the schedule or the cut-off is past.
func (s Schedule) Offset(n int) (time.Duration, bool) {
	if n < 0 {
		return 0, false
	}
	var at time.Duration
	left := n
	for _, p := range s.Phases {
		if left <= p.Count {
			at += time.Duration(left) * p.Every
			left = 0
			break
		}
		at += time.Duration(p.Count) * p.Every
		left -= p.Count
	}
	if left > 0 || at > s.Cutoff {
		return 0, false
	}
	return at, true
}

// Len is how many hellos the schedule sends in all.
func (s Schedule) Len() int {
	n := 0
	for {
		if _, ok := s.Offset(n); !ok {
			return n
		}
		n++
	}
}
