//go:build !unix

package main

import (
	"errors"
	"syscall"
)

// `amtprov up` manages process groups, which only Unix systems have.
func upSysProcAttr() *syscall.SysProcAttr { return nil }

func signalGroup(int, syscall.Signal) error {
	return errors.New("amtprov up: stopping process groups needs a Unix system")
}
