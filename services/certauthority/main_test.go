package certauthority_test

import (
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/amtprov/amtprov/libs/store/storetest"
)

func TestMain(m *testing.M) {
	storetest.Main(m)
	if err := goleak.Find(); err != nil {
		panic(fmt.Sprintf("goroutine leak: %v", err))
	}
}
