// Package record is the inventory's data model: the Update a handler derives
// from one event, how updates about one device merge (newest event wins per
// field group), and the Device the read API returns.
//
// Merging is what makes the inventory order-tolerant and idempotent: every
// field group carries the Mark (event time, event id) of the event that set
// it, and Merge keeps the greater Mark whatever order updates arrive in. The
// SQL in internal/pgstore applies the same rule against stored rows, so
// merging in memory and then in the database gives what applying one event
// at a time would.
package record

import (
	"encoding/json"
	"time"
)

// Mark orders facts about one device: by event time, then by event id
// (bytewise) to break ties, so that every replica and every replay picks the
// same winner.
type Mark struct {
	At      time.Time
	EventID string
}

// After reports whether m is strictly newer than o.
func (m Mark) After(o Mark) bool {
	if !m.At.Equal(o.At) {
		return m.At.After(o.At)
	}
	return m.EventID > o.EventID
}

// Hello is the capability group set by setup-mode hellos.
type Hello struct {
	Mark
	InterfaceVersion    int
	AdminCredentialsSet bool
	RootHashes          []RootHash
}

// State is the provisioning state group: "pre", "in" or "post".
type State struct {
	Mark
	State string
}

// Version is the firmware version group.
type Version struct {
	Mark
	AMTVersion string
}

// Ports is the group of AMT ports found open by discovery.
type Ports struct {
	Mark
	Ports []int
}

// Addr is the location group: the IP the device was heard from or found at.
type Addr struct {
	Mark
	IP string
}

// Stale is the staleness group: set when a scan of the device's last known
// address did not find a device amtprov provisioned, cleared when a scan
// finds it again (services/discovery).
type Stale struct {
	Mark
	Stale bool
}

// Managed is who manages the device's AMT: "amtprov" or "other_console".
type Managed struct {
	Mark
	By string
}

// Config is the configuration the provisioner read back from the device
// after provisioning (oob_capability group "config").
type Config struct {
	Mark
	ControlMode string // none, ccm, acm
	TLSEnabled  bool
	SOL         bool
	IDER        bool
	KVM         bool
}

// Ident is who the device says it is (device_identification group
// "ident"): host and domain name as the provisioner set and read them.
type Ident struct {
	Mark
	Hostname string
	Domain   string
}

// Provisioning is the latest provisioning event about the device.
type Provisioning struct {
	Mark
	State     string // started, running, succeeded, failed
	JobID     string
	Attempt   int
	Profile   string
	Step      string
	ErrorCode string
}

// Update is everything one event (or several merged events) says about one
// device. Nil groups are left as they are; zero times are "no information".
type Update struct {
	UUID string // canonical lower-case form

	// Seen widens the device's first/last seen interval.
	FirstSeen, LastSeen time.Time

	Hello   *Hello
	State   *State
	Version *Version
	Ports   *Ports
	Managed *Managed
	Config  *Config // written by pgstore's config statement
	Ident   *Ident  // written by pgstore's identification statement

	Addr         *Addr
	LastHelloAt  time.Time // location: monotonic, the greatest wins
	LocationSeen time.Time // location: monotonic, the greatest wins
	Stale        *Stale
	Provisioning *Provisioning
}

// Seen makes an update that widens first/last seen to t.
func Seen(uuid string, t time.Time) Update { return Update{UUID: uuid, FirstSeen: t, LastSeen: t} }

// Merge folds o (about the same device) into u. Merge is commutative and
// associative, so the order updates arrive in does not matter, and merging
// an update twice changes nothing.
func (u *Update) Merge(o Update) {
	u.FirstSeen = minTime(u.FirstSeen, o.FirstSeen)
	u.LastSeen = maxTime(u.LastSeen, o.LastSeen)
	u.LastHelloAt = maxTime(u.LastHelloAt, o.LastHelloAt)
	u.LocationSeen = maxTime(u.LocationSeen, o.LocationSeen)
	u.Hello = newer(u.Hello, o.Hello, func(g *Hello) Mark { return g.Mark })
	u.State = newer(u.State, o.State, func(g *State) Mark { return g.Mark })
	u.Version = newer(u.Version, o.Version, func(g *Version) Mark { return g.Mark })
	u.Ports = newer(u.Ports, o.Ports, func(g *Ports) Mark { return g.Mark })
	u.Addr = newer(u.Addr, o.Addr, func(g *Addr) Mark { return g.Mark })
	u.Stale = newer(u.Stale, o.Stale, func(g *Stale) Mark { return g.Mark })
	u.Managed = newer(u.Managed, o.Managed, func(g *Managed) Mark { return g.Mark })
	u.Config = newer(u.Config, o.Config, func(g *Config) Mark { return g.Mark })
	u.Ident = newer(u.Ident, o.Ident, func(g *Ident) Mark { return g.Mark })
	u.Provisioning = newer(u.Provisioning, o.Provisioning, func(g *Provisioning) Mark { return g.Mark })
}

// HasLocation reports whether the update touches device_location.
func (u *Update) HasLocation() bool {
	return u.Addr != nil || u.Stale != nil || !u.LastHelloAt.IsZero() || !u.LocationSeen.IsZero()
}

// HasCapability reports whether the update touches oob_capability.
func (u *Update) HasCapability() bool {
	return u.Hello != nil || u.State != nil || u.Version != nil || u.Ports != nil || u.Managed != nil
}

func newer[G any](a, b *G, mark func(*G) Mark) *G {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case mark(b).After(mark(a)):
		return b
	}
	return a
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// RootHash is a trusted root-certificate fingerprint (PROTOCOL.md §4.4).
type RootHash struct {
	Alg string `json:"alg"`
	Hex string `json:"hex"`
}

// Device is the DEVICE document of the read API (INTERFACES.md "HTTP API").
// Times are RFC 3339 in UTC; a time nothing has reported yet is "".
type Device struct {
	UUID           string             `json:"uuid"`
	FirstSeen      Time               `json:"first_seen"`
	LastSeen       Time               `json:"last_seen"`
	Identification Identification     `json:"identification"`
	Location       Location           `json:"location"`
	Capability     Capability         `json:"capability"`
	Provisioning   ProvisioningResult `json:"provisioning"`
}

// Identification is who the device says it is.
type Identification struct {
	Hostname     string `json:"hostname"`
	Domain       string `json:"domain"`
	FQDN         string `json:"fqdn"`
	Serial       string `json:"serial"`
	Model        string `json:"model"`
	Manufacturer string `json:"manufacturer"`
}

// Location is where the device was last heard from.
type Location struct {
	IP          string `json:"ip"`
	MAC         string `json:"mac"`
	LastHelloAt Time   `json:"last_hello_at"`
	// Stale: amtprov provisioned the device and the last scan of this
	// address did not find it (it is kept, not deleted).
	Stale bool `json:"stale"`
}

// Capability is what the device's AMT can do and what state it is in.
type Capability struct {
	AMTVersion            string     `json:"amt_version"`
	SKU                   string     `json:"sku"`
	ProvisioningState     string     `json:"provisioning_state"` // pre, in, post; "" if never reported
	ControlMode           string     `json:"control_mode"`       // none, ccm, acm
	HelloInterfaceVersion int        `json:"hello_interface_version"`
	AdminCredentialsSet   bool       `json:"admin_credentials_set"`
	RootHashes            []RootHash `json:"root_hashes"`
	TLSEnabled            bool       `json:"tls_enabled"`
	SOL                   bool       `json:"sol"`
	IDER                  bool       `json:"ider"`
	KVM                   bool       `json:"kvm"`
	// ManagedBy is "amtprov", "other_console" (identified by discovery with
	// another console's credentials) or "" when unknown.
	ManagedBy string `json:"managed_by"`
}

// ProvisioningResult is the last provisioning result as the read API shows it.
type ProvisioningResult struct {
	State     string `json:"state"`
	Attempt   int    `json:"attempt"`
	ErrorCode string `json:"error_code"`
	UpdatedAt Time   `json:"updated_at"`
}

// Time renders as RFC 3339 (UTC, sub-second digits when present), or "" for
// the zero time.
type Time struct{ time.Time }

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte(`""`), nil
	}
	return json.Marshal(t.UTC().Format(time.RFC3339Nano))
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if s == "" {
		t.Time = time.Time{}
		return nil
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	t.Time = v
	return err
}
