//go:build unix && !linux

package main

import "syscall"

// upSysProcAttr puts a child in its own process group, stopped as a group.
// (No parent-death signal outside Linux: stop `amtprov up` with SIGINT or
// SIGTERM, not SIGKILL.)
func upSysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
