package main

import (
	"fmt"
	"io"
	"sync"

	"github.com/spf13/cobra"

	"github.com/amtprov/amtprov/libs/service"
)

// globals are the flags every command shares (INTERFACES.md "Command line").
type globals struct {
	api  string
	nats string
	json bool
	out  io.Writer
	err  io.Writer
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	// Services, the simulator and progress lines write concurrently; the
	// writers a caller passes (a test's bytes.Buffer) need not be safe for that.
	stdout, stderr = &lockedWriter{w: stdout}, &lockedWriter{w: stderr}
	g := &globals{out: stdout, err: stderr}
	root := &cobra.Command{
		Use:           "amtprov",
		Short:         "Provision Intel AMT (vPro) machines out of band, at fleet scale",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.api, "api", service.Env("AMTPROV_API", "http://127.0.0.1:8080"), "inventory API URL (env AMTPROV_API)")
	root.PersistentFlags().StringVar(&g.nats, "nats", service.Env("NATS_URL", ""), "NATS URL (env NATS_URL)")
	root.PersistentFlags().BoolVar(&g.json, "json", false, "machine-readable JSON output")
	// Flag errors are usage errors: exit status 2.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w: %v", service.ErrUsage, err)
	})
	root.AddCommand(newDevCmd(g), newUpCmd(g), newHelloCmd(g), newDevicesCmd(g), newEventsCmd(g), newScanCmd(g), newDomainCmd(g), newProfileCmd(g), newJobsCmd(g), newExplainCmd(g), newDeviceCmd(g), newBenchCmd(g))
	return root
}

// usageArgs wraps cobra's positional-argument checks as usage errors.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return fmt.Errorf("%w: %v", service.ErrUsage, err)
		}
		return nil
	}
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
