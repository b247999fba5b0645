package discovery_test

import "golang.org/x/time/rate"

func rateLimiter(r float64) *rate.Limiter { return rate.NewLimiter(rate.Limit(r), max(1, int(r/10))) }
