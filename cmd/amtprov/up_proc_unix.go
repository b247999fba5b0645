//go:build unix

package main

import "syscall"

// signalGroup signals every process in the group led by pid.
func signalGroup(pid int, sig syscall.Signal) error { return syscall.Kill(-pid, sig) }
