//go:build linux

package main

import "syscall"

// upSysProcAttr puts a child in its own process group (stopped as a group)
// and has the kernel SIGKILL it if `amtprov up` dies without stopping it.
func upSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
