package firmware

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	mathrand "math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
)

// maxTLSRejections bounds the ring of recorded TLS rejection reasons.
const maxTLSRejections = 64

var realmPattern = regexp.MustCompile(`^Digest:[0-9A-F]{32}$`)

// ErrInvalidConfig is returned by NewDevice for a configuration it cannot model.
var ErrInvalidConfig = errors.New("invalid device config")

// NewDevice validates cfg and returns a device in setup mode
// (InProvisioning), or in post-provisioning (admin control mode, TLS on with
// another console's certificate) when cfg.Provisioned.
func NewDevice(cfg Config, realism Realism, keys KeySource) (*Device, error) {
	u, err := amt.ParseUUID(cfg.UUID)
	if err != nil {
		return nil, fmt.Errorf("%w: uuid: %w", ErrInvalidConfig, err)
	}
	if u.IsZero() {
		return nil, fmt.Errorf("%w: uuid is all zeros", ErrInvalidConfig)
	}
	if _, err := net.ParseMAC(cfg.MAC); err != nil {
		return nil, fmt.Errorf("%w: mac: %w", ErrInvalidConfig, err)
	}
	if cfg.IP != "" {
		if _, err := netip.ParseAddr(cfg.IP); err != nil {
			return nil, fmt.Errorf("%w: ip: %w", ErrInvalidConfig, err)
		}
	}
	if _, err := parseVersion(cfg.AMTVersion); err != nil {
		return nil, fmt.Errorf("%w: amt_version: %w", ErrInvalidConfig, err)
	}
	if !realmPattern.MatchString(cfg.Realm) {
		return nil, fmt.Errorf("%w: realm %q: want \"Digest:\" + 32 upper-case hex digits", ErrInvalidConfig, cfg.Realm)
	}
	if cfg.Hostname == "" {
		return nil, fmt.Errorf("%w: hostname is empty", ErrInvalidConfig)
	}
	if keys == nil {
		return nil, fmt.Errorf("%w: no key source", ErrInvalidConfig)
	}
	roots := make([]amt.RootHash, 0, len(cfg.TrustedRoots))
	for _, s := range cfg.TrustedRoots {
		h, err := amt.ParseRootHash(s)
		if err != nil {
			return nil, fmt.Errorf("%w: trusted_roots: %w", ErrInvalidConfig, err)
		}
		roots = append(roots, h)
	}
	if cfg.Provisioned && (cfg.AdminUser == "" || cfg.AdminPassword == "") {
		return nil, fmt.Errorf("%w: a provisioned device needs admin_user and admin_password", ErrInvalidConfig)
	}
	cfg.TrustedRoots = append([]string(nil), cfg.TrustedRoots...)
	var seed [32]byte
	for i := range 8 {
		seed[i] = byte(uint64(cfg.Seed) >> (8 * i))
	}
	copy(seed[8:], u[:])
	d := &Device{
		cfg:     cfg,
		uuid:    u,
		roots:   roots,
		realism: realism,
		keys:    keys,
		changed: make(chan struct{}),
		rng:     mathrand.New(mathrand.NewChaCha8(seed)),
	}
	d.cfgNonce = d.randomBytes(20)
	d.fw = firmwareState{state: amt.InProvisioning, mode: amt.ControlNone, committed: factoryStore(cfg)}
	if cfg.Provisioned {
		key, err := keys.Key()
		if err != nil {
			return nil, fmt.Errorf("getting a key for provisioned device %s: %w", cfg.UUID, err)
		}
		s, err := provisionedStore(cfg, key)
		if err != nil {
			return nil, fmt.Errorf("provisioned device %s: %w", cfg.UUID, err)
		}
		d.fw.state, d.fw.mode, d.fw.committed = amt.PostProvisioning, amt.ControlACM, s
	}
	d.fw.staged = d.fw.committed.clone()
	return d, nil
}

// randomBytes draws n bytes from the device's seeded generator; d.mu must
// be held once the device is shared.
func (d *Device) randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(d.rng.Uint32())
	}
	return b
}

// Config returns the identity the device was configured with (a copy).
func (d *Device) Config() Config {
	c := d.cfg
	c.TrustedRoots = append([]string(nil), d.cfg.TrustedRoots...)
	return c
}

// UUID is the device UUID.
func (d *Device) UUID() amt.UUID { return d.uuid }

// TrustedRoots are the root hashes the device accepts for remote
// configuration (PROTOCOL.md §6.1).
func (d *Device) TrustedRoots() []amt.RootHash {
	out := make([]amt.RootHash, len(d.roots))
	for i, h := range d.roots {
		out[i] = amt.RootHash{Alg: h.Alg, Sum: append([]byte(nil), h.Sum...)}
	}
	return out
}

// State is the provisioning state (PROTOCOL.md §2.2).
func (d *Device) State() amt.ProvisioningState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fw.state
}

// ControlMode is the activation mode (PROTOCOL.md §2.3).
func (d *Device) ControlMode() amt.ControlMode {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fw.mode
}

// TLSEnabled reports the committed TLS setting of the remote (802.3) interface.
func (d *Device) TLSEnabled() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fw.committed.remoteTLS.enabled
}

// PlainPortOpen reports whether firmware serves plain HTTP on 16992: not
// once TLS is committed on the remote interface with
// AcceptNonSecureConnections false (PROTOCOL.md §7.6). The listeners and
// the RMCP pong's open-ports bits follow it; Handler drops WS-Man requests
// that arrive without TLS while it is false.
func (d *Device) PlainPortOpen() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.plainPortOpenLocked()
}

func (d *Device) plainPortOpenLocked() bool {
	t := d.fw.committed.remoteTLS
	return !t.enabled || t.acceptNonSecure
}

// ServerCertificate is what 16993 presents now: the certificate of the
// committed TLS credential context, else a self-signed RSA certificate as
// setup-mode firmware presents (PROTOCOL.md §6.1 item 2). RSA, because
// MeshCentral offers only RSA-authenticated suites (§1 notes). It returns
// nil only when the key source fails.
func (d *Device) ServerCertificate() *tls.Certificate {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.fw.committed.serverCertificate(); c != nil {
		return c
	}
	if d.fw.selfSigned == nil {
		key, err := d.keys.Key()
		if err != nil {
			return nil
		}
		cert, err := selfSignedCert(key, d.cfg.Hostname, "")
		if err != nil {
			return nil
		}
		d.fw.selfSigned = cert
	}
	return d.fw.selfSigned
}

// Changed returns a channel that is closed at the next state change.
func (d *Device) Changed() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.changed
}

// notifyLocked wakes the watchers of Changed; d.mu must be held.
func (d *Device) notifyLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// Reset puts the device back in setup mode with every setting cleared, as a
// full unprovision followed by re-opening the setup window does. A device
// configured as Provisioned comes back in setup mode as well.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fw.state, d.fw.mode = amt.InProvisioning, amt.ControlNone
	d.fw.committed = factoryStore(d.cfg)
	d.fw.staged = d.fw.committed.clone()
	d.fw.clockOffset = 0
	d.dropSessionsLocked()
	d.notifyLocked()
}

// Reboot power-cycles the engine: staged settings are lost, committed ones
// stay. Watchers of Changed are woken (a rebooted device in setup mode
// starts its hello schedule again).
func (d *Device) Reboot() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rebootLocked()
}

func (d *Device) rebootLocked() {
	d.fw.staged = d.fw.committed.clone()
	d.dropSessionsLocked()
	d.notifyLocked()
}

// dropSessionsLocked forgets what lives in RAM only: enumeration contexts
// and digest nonces. d.mu must be held.
func (d *Device) dropSessionsLocked() {
	d.enums = nil
	d.nonces = nil
}

// InjectFault makes kind active until the given time.
func (d *Device) InjectFault(kind FaultKind, until time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	kept := d.faults[:0]
	for _, f := range d.faults {
		if f.kind != kind && time.Now().Before(f.until) {
			kept = append(kept, f)
		}
	}
	d.faults = append(kept, fault{kind: kind, until: until})
}

// HasFault reports whether kind is active now.
func (d *Device) HasFault(kind FaultKind) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hasFaultLocked(kind, time.Now())
}

func (d *Device) hasFaultLocked(kind FaultKind, now time.Time) bool {
	for _, f := range d.faults {
		if f.kind == kind && now.Before(f.until) {
			return true
		}
	}
	return false
}

// activeFaults lists the kinds active now.
func (d *Device) activeFaults() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	var out []string
	for _, f := range d.faults {
		if now.Before(f.until) {
			out = append(out, string(f.kind))
		}
	}
	return out
}

// RecordTLSRejection notes why a client chain was refused (bounded ring).
func (d *Device) RecordTLSRejection(reason string) {
	d.Counters.TLSRejections.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.rejections) >= maxTLSRejections {
		copy(d.rejections, d.rejections[1:])
		d.rejections = d.rejections[:len(d.rejections)-1]
	}
	d.rejections = append(d.rejections, reason)
}

// TLSRejections returns the recorded reasons, oldest first.
func (d *Device) TLSRejections() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.rejections...)
}

// Info is a device as the control API lists it (INTERFACES.md "Simulator").
type Info struct {
	UUID                  string   `json:"uuid"`
	IP                    string   `json:"ip"`
	MAC                   string   `json:"mac"`
	Hostname              string   `json:"hostname"`
	DNSSuffix             string   `json:"dns_suffix"`
	AMTVersion            string   `json:"amt_version"`
	Realm                 string   `json:"realm"`
	State                 string   `json:"state"`
	ControlMode           string   `json:"control_mode"`
	TLSEnabled            bool     `json:"tls_enabled"`
	HellosSent            int64    `json:"hellos_sent"`
	SessionsMaxConcurrent int64    `json:"sessions_max_concurrent"`
	WSManCalls            int64    `json:"wsman_calls"`
	TLSRejections         []string `json:"tls_rejections,omitempty"`
	Faults                []string `json:"faults,omitempty"`
}

// Info snapshots the device for the control API.
func (d *Device) Info() Info {
	faults := d.activeFaults()
	rej := d.TLSRejections()
	d.mu.Lock()
	state, mode, tlsOn, host := d.fw.state, d.fw.mode, d.fw.committed.remoteTLS.enabled, d.fw.committed.hostname
	d.mu.Unlock()
	return Info{
		UUID:                  d.cfg.UUID,
		IP:                    d.cfg.IP,
		MAC:                   d.cfg.MAC,
		Hostname:              host,
		DNSSuffix:             d.cfg.DNSSuffix,
		AMTVersion:            d.cfg.AMTVersion,
		Realm:                 d.cfg.Realm,
		State:                 state.String(),
		ControlMode:           mode.String(),
		TLSEnabled:            tlsOn,
		HellosSent:            d.Counters.HellosSent.Load(),
		SessionsMaxConcurrent: d.Counters.SessionsMaxConcurrent.Load(),
		WSManCalls:            d.Counters.WSManCalls.Load(),
		TLSRejections:         rej,
		Faults:                faults,
	}
}

// parseVersion reads "major.minor.hotfix.build" (at least major.minor).
func parseVersion(v string) ([]int, error) {
	parts := strings.Split(v, ".")
	if len(parts) < 2 || len(parts) > 4 {
		return nil, fmt.Errorf("version %q: want MAJOR.MINOR[.HOTFIX[.BUILD]]", v)
	}
	out := make([]int, len(parts))
	for i, p := range parts {
		n := 0
		if p == "" || len(p) > 6 {
			return nil, fmt.Errorf("version %q: bad component %q", v, p)
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return nil, fmt.Errorf("version %q: bad component %q", v, p)
			}
			n = n*10 + int(c-'0')
		}
		out[i] = n
	}
	return out, nil
}

// selfSignedCert makes a certificate for cn with key, self-signed; a
// non-empty org goes into the subject (to tell another console's
// certificate from setup mode's).
func selfSignedCert(key *rsa.PrivateKey, cn, org string) (*tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("generating serial: %w", err)
	}
	now := time.Now()
	subj := pkix.Name{CommonName: cn}
	if org != "" {
		subj.Organization = []string{org}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subj,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(5, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{cn},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
