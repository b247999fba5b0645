// Package probes counts, per device and per second, how often the network
// touches a simulated device: RMCP pings and TCP connections to 16992 and
// 16993. The discovery rate-limit test reads these to check that a scanner
// never hits one device harder than its policy allows.
package probes

import (
	"sync"
	"time"
)

// Window is how many recent seconds a Ring remembers.
const Window = 60

// Kind is what touched the device.
type Kind int

// Kinds of probe.
const (
	RMCP Kind = iota // UDP presence ping
	HTTP             // TCP connection to the plain port
	TLS              // TCP connection to the TLS port
)

// Second is one bucket.
type Second struct {
	Unix int64 `json:"t"`
	RMCP int   `json:"rmcp"`
	HTTP int   `json:"http"`
	TLS  int   `json:"tls"`
}

// Ring keeps the last Window seconds. The zero value is ready; it is safe
// for concurrent use.
type Ring struct {
	mu  sync.Mutex
	buf [Window]Second
}

// Add counts one probe of kind at time now.
func (r *Ring) Add(k Kind, now time.Time) {
	sec := now.Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	b := &r.buf[uint64(sec)%Window]
	if b.Unix != sec {
		*b = Second{Unix: sec}
	}
	switch k {
	case RMCP:
		b.RMCP++
	case HTTP:
		b.HTTP++
	case TLS:
		b.TLS++
	}
}

// Seconds returns the non-empty buckets of the Window seconds up to now,
// oldest first.
func (r *Ring) Seconds(now time.Time) []Second {
	end := now.Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Second
	for s := end - Window + 1; s <= end; s++ {
		if b := r.buf[uint64(s)%Window]; b.Unix == s {
			out = append(out, b)
		}
	}
	return out
}

// Max is the busiest second of the window, summed over the kinds given (all
// kinds when none is given).
func (r *Ring) Max(now time.Time, kinds ...Kind) int {
	if len(kinds) == 0 {
		kinds = []Kind{RMCP, HTTP, TLS}
	}
	peak := 0
	for _, b := range r.Seconds(now) {
		n := 0
		for _, k := range kinds {
			switch k {
			case RMCP:
				n += b.RMCP
			case HTTP:
				n += b.HTTP
			case TLS:
				n += b.TLS
			}
		}
		peak = max(peak, n)
	}
	return peak
}
