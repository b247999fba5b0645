package main

import (
	"testing"

	"github.com/amtprov/amtprov/libs/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }
