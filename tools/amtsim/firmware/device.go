// Package firmware models one Intel AMT management engine as seen from the
// network: its provisioning state machine (PROTOCOL.md §2, §6), its
// WS-Management server (§8) with HTTP digest authentication (§8.3), and its
// unauthenticated discovery surface (§9.1). The fleet package of amtsim puts
// many of these on loopback addresses behind real TCP, TLS and UDP listeners.
package firmware

import (
	"crypto/rsa"
	mathrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
)

// Config is everything that makes one simulated device distinct. It is what
// a fleet file stores per device, so it is JSON-serialisable.
type Config struct {
	UUID         string   `json:"uuid"` // canonical text form
	MAC          string   `json:"mac"`  // aa:bb:cc:dd:ee:ff
	IP           string   `json:"ip"`
	Hostname     string   `json:"hostname"`
	DNSSuffix    string   `json:"dns_suffix"`
	AMTVersion   string   `json:"amt_version"` // e.g. "16.1.25.2124"
	SKU          string   `json:"sku"`         // e.g. "16392"
	Realm        string   `json:"realm"`       // "Digest:" + 32 upper-case hex
	MEBxPassword string   `json:"mebx_password"`
	TrustedRoots []string `json:"trusted_roots"` // "sha256:HEX", firmware defaults + user-added
	// Legacy devices send v2 (PSK) hellos with PID.
	Legacy bool   `json:"legacy,omitempty"`
	PID    string `json:"pid,omitempty"`
	// Provisioned devices start in post-provisioning, configured by another
	// console: TLS on with their own certificate, these admin credentials.
	Provisioned   bool   `json:"provisioned,omitempty"`
	AdminUser     string `json:"admin_user,omitempty"`
	AdminPassword string `json:"admin_password,omitempty"`
	// Seed drives every random choice the device makes (nonces, latency).
	Seed int64 `json:"seed"`
}

// Realism configures per-call behaviour; zero values mean "instant".
type Realism struct {
	Latency     func() time.Duration // per WS-Man call
	KeyGenDelay time.Duration        // GenerateKeyPair
	CommitDelay time.Duration        // CommitChanges
}

// KeySource hands out RSA-2048 keys for GenerateKeyPair; a pool of
// pre-generated keys lets 10,000 devices start without minutes of keygen.
type KeySource interface {
	Key() (*rsa.PrivateKey, error)
}

// FaultKind names an injected fault. Network-level kinds (unreachable, slow,
// reset) are acted on by the listeners; the rest by the device itself.
type FaultKind string

// Fault kinds understood by the simulator.
const (
	FaultUnreachable   FaultKind = "unreachable"    // accept nothing, answer no probe
	FaultSlow          FaultKind = "slow"           // every call takes seconds
	FaultReset         FaultKind = "reset"          // connection reset mid-exchange
	FaultReboot        FaultKind = "reboot"         // reboot before commit: uncommitted settings lost
	FaultWrongPassword FaultKind = "wrong_password" // admin credentials refused
	FaultCertRefused   FaultKind = "cert_refused"   // provisioning certificate refused in TLS
	FaultTransient5xx  FaultKind = "transient_5xx"  // HTTP 503 on WS-Man calls
)

// Counters are the ground truth tests and benchmarks assert on.
type Counters struct {
	HellosSent            atomic.Int64
	Sessions              atomic.Int64 // currently open connections
	SessionsMaxConcurrent atomic.Int64
	WSManCalls            atomic.Int64
	RMCPPings             atomic.Int64
	HTTPProbes            atomic.Int64
	TLSRejections         atomic.Int64
}

// SessionOpened and SessionClosed track concurrent connections.
func (c *Counters) SessionOpened() {
	n := c.Sessions.Add(1)
	for {
		m := c.SessionsMaxConcurrent.Load()
		if n <= m || c.SessionsMaxConcurrent.CompareAndSwap(m, n) {
			return
		}
	}
}

// SessionClosed marks the end of a connection.
func (c *Counters) SessionClosed() { c.Sessions.Add(-1) }

type fault struct {
	kind  FaultKind
	until time.Time
}

// Device is one simulated management engine. It is safe for concurrent use.
type Device struct {
	cfg      Config
	uuid     amt.UUID
	roots    []amt.RootHash
	realism  Realism
	keys     KeySource
	Counters Counters

	mu     sync.Mutex
	faults []fault
	// rejections records why TLS handshakes were refused, newest last (bounded).
	rejections []string
	// changed is closed and replaced on every state change (see Changed).
	changed chan struct{}

	// fw is the firmware's settings store, guarded by mu.
	fw firmwareState
	// rng drives nonces and other per-device random choices (seeded).
	rng *mathrand.Rand
	// msgID numbers responses (b:MessageID).
	msgID uint64
	// enums are open enumeration contexts, oldest first (bounded).
	enums []enumContext
	// nonces are the digest nonces handed out, oldest first (bounded).
	nonces []nonceEntry
	// cfgNonce is IPS_HostBasedSetupService.ConfigurationNonce.
	cfgNonce []byte
}
