package wsman

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/amtprov/amtprov/libs/amt"
)

// SoftwareIdentity is one CIM_SoftwareIdentity instance: InstanceID names
// the component (Flash, AMT, Sku, Build Number, ...), VersionString its
// value (PROTOCOL.md §10.1).
type SoftwareIdentity struct {
	InstanceID    string
	VersionString string
	IsEntity      bool
}

// SoftwareIdentities enumerates CIM_SoftwareIdentity.
func (c *Client) SoftwareIdentities(ctx context.Context) ([]SoftwareIdentity, error) {
	items, err := c.Enumerate(ctx, ClassSoftwareIdentity)
	if err != nil {
		return nil, err
	}
	out := make([]SoftwareIdentity, 0, len(items))
	for _, n := range items {
		d := decoder{n: n}
		s := SoftwareIdentity{InstanceID: d.required("InstanceID"), VersionString: d.str("VersionString"), IsEntity: d.bool("IsEntity")}
		if d.err != nil {
			return nil, fmt.Errorf("decode CIM_SoftwareIdentity from %s: %w", c.cfg.Address, d.err)
		}
		out = append(out, s)
	}
	return out, nil
}

// FirmwareVersion is what inventory records from the software identities.
type FirmwareVersion struct {
	// Version is the "AMT" instance, e.g. "16.1.25"; with Build it makes
	// the four-part version ("16.1.25.2124").
	Version string
	Build   string
	SKU     string
}

// Full is Version.Build when the build is known.
func (v FirmwareVersion) Full() string {
	if v.Build == "" || v.Build == "0" || strings.Count(v.Version, ".") >= 3 {
		return v.Version
	}
	return v.Version + "." + v.Build
}

// FirmwareVersionOf picks the version, build and SKU out of
// SoftwareIdentities (§6.3 step 1: the "AMT" instance is the version); ok
// is false when there is no "AMT" instance.
func FirmwareVersionOf(ids []SoftwareIdentity) (v FirmwareVersion, ok bool) {
	for _, s := range ids {
		switch s.InstanceID {
		case "AMT":
			v.Version, ok = s.VersionString, s.VersionString != ""
		case "Build Number":
			v.Build = s.VersionString
		case "Sku":
			v.SKU = s.VersionString
		}
	}
	return v, ok
}

// EthernetPortSettings is one AMT_EthernetPortSettings instance (wired
// port 0, wireless port 1 on most platforms).
type EthernetPortSettings struct {
	InstanceID             string
	ElementName            string
	MACAddress             string // as the device writes it: "a4-ae-12-3f-00-01"
	LinkIsUp               bool
	DHCPEnabled            bool
	IPAddress              string
	SubnetMask             string
	DefaultGateway         string
	PrimaryDNS             string
	SecondaryDNS           string
	PhysicalConnectionType int // 0 integrated LAN, 1 discrete LAN, 2 thunderbolt, 3 wireless
}

// MAC parses MACAddress; the all-zero address of an absent port is an error.
func (e EthernetPortSettings) MAC() (net.HardwareAddr, error) {
	m, err := net.ParseMAC(strings.ReplaceAll(e.MACAddress, "-", ":"))
	if err != nil {
		return nil, fmt.Errorf("MAC address of %s: %w", e.InstanceID, err)
	}
	for _, b := range m {
		if b != 0 {
			return m, nil
		}
	}
	return nil, fmt.Errorf("MAC address of %s is all zeros", e.InstanceID)
}

// EthernetPortSettings enumerates AMT_EthernetPortSettings.
func (c *Client) EthernetPortSettings(ctx context.Context) ([]EthernetPortSettings, error) {
	items, err := c.Enumerate(ctx, ClassEthernetPortSettings)
	if err != nil {
		return nil, err
	}
	out := make([]EthernetPortSettings, 0, len(items))
	for _, n := range items {
		d := decoder{n: n}
		e := EthernetPortSettings{
			InstanceID:             d.required("InstanceID"),
			ElementName:            d.str("ElementName"),
			MACAddress:             d.str("MACAddress"),
			LinkIsUp:               d.bool("LinkIsUp"),
			DHCPEnabled:            d.bool("DHCPEnabled"),
			IPAddress:              d.str("IPAddress"),
			SubnetMask:             d.str("SubnetMask"),
			DefaultGateway:         d.str("DefaultGateway"),
			PrimaryDNS:             d.str("PrimaryDNS"),
			SecondaryDNS:           d.str("SecondaryDNS"),
			PhysicalConnectionType: int(d.optInt("PhysicalConnectionType")),
		}
		if d.err != nil {
			return nil, fmt.Errorf("decode AMT_EthernetPortSettings from %s: %w", c.cfg.Address, d.err)
		}
		out = append(out, e)
	}
	return out, nil
}

// ComputerSystemPackage is CIM_ComputerSystemPackage: PlatformGUID is the
// SMBIOS UUID as 32 hex digits in wire (SMBIOS) byte order, the same bytes
// GetUuid returns.
type ComputerSystemPackage struct {
	PlatformGUID string
	UUID         amt.UUID
}

// ComputerSystemPackage reads CIM_ComputerSystemPackage and decodes
// PlatformGUID into the device UUID (discovery identifies devices by it).
func (c *Client) ComputerSystemPackage(ctx context.Context) (ComputerSystemPackage, error) {
	n, err := c.Get(ctx, ClassComputerSystemPackage)
	if err != nil {
		return ComputerSystemPackage{}, err
	}
	g := n.String("PlatformGUID")
	u, err := PlatformGUIDToUUID(g)
	if err != nil {
		return ComputerSystemPackage{}, fmt.Errorf("decode CIM_ComputerSystemPackage from %s: %w", c.cfg.Address, err)
	}
	return ComputerSystemPackage{PlatformGUID: g, UUID: u}, nil
}

// PlatformGUIDToUUID reads a PlatformGUID (32 hex digits, SMBIOS byte
// order, e.g. fixture cim/computer/systempackage/get.xml) as a UUID.
func PlatformGUIDToUUID(g string) (amt.UUID, error) {
	var u amt.UUID
	raw, err := hex.DecodeString(strings.TrimSpace(g))
	if err != nil || len(raw) != len(u) {
		return u, fmt.Errorf("%w: PlatformGUID %q is not 32 hex digits", ErrMalformedResponse, truncate(g, 40))
	}
	copy(u[:], raw)
	return u, nil
}

// HostBasedSetupService is IPS_HostBasedSetupService (PROTOCOL.md §2.3).
type HostBasedSetupService struct {
	CurrentControlMode  amt.ControlMode
	AllowedControlModes []int
	ConfigurationNonce  []byte
	CertChainStatus     int
}

// HostBasedSetupService reads IPS_HostBasedSetupService (control mode:
// discovery reads it to tell CCM from ACM).
func (c *Client) HostBasedSetupService(ctx context.Context) (HostBasedSetupService, error) {
	n, err := c.Get(ctx, ClassHostBasedSetup)
	if err != nil {
		return HostBasedSetupService{}, err
	}
	d := decoder{n: n}
	h := HostBasedSetupService{
		CurrentControlMode: amt.ControlMode(d.int("CurrentControlMode")),
		CertChainStatus:    int(d.optInt("CertChainStatus")),
	}
	for _, v := range n.Values("AllowedControlModes") {
		m, err := strconv.Atoi(v)
		if err != nil && d.err == nil {
			d.err = fmt.Errorf("%w: AllowedControlModes %q", ErrMalformedResponse, truncate(v, 20))
		}
		h.AllowedControlModes = append(h.AllowedControlModes, m)
	}
	if nonce := d.str("ConfigurationNonce"); nonce != "" && d.err == nil {
		b, err := base64.StdEncoding.DecodeString(nonce)
		if err != nil {
			d.err = fmt.Errorf("%w: ConfigurationNonce is not base64", ErrMalformedResponse)
		}
		h.ConfigurationNonce = b
	}
	if d.err != nil {
		return HostBasedSetupService{}, fmt.Errorf("decode IPS_HostBasedSetupService from %s: %w", c.cfg.Address, d.err)
	}
	return h, nil
}
