package listener

import (
	"fmt"
	"syscall"
)

// bindToLoopback restricts a wildcard socket to the loopback interface.
func bindToLoopback(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptString(int(fd), syscall.SOL_SOCKET, syscall.SO_BINDTODEVICE, "lo")
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("bind to the loopback interface: %w", serr)
	}
	return nil
}
