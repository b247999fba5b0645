//go:build !unix

package inventory_test

import "time"

func cpuTime() (time.Duration, bool) { return 0, false }
