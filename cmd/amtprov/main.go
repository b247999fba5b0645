// Command amtprov is the operator CLI of amtprov and its all-in-one runner
// (`amtprov dev`). Exit status: 0 success, 1 a failure explained on stderr,
// 2 a usage error (INTERFACES.md "Command line").
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/amtprov/amtprov/libs/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot(os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "amtprov:", err)
	if errors.Is(err, service.ErrUsage) {
		os.Exit(2)
	}
	os.Exit(1)
}
