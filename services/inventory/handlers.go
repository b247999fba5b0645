package inventory

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/services/inventory/internal/record"
)

// handler turns one event into the update it implies for one device. It
// returns (nil, nil) for an event that says nothing the inventory can key
// by device (e.g. a discovery of an IP whose UUID is not known yet), and an
// error wrapping events.ErrInvalid for an event whose content is unusable,
// so that the consumer terminates it instead of retrying it forever.
type handler func(env events.Envelope, p events.Payload) (*record.Update, error)

// handlers is the table of event types the inventory applies, keyed by
// ce-type. A new event type is a new row here, not a new branch elsewhere.
// Types without a row are acknowledged and counted as ignored:
// cert.issued has no inventory table until the certauthority issue adds
// `certificates`.
func handlers() map[string]handler {
	return map[string]handler{
		events.TypeDeviceHello:           onHello,
		events.TypeDeviceDiscovered:      onDiscovered,
		events.TypeProvisioningStarted:   onProvisioning,
		events.TypeProvisioningStep:      onProvisioning,
		events.TypeProvisioningSucceeded: onProvisioning,
		events.TypeProvisioningFailed:    onProvisioning,
	}
}

func invalid(env events.Envelope, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s: %s", events.ErrInvalid, env.Type, env.ID, fmt.Sprintf(format, args...))
}

// mark is the ordering key of an event's facts: its time at the database's
// microsecond precision (so that in-memory merging agrees with SQL), then
// its id.
func mark(env events.Envelope, p events.Payload) (record.Mark, error) {
	t := p.OccurredAt()
	if t.IsZero() {
		return record.Mark{}, invalid(env, "no event time")
	}
	return record.Mark{At: t.UTC().Truncate(time.Microsecond), EventID: env.ID}, nil
}

func canonicalUUID(env events.Envelope, s string) (string, error) {
	u, err := amt.ParseUUID(s)
	if err != nil {
		return "", invalid(env, "%v", err)
	}
	if u.IsZero() {
		return "", invalid(env, "all-zero uuid")
	}
	return u.String(), nil
}

func canonicalIP(env events.Envelope, s string) (string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", invalid(env, "ip: %v", err)
	}
	return a.Unmap().WithZone("").String(), nil
}

// onHello: the device exists, is in provisioning (setup mode, PROTOCOL.md
// §2.1/§3), trusts these root hashes, and was heard from this address.
func onHello(env events.Envelope, p events.Payload) (*record.Update, error) {
	h, ok := p.(*events.DeviceHello)
	if !ok {
		return nil, invalid(env, "body is %T", p)
	}
	m, err := mark(env, p)
	if err != nil {
		return nil, err
	}
	id, err := canonicalUUID(env, h.UUID)
	if err != nil {
		return nil, err
	}
	ip, err := canonicalIP(env, h.SourceIP)
	if err != nil {
		return nil, err
	}
	if h.InterfaceVersion < 1 || h.InterfaceVersion > 0xffff {
		return nil, invalid(env, "interface version %d out of range", h.InterfaceVersion)
	}
	hashes := make([]record.RootHash, 0, len(h.RootHashes))
	for _, rh := range h.RootHashes {
		v, err := amt.ParseRootHash(rh.Alg + ":" + rh.Hex)
		if err != nil {
			return nil, invalid(env, "%v", err)
		}
		hashes = append(hashes, record.RootHash{Alg: v.Alg.String(), Hex: v.Hex()})
	}
	u := record.Seen(id, m.At)
	u.Hello = &record.Hello{Mark: m, InterfaceVersion: h.InterfaceVersion,
		AdminCredentialsSet: h.AdminCredentialsSet, RootHashes: hashes}
	u.State = &record.State{Mark: m, State: amt.InProvisioning.String()}
	u.Addr = &record.Addr{Mark: m, IP: ip}
	u.LastHelloAt, u.LocationSeen = m.At, m.At
	return &u, nil
}

// onDiscovered: a scan found the device at an address, with these ports
// open and, when it could tell, this firmware version and state.
func onDiscovered(env events.Envelope, p events.Payload) (*record.Update, error) {
	d, ok := p.(*events.DeviceDiscovered)
	if !ok {
		return nil, invalid(env, "body is %T", p)
	}
	if d.UUID == "" {
		return nil, nil // keyed by IP only: no device row to attach it to yet
	}
	m, err := mark(env, p)
	if err != nil {
		return nil, err
	}
	id, err := canonicalUUID(env, d.UUID)
	if err != nil {
		return nil, err
	}
	ip, err := canonicalIP(env, d.IP)
	if err != nil {
		return nil, err
	}
	ports := make([]int, 0, len(d.Ports))
	for _, port := range d.Ports {
		if port < 1 || port > 0xffff {
			return nil, invalid(env, "port %d out of range", port)
		}
		ports = append(ports, port)
	}
	u := record.Seen(id, m.At)
	u.Addr = &record.Addr{Mark: m, IP: ip}
	u.LocationSeen = m.At
	u.Ports = &record.Ports{Mark: m, Ports: ports}
	u.Stale = &record.Stale{Mark: m, Stale: false} // it answered
	if d.AMTVersion != "" {
		u.Version = &record.Version{Mark: m, AMTVersion: d.AMTVersion}
	}
	if d.ProvisioningState != "" {
		s, err := amt.ParseProvisioningState(d.ProvisioningState)
		if err != nil {
			return nil, invalid(env, "%v", err)
		}
		u.State = &record.State{Mark: m, State: s.String()}
	}
	return &u, nil
}

// provisioningStates maps a provisioning event to the state the read API
// shows in DEVICE.provisioning.state.
var provisioningStates = map[events.ProvisioningEvent]string{
	events.ProvisioningStarted:   "started",
	events.ProvisioningStep:      "running",
	events.ProvisioningSucceeded: "succeeded",
	events.ProvisioningFailed:    "failed",
}

// onProvisioning records the latest provisioning event; a success also
// means the device left setup mode (provisioning state "post").
func onProvisioning(env events.Envelope, p events.Payload) (*record.Update, error) {
	e, ok := p.(*events.Provisioning)
	if !ok {
		return nil, invalid(env, "body is %T", p)
	}
	m, err := mark(env, p)
	if err != nil {
		return nil, err
	}
	id, err := canonicalUUID(env, e.UUID)
	if err != nil {
		return nil, err
	}
	state, ok := provisioningStates[e.Event]
	if !ok {
		return nil, invalid(env, "unknown provisioning event %q", e.Event)
	}
	if e.Attempt < 0 || e.Attempt > 1<<30 {
		return nil, invalid(env, "attempt %d out of range", e.Attempt)
	}
	u := record.Seen(id, m.At)
	u.Provisioning = &record.Provisioning{Mark: m, State: state, JobID: e.JobID, Attempt: e.Attempt,
		Profile: e.Profile, Step: e.Step, ErrorCode: e.ErrorCode}
	if e.Event == events.ProvisioningSucceeded {
		u.State = &record.State{Mark: m, State: amt.PostProvisioning.String()}
		if d := e.Device; d != nil {
			// What the provisioner read back from the device it verified.
			if d.AMTVersion != "" {
				u.Version = &record.Version{Mark: m, AMTVersion: d.AMTVersion}
			}
			switch d.ControlMode {
			case "none", "ccm", "acm":
			default:
				return nil, invalid(env, "control mode %q", d.ControlMode)
			}
			u.Config = &record.Config{Mark: m, ControlMode: d.ControlMode, TLSEnabled: d.TLSEnabled, SOL: d.SOL, IDER: d.IDER, KVM: d.KVM}
			if d.Hostname != "" || d.Domain != "" {
				u.Ident = &record.Ident{Mark: m, Hostname: d.Hostname, Domain: d.Domain}
			}
		}
	}
	return &u, nil
}
