//go:build !linux

package listener

import (
	"errors"
	"syscall"
)

// bindToLoopback needs SO_BINDTODEVICE, which only Linux has; elsewhere
// the shared layout is refused rather than listening on every interface.
func bindToLoopback(_, _ string, _ syscall.RawConn) error {
	return errors.New("the shared socket layout needs Linux (SO_BINDTODEVICE)")
}
