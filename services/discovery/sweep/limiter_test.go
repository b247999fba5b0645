package sweep_test

import "golang.org/x/time/rate"

func newLimiter(r float64) *rate.Limiter { return rate.NewLimiter(rate.Limit(r), max(1, int(r/10))) }
