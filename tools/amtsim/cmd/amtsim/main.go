// Command amtsim runs a simulated Intel AMT fleet on loopback addresses
// (INTERFACES.md "Simulator"). It prints
//
//	amtsim ready devices=N first=<ip> control=<url>
//
// once every device listens, serves the JSON control API, and shuts down
// cleanly on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/tools/amtsim"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run returns the exit status: 0 after a clean shutdown, 1 on a failure,
// 2 on a usage error.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("amtsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o            amtsim.Options
		base         = fs.String("base", amtsim.DefaultBase, "first device address; devices take consecutive addresses")
		rangeFlag    = fs.String("range", amtsim.DefaultRange, "address range the devices must stay in")
		faults       = fs.String("faults", "", "faults on seeded shares of the fleet: KIND=SHARE[@DURATION],... e.g. slow=0.05,reset=0.01@10m")
		fleetFile    = fs.String("fleet", "", "fleet file (JSON): loaded if it exists, else written after generating")
		controlAddr  = fs.String("control-addr", "127.0.0.1:9980", "control API listen address")
		helloCutoff  = fs.Duration("hello-cutoff", 24*time.Hour, "setup window: no hellos this long after the first (firmware time; 6h is the other documented value)")
		logLevel     = fs.String("log-level", "info", "debug, info, warn or error")
		trustHashes  []amt.RootHash
		shutdownWait = 10 * time.Second
	)
	fs.IntVar(&o.Devices, "devices", 10, "number of devices")
	fs.Int64Var(&o.Seed, "seed", 1, "seed of the fleet's identities and randomness")
	fs.StringVar(&o.ProvisionServer, "provision-server", amtsim.DefaultProvisionServer, "where setup-mode devices send hellos")
	fs.Func("trust-hash", "ALG:HEX root hash every device trusts besides the firmware defaults (repeatable)", func(s string) error {
		h, err := amt.ParseRootHash(s)
		if err != nil {
			return err
		}
		trustHashes = append(trustHashes, h)
		return nil
	})
	fs.StringVar(&o.DNSSuffix, "dns-suffix", amtsim.DefaultDNSSuffix, "the devices' DNS domain")
	fs.Float64Var(&o.LegacyShare, "legacy-share", 0, "share of devices with pre-11 firmware sending v2 (PSK) hellos")
	fs.Float64Var(&o.ProvisionedShare, "provisioned-share", 0, "share of devices already provisioned by another console (needs --admin-password)")
	fs.StringVar(&o.AdminPassword, "admin-password", "", "admin password of the pre-provisioned share")
	fs.Float64Var(&o.TimeScale, "time-scale", 1, "speed-up of firmware time for hellos (60: a minute per second)")
	fs.DurationVar(&o.Latency, "latency", 30*time.Millisecond, "mean added latency per WS-Man call (log-normal)")
	fs.IntVar(&o.HTTPPort, "http-port", 16992, "device HTTP port")
	fs.IntVar(&o.TLSPort, "tls-port", 16993, "device TLS port")
	fs.IntVar(&o.RMCPPort, "rmcp-port", 623, "device RMCP (UDP) port; 623 needs root")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "amtsim: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var err error
	if o.Base, err = netip.ParseAddr(*base); err != nil {
		fmt.Fprintf(stderr, "amtsim: --base: %v\n", err)
		return 2
	}
	if o.Range, err = netip.ParsePrefix(*rangeFlag); err != nil {
		fmt.Fprintf(stderr, "amtsim: --range: %v\n", err)
		return 2
	}
	if o.Faults, err = amtsim.ParseFaults(*faults); err != nil {
		fmt.Fprintf(stderr, "amtsim: --faults: %v\n", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "amtsim: --log-level: %v\n", err)
		return 2
	}
	o.TrustHashes = trustHashes
	o.HelloSchedule = amtsim.DefaultHelloSchedule()
	o.HelloSchedule.Cutoff = *helloCutoff
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	o.Logger = logger

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Control API first: a busy port should fail before 30,000 sockets open.
	ln, err := net.Listen("tcp", *controlAddr)
	if err != nil {
		logger.Error("control API", "addr", *controlAddr, "err", err)
		return 1
	}

	var fleet *amtsim.Fleet
	if *fleetFile != "" {
		if _, statErr := os.Stat(*fleetFile); statErr == nil {
			fleet, err = amtsim.Load(ctx, *fleetFile, o)
		} else if errors.Is(statErr, os.ErrNotExist) {
			if fleet, err = amtsim.Start(ctx, o); err == nil {
				err = fleet.Save(*fleetFile)
			}
		} else {
			err = statErr
		}
	} else {
		fleet, err = amtsim.Start(ctx, o)
	}
	if err != nil {
		ln.Close()
		if fleet != nil {
			fleet.Close()
		}
		logger.Error("start fleet", "err", err)
		return 1
	}

	srv := &http.Server{Handler: fleet.ControlHandler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	devs := fleet.Devices()
	first := "none"
	if len(devs) > 0 {
		first = devs[0].Config().IP
	}
	fmt.Fprintf(stdout, "amtsim ready devices=%d first=%s control=http://%s\n", len(devs), first, ln.Addr())

	status := 0
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err := <-served:
		logger.Error("control API stopped", "err", err)
		status = 1
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !strings.Contains(err.Error(), "closed") {
		logger.Warn("control API shutdown", "err", err)
	}
	if err := fleet.Close(); err != nil {
		logger.Error("fleet shutdown", "err", err)
		status = 1
	}
	return status
}
