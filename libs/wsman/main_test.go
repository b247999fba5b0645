package wsman_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The client starts connection goroutines (net/http); every test closes its
// clients and servers, and none may leave a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
