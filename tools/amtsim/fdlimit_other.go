//go:build !unix

package amtsim

// raiseFDLimit has nothing to raise off Unix.
func raiseFDLimit(uint64) error { return nil }
