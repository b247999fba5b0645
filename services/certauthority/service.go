package certauthority

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/errgroup"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/bus"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/outbox"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/libs/telemetry"
)

const scope = "github.com/amtprov/amtprov/services/certauthority"

// Queue groups: sign requests, admin verbs.
const (
	SignQueue  = "certauthority"
	AdminQueue = "admin-certauthority"
)

// Purpose of device TLS certificates (the only one Sign accepts).
const PurposeDeviceTLS = "device-tls"

// Purposes recorded for certificates the CA issues for itself.
const (
	purposeOrgCA             = "org-ca"
	purposeProvisioningRoot  = "provisioning-root"
	purposeProvisioningLeaf  = "provisioning-leaf"
	orgCAName                = "default"
	defaultOrgKeyBits        = 3072
	defaultValidityDays      = 365
	defaultMaxValidityDays   = 825
	defaultMinRSABits        = 2048
	defaultOrgCAValidityYear = 20
)

// Config tunes the CA; zero values take the defaults.
type Config struct {
	// AllowedSuffixes are DNS suffixes device FQDNs may be in.
	AllowedSuffixes []string
	// DenyProvisioningDomainSuffixes stops the suffixes of the provisioning
	// domains (table domains) from being allowed too. By default a suffix
	// amtprov provisions devices in is one it may issue TLS certificates in.
	DenyProvisioningDomainSuffixes bool
	// MinRSABits is the smallest RSA key signed (default 2048).
	MinRSABits int
	// DefaultValidityDays applies when a request gives none (default 365);
	// MaxValidityDays caps what a request may ask (default 825).
	DefaultValidityDays int
	MaxValidityDays     int
	// Organization is the O of issued certificates and of the CA (default "amtprov").
	Organization string
	// OrgKeyBits is the RSA size of a new organisation CA key (default 3072).
	OrgKeyBits int
	// Source is the ce-source of events (default /certauthority/<host>).
	Source string
	// SignTimeout bounds one sign request (default 30 s); MaxInFlight
	// bounds concurrent requests per replica (default 64).
	SignTimeout time.Duration
	MaxInFlight int
}

func (c Config) withDefaults() Config {
	if c.MinRSABits <= 0 {
		c.MinRSABits = defaultMinRSABits
	}
	if c.DefaultValidityDays <= 0 {
		c.DefaultValidityDays = defaultValidityDays
	}
	if c.MaxValidityDays <= 0 {
		c.MaxValidityDays = defaultMaxValidityDays
	}
	if c.Organization == "" {
		c.Organization = "amtprov"
	}
	if c.OrgKeyBits <= 0 {
		c.OrgKeyBits = defaultOrgKeyBits
	}
	if c.Source == "" {
		host, _ := os.Hostname()
		c.Source = "/certauthority/" + host
	}
	if c.SignTimeout <= 0 {
		c.SignTimeout = 30 * time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 64
	}
	for i, s := range c.AllowedSuffixes {
		c.AllowedSuffixes[i] = CanonicalSuffix(s)
	}
	return c
}

// Service is the CA's logic: Sign, domains, the organisation CA.
type Service struct {
	cfg  Config
	pool *pgxpool.Pool
	keys *secrets.Keyring
	log  *slog.Logger

	caCert *x509.Certificate
	caKey  *rsa.PrivateKey

	tracer trace.Tracer
	issued metric.Int64Counter
	denied metric.Int64Counter
}

// CA is a runnable certauthority: the Service plus its transports and
// outbox relay.
type CA struct {
	*Service
	nc         *nats.Conn
	relay      *outbox.Relay
	tel        telemetry.Providers
	adminReady admin.ReadyCheck
}

// Ready reports whether Run answers amt.v1.ca.sign and the domain admin
// verbs (for service.Lifecycle.Ready).
func (c *CA) Ready(ctx context.Context) error { return c.adminReady.Ready(ctx) }

// New loads the organisation CA (creating it if this is the first replica to
// start) and returns the service, ready to Run. pool must be migrated; js
// carries the outbox's events; nc serves the request/reply subjects.
func New(ctx context.Context, cfg Config, pool *pgxpool.Pool, keys *secrets.Keyring, nc *nats.Conn, js jetstream.JetStream, tel telemetry.Providers, log *slog.Logger) (*CA, error) {
	svc, err := NewService(ctx, cfg, pool, keys, tel, log)
	if err != nil {
		return nil, err
	}
	pub := bus.NewPublisher(js, svc.cfg.Source, tel)
	relay := outbox.NewRelay(pool, pub, outbox.RelayConfig{Topics: []string{events.SubjectCertIssued}, Log: svc.log, Telemetry: tel})
	return &CA{Service: svc, nc: nc, relay: relay, tel: tel}, nil
}

// NewService is New without transports: the logic alone, for tests and for
// callers that serve it themselves.
func NewService(ctx context.Context, cfg Config, pool *pgxpool.Pool, keys *secrets.Keyring, tel telemetry.Providers, log *slog.Logger) (*Service, error) {
	if pool == nil || keys == nil {
		return nil, errors.New("certauthority: a database pool and a keyring are required")
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if tel.Tracer == nil {
		tel.Tracer = tracenoop.NewTracerProvider()
	}
	if tel.Meter == nil {
		tel.Meter = metricnoop.NewMeterProvider()
	}
	m := tel.Meter.Meter(scope)
	issued, err := m.Int64Counter("amtprov.ca.issued", metric.WithDescription("Device certificates issued, by purpose."), metric.WithUnit("{certificate}"))
	if err != nil {
		issued = metricnoop.Int64Counter{}
	}
	denied, err := m.Int64Counter("amtprov.ca.denied", metric.WithDescription("Sign requests refused, by code."), metric.WithUnit("{request}"))
	if err != nil {
		denied = metricnoop.Int64Counter{}
	}
	s := &Service{cfg: cfg, pool: pool, keys: keys, log: log, tracer: tel.Tracer.Tracer(scope), issued: issued, denied: denied}
	if err := s.loadOrCreateOrgCA(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// OrgCACertificate is the organisation CA's certificate (to pin or trust).
func (s *Service) OrgCACertificate() *x509.Certificate { return s.caCert }

// Run serves amt.v1.ca.sign and the domain admin verbs and relays the
// outbox until ctx ends, then drains. It suits service.Lifecycle.Go.
func (c *CA) Run(ctx context.Context) error {
	signSrv := admin.NewServer(c.nc, admin.ServerOptions{Queue: SignQueue, Timeout: c.cfg.SignTimeout, MaxInFlight: c.cfg.MaxInFlight, Log: c.log, Telemetry: c.tel})
	RegisterSign(signSrv, c.Service)
	adminSrv := admin.NewServer(c.nc, admin.ServerOptions{Queue: AdminQueue, Log: c.log, Telemetry: c.tel})
	RegisterAdmin(adminSrv, c.Service)
	c.adminReady.Set(signSrv, adminSrv)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.relay.Run(gctx) })
	g.Go(func() error { return signSrv.Run(gctx) })
	g.Go(func() error { return adminSrv.Run(gctx) })
	if err := g.Wait(); err != nil {
		return fmt.Errorf("certauthority: %w", err)
	}
	return nil
}

// certIssuedEvent builds the amt.v1.cert.issued.<uuid> envelope; its id is
// derived from the serial so a retried write is de-duplicated.
func (s *Service) certIssuedEvent(uuid, serial, fp, purpose string, nb, na time.Time) (events.Envelope, error) {
	return events.New(s.cfg.Source, &events.CertIssued{
		UUID: uuid, Serial: serial, FingerprintSHA256: fp, NotBefore: nb.UTC(), NotAfter: na.UTC(), Purpose: purpose,
	}, "cert-"+serial)
}
