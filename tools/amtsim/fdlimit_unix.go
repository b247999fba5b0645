//go:build unix

package amtsim

import (
	"fmt"
	"syscall"
)

// raiseFDLimit makes room for need open files: every device holds three
// sockets. It raises the soft limit, and the hard limit too when the
// process may (root or CAP_SYS_RESOURCE).
func raiseFDLimit(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("read open-file limit: %w", err)
	}
	if lim.Cur >= need {
		return nil
	}
	want := lim
	want.Cur = need
	if want.Max < need {
		want.Max = need
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return fmt.Errorf("raise open-file limit from %d (hard %d) to %d: %w; run as root or raise `ulimit -Hn`", lim.Cur, lim.Max, need, err)
	}
	return nil
}
