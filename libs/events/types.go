package events

import (
	"strconv"
	"strings"
	"sync"
	"time"
)

// Kind describes one event type: its ce-type, subject prefix and Go type.
type Kind struct {
	Type   string         // ce-type
	Prefix string         // subject without the key, e.g. amt.v1.device.hello
	Schema string         // file name under schema/
	New    func() Payload // a pointer to a zero value, for decoding
}

// Event types (INTERFACES.md "Events").
const (
	TypeDeviceHello           = "io.amtprov.device.hello.v1"
	TypeDeviceDiscovered      = "io.amtprov.device.discovered.v1"
	TypeProvisioningStarted   = "io.amtprov.provisioning.started.v1"
	TypeProvisioningStep      = "io.amtprov.provisioning.step.v1"
	TypeProvisioningSucceeded = "io.amtprov.provisioning.succeeded.v1"
	TypeProvisioningFailed    = "io.amtprov.provisioning.failed.v1"
	TypeCertIssued            = "io.amtprov.cert.issued.v1"
)

// Subject prefixes; a full subject is prefix + "." + key.
const (
	SubjectDeviceHello      = "amt.v1.device.hello"
	SubjectDeviceDiscovered = "amt.v1.device.discovered"
	SubjectProvisioning     = "amt.v1.provisioning"
	SubjectCertIssued       = "amt.v1.cert.issued"
)

// Request/reply subjects (not persisted in the stream).
const (
	SubjectCASign = "amt.v1.ca.sign"
	SubjectAdmin  = "amt.v1.admin"
)

// Kinds lists every event type; consumers dispatch on it.
func Kinds() []Kind {
	return []Kind{
		{TypeDeviceHello, SubjectDeviceHello, "device.hello.v1.json", func() Payload { return new(DeviceHello) }},
		{TypeDeviceDiscovered, SubjectDeviceDiscovered, "device.discovered.v1.json", func() Payload { return new(DeviceDiscovered) }},
		{TypeProvisioningStarted, SubjectProvisioning + ".started", "provisioning.v1.json", func() Payload { return &Provisioning{Event: ProvisioningStarted} }},
		{TypeProvisioningStep, SubjectProvisioning + ".step", "provisioning.v1.json", func() Payload { return &Provisioning{Event: ProvisioningStep} }},
		{TypeProvisioningSucceeded, SubjectProvisioning + ".succeeded", "provisioning.v1.json", func() Payload { return &Provisioning{Event: ProvisioningSucceeded} }},
		{TypeProvisioningFailed, SubjectProvisioning + ".failed", "provisioning.v1.json", func() Payload { return &Provisioning{Event: ProvisioningFailed} }},
		{TypeCertIssued, SubjectCertIssued, "cert.issued.v1.json", func() Payload { return new(CertIssued) }},
		{TypeScanCompleted, SubjectScanCompleted, "scan.completed.v1.json", func() Payload { return new(ScanCompleted) }},
	}
}

// kindIndex maps ce-type to kind; built once from Kinds() and never
// changed, because KindOf is on every publish and consume.
var kindIndex = sync.OnceValue(func() map[string]Kind {
	m := make(map[string]Kind)
	for _, k := range Kinds() {
		m[k.Type] = k
	}
	return m
})

// KindOf finds the kind of a ce-type.
func KindOf(ceType string) (Kind, bool) {
	k, ok := kindIndex()[ceType]
	return k, ok
}

// RootHash is a trusted root-certificate fingerprint as events carry it.
type RootHash struct {
	Alg string `json:"alg"` // sha1, sha256, sha384
	Hex string `json:"hex"` // lower-case
}

// DeviceHello reports one setup-mode hello received by a listener.
type DeviceHello struct {
	UUID                string     `json:"uuid"`
	SourceIP            string     `json:"source_ip"`
	SourcePort          int        `json:"source_port"`
	InterfaceVersion    int        `json:"interface_version"`
	AdminCredentialsSet bool       `json:"admin_credentials_set"`
	RetryCount          uint32     `json:"retry_count"`
	PID                 string     `json:"pid,omitempty"` // v2 (PSK) hellos only; the PID is not secret, the PPS is
	RootHashes          []RootHash `json:"root_hashes"`
	ReceivedAt          time.Time  `json:"received_at"`
	Listener            string     `json:"listener"`
}

func (*DeviceHello) EventType() string       { return TypeDeviceHello }
func (h *DeviceHello) Key() string           { return h.UUID }
func (h *DeviceHello) OccurredAt() time.Time { return h.ReceivedAt }

// HelloID is the event id of a hello: the same (uuid, retry count) from the
// same firmware is the same fact, so JetStream collapses repeats within its
// duplicate window.
func HelloID(uuid string, retry uint32) string {
	return "hello-" + uuid + "-" + strconv.FormatUint(uint64(retry), 10)
}

// DeviceDiscovered reports a device found by a network scan.
type DeviceDiscovered struct {
	UUID              string    `json:"uuid,omitempty"`
	IP                string    `json:"ip"`
	Ports             []int     `json:"ports"`
	AMTVersion        string    `json:"amt_version,omitempty"`
	ProvisioningState string    `json:"provisioning_state,omitempty"` // pre, in, post
	Method            string    `json:"method"`                       // rmcp, http, wsman
	ScanID            string    `json:"scan_id"`
	SeenAt            time.Time `json:"seen_at"`
}

func (*DeviceDiscovered) EventType() string { return TypeDeviceDiscovered }

// Key is the UUID when known, else ip-a-b-c-d.
func (d *DeviceDiscovered) Key() string {
	if d.UUID != "" {
		return d.UUID
	}
	return "ip-" + strings.NewReplacer(".", "-", ":", "-").Replace(d.IP)
}
func (d *DeviceDiscovered) OccurredAt() time.Time { return d.SeenAt }

// ProvisioningEvent is which provisioning event a Provisioning body is.
type ProvisioningEvent string

// Provisioning events.
const (
	ProvisioningStarted   ProvisioningEvent = "started"
	ProvisioningStep      ProvisioningEvent = "step"
	ProvisioningSucceeded ProvisioningEvent = "succeeded"
	ProvisioningFailed    ProvisioningEvent = "failed"
)

// Provisioning reports progress of one provisioning job. It never carries a
// secret.
type Provisioning struct {
	Event       ProvisioningEvent `json:"-"`
	UUID        string            `json:"uuid"`
	JobID       string            `json:"job_id"`
	Attempt     int               `json:"attempt"`
	Profile     string            `json:"profile"`
	Step        string            `json:"step,omitempty"`
	Outcome     string            `json:"outcome,omitempty"`
	ReturnValue *int              `json:"return_value,omitempty"`
	ErrorCode   string            `json:"error_code,omitempty"`
	Hint        string            `json:"hint,omitempty"`
	At          time.Time         `json:"at"`
	// Device is what the device reported when it was verified after
	// CommitChanges (succeeded events only).
	Device *ProvisionedDevice `json:"device,omitempty"`
}

// ProvisionedDevice is the configuration a provisioned device reported when
// the provisioner verified it: what inventory records as its capability and
// identification. No secret.
type ProvisionedDevice struct {
	AMTVersion    string `json:"amt_version,omitempty"`
	ControlMode   string `json:"control_mode"` // none, ccm, acm
	TLSEnabled    bool   `json:"tls_enabled"`
	SOL           bool   `json:"sol"`
	IDER          bool   `json:"ider"`
	KVM           bool   `json:"kvm"`
	Hostname      string `json:"hostname,omitempty"`
	Domain        string `json:"domain,omitempty"`
	TLSCertSHA256 string `json:"tls_cert_sha256,omitempty"` // fingerprint of the device's TLS certificate (public)
}

func (p *Provisioning) EventType() string {
	switch p.Event {
	case ProvisioningStarted:
		return TypeProvisioningStarted
	case ProvisioningStep:
		return TypeProvisioningStep
	case ProvisioningSucceeded:
		return TypeProvisioningSucceeded
	case ProvisioningFailed:
		return TypeProvisioningFailed
	}
	return "io.amtprov.provisioning." + string(p.Event) + ".v1"
}
func (p *Provisioning) Key() string           { return p.UUID }
func (p *Provisioning) OccurredAt() time.Time { return p.At }

// CertIssued reports a certificate issued by certauthority.
type CertIssued struct {
	UUID              string    `json:"uuid"`
	Serial            string    `json:"serial"`
	FingerprintSHA256 string    `json:"fingerprint_sha256"`
	NotBefore         time.Time `json:"not_before"`
	NotAfter          time.Time `json:"not_after"`
	Purpose           string    `json:"purpose"`
}

func (*CertIssued) EventType() string       { return TypeCertIssued }
func (c *CertIssued) Key() string           { return c.UUID }
func (c *CertIssued) OccurredAt() time.Time { return c.NotBefore }
