//go:build !unix

package pglocal

import "os/exec"

// owner runs commands as the caller (no root special case off unix).
type owner struct{}

func newOwner(string) (owner, error) { return owner{}, nil }

func (owner) apply(*exec.Cmd) {}

func (owner) hint(string) string { return "" }

// lockDir does not serialise Start across processes off unix.
func lockDir(string) (func(), error) { return func() {}, nil }
