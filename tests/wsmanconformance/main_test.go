package wsmanconformance_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Fleets and clients are closed by every test: no goroutine may outlive it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
