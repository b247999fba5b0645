package hello

import (
	"testing"
	"time"
)

func TestDefaultSchedule(t *testing.T) {
	s := DefaultSchedule()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		n    int
		want time.Duration
		ok   bool
	}{
		{0, 0, true},
		{1, time.Minute, true},
		{4, 4 * time.Minute, true}, // 5 hellos in the first 5 minutes
		{5, 9 * time.Minute, true},
		{16, 64 * time.Minute, true}, // an hour of 5-minute hellos
		{17, 64*time.Minute + time.Hour, true},
		{38, 64*time.Minute + 22*time.Hour, true},
		{39, 0, false}, // past 24 h
		{-1, 0, false},
	}
	for _, tt := range tests {
		got, ok := s.Offset(tt.n)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Offset(%d) = %v, %v; want %v, %v", tt.n, got, ok, tt.want, tt.ok)
		}
	}
	if n := s.Len(); n != 39 {
		t.Errorf("Len = %d, want 39", n)
	}
	if n := SixHourCutoff().Len(); n != 21 {
		t.Errorf("six-hour Len = %d, want 21", n)
	}
}

func TestScheduleValidate(t *testing.T) {
	bad := []Schedule{
		{},
		{Cutoff: time.Hour, Phases: []Phase{{Every: 0, Count: 3}}},
		{Cutoff: time.Hour, Phases: []Phase{{Every: time.Minute, Count: -1}}},
	}
	for i, s := range bad {
		if s.Validate() == nil {
			t.Errorf("schedule %d: Validate accepted %+v", i, s)
		}
	}
}
