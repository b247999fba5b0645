package listener

import (
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

var syscallEMFILE = syscall.EMFILE

// ipLimiters is a token bucket per source IP. Idle buckets are swept so
// that a scan from many addresses cannot grow it without bound; a hard cap
// on entries makes new addresses share one overflow bucket when full.
type ipLimiters struct {
	mu       sync.Mutex
	r        rate.Limit
	burst    int
	m        map[netip.Addr]*ipBucket
	overflow *rate.Limiter
	max      int
}

type ipBucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newIPLimiters(r rate.Limit, burst int) *ipLimiters {
	return &ipLimiters{r: r, burst: burst, m: make(map[netip.Addr]*ipBucket), max: 1 << 20,
		overflow: rate.NewLimiter(r*100, burst*100)}
}

func (l *ipLimiters) allow(ip netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.m[ip]
	if !ok {
		if len(l.m) >= l.max {
			return l.overflow.AllowN(now, 1)
		}
		b = &ipBucket{lim: rate.NewLimiter(l.r, l.burst)}
		l.m[ip] = b
	}
	b.last = now
	return b.lim.AllowN(now, 1)
}

// sweep drops buckets idle long enough to have refilled completely.
func (l *ipLimiters) sweep(now time.Time) {
	idle := time.Duration(float64(l.burst)/float64(l.r)*float64(time.Second)) + time.Second
	l.mu.Lock()
	defer l.mu.Unlock()
	for ip, b := range l.m {
		if now.Sub(b.last) > idle {
			delete(l.m, ip)
		}
	}
}
