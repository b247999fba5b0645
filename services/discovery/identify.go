package discovery

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/amtprov/amtprov/libs/wsman"
	"github.com/amtprov/amtprov/services/discovery/sweep"
)

// Credential sources (device_credentials.source).
const (
	SourceAmtprov      = "amtprov"
	SourceOtherConsole = "other_console"
)

// credential is one set of admin credentials that may open a device.
type credential struct {
	uuid     string // expected device, empty for a CIDR row of a credentials file
	username string
	password string
	pin      []byte // SHA-256 of the device certificate amtprov installed; nil for other consoles
	source   string
	match    string // other_console: the credentials file's match column
}

// maxAttempts bounds the credentials tried on one device in one scan: a
// device is never the target of a password-guessing loop.
const maxAttempts = 3

// identifier implements sweep.Identifier with libs/wsman and the
// credentials of one shard: amtprov's own (by the device's last known
// address, pinned TLS only) first, then other consoles'.
type identifier struct {
	byAddr   map[netip.Addr][]credential
	cidrs    []cidrCredential // most specific first
	tlsPort  int
	httpPort int
	timeout  time.Duration
	tracer   trace.TracerProvider
	sem      chan struct{} // shared by the replica's shards; nil: unbounded

	mu   sync.Mutex
	used map[string]credential // by device UUID: the credentials that opened it
}

// usedFor returns the credentials that identified device uuid.
func (id *identifier) usedFor(uuid string) (credential, bool) {
	id.mu.Lock()
	defer id.mu.Unlock()
	c, ok := id.used[uuid]
	return c, ok
}

type cidrCredential struct {
	prefix netip.Prefix
	cred   credential
}

func (id *identifier) candidates(a netip.Addr) []credential {
	out := slices.Clone(id.byAddr[a])
	slices.SortStableFunc(out, func(x, y credential) int {
		if x.source == y.source {
			return 0
		}
		if x.source == SourceAmtprov {
			return -1
		}
		return 1
	})
	for _, c := range id.cidrs {
		if c.prefix.Contains(a) {
			out = append(out, c.cred)
		}
	}
	if len(out) > maxAttempts {
		out = out[:maxAttempts]
	}
	return out
}

// Identify reads who the device at a is, trying each candidate credential
// until one is accepted. amtprov's own credentials go only over TLS with
// the pinned certificate (ARCHITECTURE.md "Security": never plain 16992
// for a device configured with TLS); other consoles' go over TLS when the
// port is open (the certificate is recorded, not verified: it is another
// console's), else plain HTTP digest.
func (id *identifier) Identify(ctx context.Context, a netip.Addr, seen sweep.Found) (sweep.Identity, error) {
	cands := id.candidates(a)
	if len(cands) == 0 {
		return sweep.Identity{}, sweep.ErrNoCredentials
	}
	if id.sem != nil {
		select {
		case id.sem <- struct{}{}:
			defer func() { <-id.sem }()
		case <-ctx.Done():
			return sweep.Identity{}, fmt.Errorf("identify %v: wait for a slot: %w", a, ctx.Err())
		}
	}
	tlsOpen := slices.Contains(seen.Ports, id.tlsPort)
	var errs []error
	for _, c := range cands {
		idn, err := id.try(ctx, a, c, tlsOpen)
		if err == nil {
			id.mu.Lock()
			if id.used == nil {
				id.used = map[string]credential{}
			}
			id.used[idn.UUID] = c
			id.mu.Unlock()
			return idn, nil
		}
		errs = append(errs, err)
		var tlsErr *wsman.TLSError
		if !errors.Is(err, wsman.ErrUnauthorized) && !errors.As(err, &tlsErr) && !errors.Is(err, errWrongDevice) && !errors.Is(err, errNoTLS) {
			break // unreachable, broken answers: another password will not help
		}
	}
	return sweep.Identity{}, fmt.Errorf("identify %v: %w", a, errors.Join(errs...))
}

var (
	errWrongDevice = errors.New("device reports another UUID than the credentials are for")
	errNoTLS       = errors.New("TLS port closed: amtprov's credentials are only sent over pinned TLS")
)

func (id *identifier) try(ctx context.Context, a netip.Addr, c credential, tlsOpen bool) (sweep.Identity, error) {
	cfg := wsman.Config{Username: c.username, Password: c.password, Timeout: id.timeout, DialTimeout: min(id.timeout, 5*time.Second), Tracer: id.tracer}
	var (
		mu       sync.Mutex
		certHash string
	)
	switch {
	case c.pin != nil:
		if !tlsOpen {
			return sweep.Identity{}, errNoTLS
		}
		t, err := wsman.PinnedTLSConfig(c.pin)
		if err != nil {
			return sweep.Identity{}, fmt.Errorf("credentials of %s: %w", c.uuid, err)
		}
		cfg.TLS = t
		cfg.Address = netip.AddrPortFrom(a, uint16(id.tlsPort)).String()
		certHash = hex.EncodeToString(c.pin)
	case tlsOpen:
		cfg.TLS = &tls.Config{
			InsecureSkipVerify: true, //nolint:gosec // another console's certificate: recorded (trust on first use), see doc.go
			MinVersion:         tls.VersionTLS12,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("device presented no certificate")
				}
				mu.Lock()
				certHash = certSHA256(cs.PeerCertificates[0])
				mu.Unlock()
				return nil
			},
		}
		cfg.Address = netip.AddrPortFrom(a, uint16(id.tlsPort)).String()
	default:
		cfg.Address = netip.AddrPortFrom(a, uint16(id.httpPort)).String()
	}
	cl, err := wsman.New(cfg)
	if err != nil {
		return sweep.Identity{}, fmt.Errorf("wsman client for %v: %w", a, err)
	}
	defer cl.Close()
	csp, err := cl.ComputerSystemPackage(ctx)
	if err != nil {
		return sweep.Identity{}, err
	}
	u := csp.UUID.String()
	if c.uuid != "" && u != c.uuid {
		return sweep.Identity{}, fmt.Errorf("%w: device %s, credentials %s", errWrongDevice, u, c.uuid)
	}
	idn := sweep.Identity{UUID: u, Source: c.source}
	gs, err := cl.GeneralSettings(ctx)
	if err != nil {
		return sweep.Identity{}, err
	}
	idn.Hostname, idn.Domain = gs.HostName, gs.DomainName
	ids, err := cl.SoftwareIdentities(ctx)
	if err != nil {
		return sweep.Identity{}, err
	}
	if v, ok := wsman.FirmwareVersionOf(ids); ok {
		idn.AMTVersion, idn.SKU = v.Full(), v.SKU
	}
	sc, err := cl.SetupAndConfiguration(ctx)
	if err != nil {
		return sweep.Identity{}, err
	}
	idn.State = sc.ProvisioningState.String()
	// Control mode and MAC are worth having, not worth failing for: older
	// firmware lacks IPS_HostBasedSetupService (§2.3, 6.1+).
	if hb, err := cl.HostBasedSetupService(ctx); err == nil {
		idn.ControlMode = hb.CurrentControlMode.String()
	}
	if eps, err := cl.EthernetPortSettings(ctx); err == nil {
		for _, e := range eps {
			if m, err := e.MAC(); err == nil {
				idn.MAC = m.String()
				break
			}
		}
	}
	mu.Lock()
	idn.TLSCertSHA256 = certHash
	mu.Unlock()
	return idn, nil
}

func certSHA256(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

// parseMatch reads the match column of a credentials file: a CIDR, a
// single address (as a /32), or a UUID.
func parseMatch(s string) (prefix netip.Prefix, uuid string, err error) {
	if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
		return p.Masked(), "", nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
		return netip.PrefixFrom(a, 32), "", nil
	}
	if u, err := parseUUID(s); err == nil {
		return netip.Prefix{}, u, nil
	}
	return netip.Prefix{}, "", fmt.Errorf("match %s: want an IPv4 CIDR or a UUID", strconv.Quote(truncate(s, 64)))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
