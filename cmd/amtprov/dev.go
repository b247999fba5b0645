package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/libs/service"
	"github.com/amtprov/amtprov/libs/store/pglocal"
	"github.com/amtprov/amtprov/libs/telemetry"
	"github.com/amtprov/amtprov/services/certauthority"
	"github.com/amtprov/amtprov/services/discovery"
	"github.com/amtprov/amtprov/services/hello-listener/listener"
	"github.com/amtprov/amtprov/services/inventory"
	"github.com/amtprov/amtprov/services/provisioner"
	"github.com/amtprov/amtprov/tools/amtsim"
)

// devOptions are the flags of `amtprov dev` (INTERFACES.md "Command line").
type devOptions struct {
	simulate       int
	helloAddr      string
	apiAddr        string
	natsAddr       string
	simControlAddr string
	simBase        string
	dataDir        string
	logLevel       string
	simTimeScale   float64

	// Set by `amtprov bench` only (no flags of dev): the provisioner's
	// worker pool (0: its default), the simulated firmware's WS-Man
	// latency and first-hello window, and privateDB to ignore DATABASE_URL
	// so every run starts from an empty database.
	provWorkers    int
	simLatency     time.Duration
	simHelloSpread time.Duration
	privateDB      bool
}

// devSystem is what startDev wired, for callers that measure it (bench).
type devSystem struct {
	js        jetstream.JetStream
	prov      *provisioner.Service
	helloAddr string
	fleet     *amtsim.Fleet // nil without --simulate
}

func defaultDataDir() string {
	if os.Geteuid() == 0 {
		// As root the private PostgreSQL cluster runs as the postgres user,
		// which cannot reach into /root: use the system location.
		return "/var/lib/amtprov/dev"
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "amtprov", "dev")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "amtprov", "dev")
	}
	return filepath.Join(os.TempDir(), "amtprov-dev")
}

func newDevCmd(g *globals) *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev [--simulate N] [--hello-addr A] [--api-addr A] [--data-dir D]",
		Short: "Everything in one process: embedded NATS, PostgreSQL, all services, optionally a simulated fleet",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.simulate < 0 {
				return fmt.Errorf("%w: --simulate must be >= 0", service.ErrUsage)
			}
			return runDev(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.simulate, "simulate", 0, "run a simulated fleet of N AMT devices in-process")
	f.StringVar(&o.helloAddr, "hello-addr", service.Env("HELLO_ADDR", "127.0.0.1:9971"), "hello listener address")
	f.StringVar(&o.apiAddr, "api-addr", service.Env("API_ADDR", "127.0.0.1:8080"), "inventory API (and /metrics, /healthz, /readyz) address")
	f.StringVar(&o.natsAddr, "nats-addr", "127.0.0.1:4222", "embedded NATS server address (ignored with --nats / NATS_URL)")
	f.StringVar(&o.simControlAddr, "sim-control-addr", "127.0.0.1:9980", "simulator control API address")
	f.StringVar(&o.simBase, "sim-base", "127.10.0.1", "first simulated device address (devices fill its /16)")
	f.Float64Var(&o.simTimeScale, "sim-time-scale", 1, "simulated firmware clock speed (hello schedule)")
	f.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "JetStream store and private PostgreSQL cluster")
	f.StringVar(&o.logLevel, "log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error")
	return cmd
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func runDev(ctx context.Context, g *globals, o devOptions) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level: %v", service.ErrUsage, err)
	}
	log := telemetry.NewLogger(g.err, "amtprov-dev", level)
	lc := service.New("amtprov-dev", log)
	// Searchable by the postgres user, which runs the private cluster when we
	// are root; the secrets inside are files of their own with mode 0600.
	if err := os.MkdirAll(o.dataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	_, err := startDev(ctx, g, o, lc, log)
	if err != nil {
		return errors.Join(err, lc.Shutdown(context.WithoutCancel(ctx)))
	}
	return lc.Run(ctx)
}

// startDev wires everything; runDev runs it. Every resource registers its
// shutdown right after it is created, so a failure half-way still cleans up.
func startDev(ctx context.Context, g *globals, o devOptions, lc *service.Lifecycle, log *slog.Logger) (*devSystem, error) {
	// NATS: external when --nats/NATS_URL is given, else embedded with JetStream.
	natsURL := g.nats
	if natsURL == "" {
		ns, err := startEmbeddedNATS(o.natsAddr, filepath.Join(o.dataDir, "nats"))
		if err != nil {
			return nil, err
		}
		lc.OnShutdown("nats-server", func(context.Context) error { ns.Shutdown(); ns.WaitForShutdown(); return nil })
		natsURL = ns.ClientURL()
	}
	nc, js, err := service.ConnectBus(ctx, lc, bus.Config{URL: natsURL, Name: "amtprov-dev"}, 1, log)
	if err != nil {
		return nil, err
	}

	// PostgreSQL: DATABASE_URL, else a private cluster under the data dir.
	dbURL := os.Getenv("DATABASE_URL")
	if o.privateDB {
		dbURL = ""
	}
	if dbURL == "" {
		url, stop, err := pglocal.Start(ctx, filepath.Join(o.dataDir, "pg"), log)
		if err != nil {
			return nil, err
		}
		lc.OnShutdown("postgres", stop)
		dbURL = url
	}
	pool, err := service.OpenDatabase(ctx, lc, dbURL, log)
	if err != nil {
		return nil, err
	}

	// Services, through the same constructors their own mains use.
	host, _ := os.Hostname()
	helloTel, err := service.StartTelemetry(ctx, lc, "hello-listener")
	if err != nil {
		return nil, err
	}
	pub := bus.NewPublisher(js, "/hello-listener/"+host, helloTel)
	_, helloAddr, err := listener.Start(lc, listener.Config{Addr: o.helloAddr, Name: host}, pub,
		listener.Options{Tracer: helloTel.Tracer, Meter: helloTel.Meter, Logger: log.With("component", "hello-listener")})
	if err != nil {
		return nil, err
	}

	invTel, err := service.StartTelemetry(ctx, lc, "inventory")
	if err != nil {
		return nil, err
	}
	inv, err := inventory.New(inventory.Config{}, pool, js, invTel, log.With("component", "inventory"))
	if err != nil {
		return nil, err
	}
	lc.Go("inventory", inv.Run)
	apiLn, err := net.Listen("tcp", o.apiAddr)
	if err != nil {
		return nil, fmt.Errorf("api listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics/hello-listener", helloTel.Metrics)
	mux.Handle("GET /metrics/inventory", invTel.Metrics)
	mux.Handle("/", inv.Handler())
	apiAddr := lc.Serve("api", apiLn, lc.OpsHandler(invTel.Metrics, mux))

	// Discovery: scans on demand (amtprov scan run), by target schedule and
	// after each provisioning; its keyring is the dev keyring under the data dir.
	discTel, err := service.StartTelemetry(ctx, lc, "discovery")
	if err != nil {
		return nil, err
	}
	discKeys, err := secrets.DevKeyring(o.dataDir)
	if err != nil {
		return nil, err
	}
	disc, err := discovery.New(discovery.Config{Name: host}, discovery.Deps{Pool: pool, NC: nc, JS: js, Keys: discKeys, Tel: discTel,
		Log: log.With("component", "discovery")})
	if err != nil {
		return nil, err
	}
	lc.Go("discovery", disc.Run)
	lc.Ready("discovery", disc.Ready)
	mux.Handle("GET /metrics/discovery", discTel.Metrics)

	// Certificate authority: organisation CA, device TLS certificates
	// (amt.v1.ca.sign) and provisioning domains, keys sealed with the dev
	// keyring. The simulated fleet's DNS suffix gets a development
	// provisioning chain, and the simulated devices trust its root.
	caTel, err := service.StartTelemetry(ctx, lc, "certauthority")
	if err != nil {
		return nil, err
	}
	caKeys, err := secrets.DevKeyring(o.dataDir)
	if err != nil {
		return nil, err
	}
	ca, err := certauthority.New(ctx, certauthority.Config{}, pool, caKeys, nc, js, caTel, log.With("component", "certauthority"))
	if err != nil {
		return nil, err
	}
	lc.Go("certauthority", ca.Run)
	lc.Ready("certauthority", ca.Ready)
	mux.Handle("GET /metrics/certauthority", caTel.Metrics)
	devRoot, err := certauthority.EnsureDevDomain(ctx, pool, caKeys, amtsim.DefaultDNSSuffix)
	if err != nil {
		return nil, fmt.Errorf("development provisioning domain: %w", err)
	}
	log.Info("development provisioning domain ready", "suffix", amtsim.DefaultDNSSuffix, "root", devRoot.String())
	devTrust := []amt.RootHash{devRoot}

	// Provisioner: hellos become provisioned devices (dev domain above,
	// device certificates from the CA); a progress line on stderr.
	provTel, err := service.StartTelemetry(ctx, lc, "provisioner")
	if err != nil {
		return nil, err
	}
	if err := provisioner.EnsureDefaultProfile(ctx, pool, "default", provisioner.ProfileSettings{SOL: true, IDER: true, KVM: true}); err != nil {
		return nil, err
	}
	prov, err := provisioner.New(provisioner.Config{Instance: host, Workers: o.provWorkers}, provisioner.Deps{Pool: pool, JS: js, NC: nc, Keys: caKeys,
		Domains: &provisioner.CADomains{DB: pool, Keys: caKeys}, Signer: provisioner.CASigner{Client: certauthority.NewClient(nc)},
		Tel: provTel, Log: log.With("component", "provisioner")})
	if err != nil {
		return nil, err
	}
	lc.Go("provisioner", prov.Run)
	lc.Ready("provisioner", prov.Ready)
	lc.Go("provisioner-progress", func(ctx context.Context) error { return provisioner.Progress(ctx, g.err, prov.Stats, 2*time.Second) })
	mux.Handle("GET /metrics/provisioner", provTel.Metrics)

	// (wave-2 services are wired above this line)

	// The simulated fleet sends its hellos to our listener.
	simLine := ""
	sys := &devSystem{js: js, prov: prov, helloAddr: dialable(helloAddr.String())}
	if o.simulate > 0 {
		base, err := netip.ParseAddr(o.simBase)
		if err != nil {
			return nil, fmt.Errorf("%w: --sim-base: %v", service.ErrUsage, err)
		}
		fleet, err := amtsim.Start(ctx, amtsim.Options{
			Devices:         o.simulate,
			Seed:            1,
			Base:            base,
			Range:           netip.PrefixFrom(base, 16).Masked(),
			ProvisionServer: dialable(helloAddr.String()),
			TimeScale:       o.simTimeScale,
			Latency:         o.simLatency,
			HelloSpread:     o.simHelloSpread,
			TrustHashes:     devTrust,
			Logger:          log.With("component", "amtsim"),
		})
		if err != nil {
			return nil, fmt.Errorf("simulator: %w", err)
		}
		lc.OnShutdown("simulator", func(context.Context) error { return fleet.Close() })
		sys.fleet = fleet
		simLn, err := net.Listen("tcp", o.simControlAddr)
		if err != nil {
			return nil, fmt.Errorf("simulator control listener: %w", err)
		}
		simLine = " sim=http://" + lc.Serve("sim-control", simLn, fleet.ControlHandler())
	}

	// "ready" promises that the CLI works: the line is printed once every
	// readiness check passes, the services' admin verbs included (they
	// subscribe inside their Run, which starts with the lifecycle).
	readyLine := fmt.Sprintf("amtprov ready hello=%s api=http://%s nats=%s%s\n", helloAddr, apiAddr, redactURL(natsURL), simLine)
	lc.Go("ready-line", func(ctx context.Context) error {
		if err := lc.WaitReady(ctx, 60*time.Second); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		fmt.Fprint(g.out, readyLine)
		<-ctx.Done()
		return nil
	})
	return sys, nil
}

func startEmbeddedNATS(addr, storeDir string) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: --nats-addr %q: %v", service.ErrUsage, addr, err)
	}
	var port int
	if _, err := fmt.Sscan(portStr, &port); err != nil {
		return nil, fmt.Errorf("%w: --nats-addr %q: bad port", service.ErrUsage, addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "amtprov-dev",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
		MaxPayload: 1 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats-server on %s did not become ready (is the port in use?)", addr)
	}
	return ns, nil
}

// dialable turns a wildcard listen address into one a client can dial.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// redactURL drops user info from a URL before it is printed.
func redactURL(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "***@" + u[i+1:]
		}
	}
	return u
}
