package wsman

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/amtprov/amtprov/libs/amt"
)

// Class names used by the typed calls.
const (
	ClassGeneralSettings       = "AMT_GeneralSettings"
	ClassSetupAndConfiguration = "AMT_SetupAndConfigurationService"
	ClassAuthorization         = "AMT_AuthorizationService"
	ClassTimeSynchronization   = "AMT_TimeSynchronizationService"
	ClassSoftwareIdentity      = "CIM_SoftwareIdentity"
	ClassHostBasedSetup        = "IPS_HostBasedSetupService"
	ClassComputerSystemPackage = "CIM_ComputerSystemPackage"
	ClassEthernetPortSettings  = "AMT_EthernetPortSettings"
)

// GeneralSettings is AMT_GeneralSettings (PROTOCOL.md §7.5; fixture
// amt/general/get.xml). HostName and DomainName are what Put changes.
type GeneralSettings struct {
	InstanceID                    string
	ElementName                   string
	DigestRealm                   string
	HostName                      string
	DomainName                    string
	HostOSFQDN                    string
	AMTNetworkEnabled             int
	DDNSUpdateEnabled             bool
	DDNSUpdateByDHCPServerEnabled bool
	DDNSPeriodicUpdateInterval    int
	DDNSTTL                       int
	DHCPSyncRequiresHostname      int
	DHCPv6ConfigurationTimeout    int
	IdleWakeTimeout               int
	NetworkInterfaceEnabled       bool
	PingResponseEnabled           bool
	PowerSource                   int
	PreferredAddressFamily        int
	PresenceNotificationInterval  int
	PrivacyLevel                  int
	RmcpPingResponseEnabled       bool
	SharedFQDN                    bool
	ThunderboltDockEnabled        int
	WsmanOnlyMode                 bool
}

// decoder collects the first error of a run of typed reads.
type decoder struct {
	n   *Node
	err error
}

func (d *decoder) str(local string) string { return d.n.String(local) }

func (d *decoder) required(local string) string {
	v, ok := d.n.Value(local)
	if !ok && d.err == nil {
		d.err = fmt.Errorf("%w: %s has no %s", ErrMalformedResponse, d.n.localName(), local)
	}
	return v
}

// optInt reads an integer that may be absent (0 then).
func (d *decoder) optInt(local string) int64 {
	if _, ok := d.n.Value(local); !ok {
		return 0
	}
	return d.int(local)
}

func (d *decoder) int(local string) int64 {
	v, err := d.n.Int(local)
	if err != nil && d.err == nil {
		d.err = err
	}
	return v
}

func (d *decoder) bool(local string) bool {
	v, err := d.n.Bool(local)
	if err != nil && d.err == nil {
		d.err = err
	}
	return v
}

func decodeGeneralSettings(n *Node) (GeneralSettings, error) {
	d := decoder{n: n}
	g := GeneralSettings{
		InstanceID:                    d.str("InstanceID"),
		ElementName:                   d.str("ElementName"),
		DigestRealm:                   d.required("DigestRealm"),
		HostName:                      d.str("HostName"),
		DomainName:                    d.str("DomainName"),
		HostOSFQDN:                    d.str("HostOSFQDN"),
		AMTNetworkEnabled:             int(d.optInt("AMTNetworkEnabled")),
		DDNSUpdateEnabled:             d.bool("DDNSUpdateEnabled"),
		DDNSUpdateByDHCPServerEnabled: d.bool("DDNSUpdateByDHCPServerEnabled"),
		DDNSPeriodicUpdateInterval:    int(d.optInt("DDNSPeriodicUpdateInterval")),
		DDNSTTL:                       int(d.optInt("DDNSTTL")),
		DHCPSyncRequiresHostname:      int(d.optInt("DHCPSyncRequiresHostname")),
		DHCPv6ConfigurationTimeout:    int(d.optInt("DHCPv6ConfigurationTimeout")),
		IdleWakeTimeout:               int(d.optInt("IdleWakeTimeout")),
		NetworkInterfaceEnabled:       d.bool("NetworkInterfaceEnabled"),
		PingResponseEnabled:           d.bool("PingResponseEnabled"),
		PowerSource:                   int(d.optInt("PowerSource")),
		PreferredAddressFamily:        int(d.optInt("PreferredAddressFamily")),
		PresenceNotificationInterval:  int(d.optInt("PresenceNotificationInterval")),
		PrivacyLevel:                  int(d.optInt("PrivacyLevel")),
		RmcpPingResponseEnabled:       d.bool("RmcpPingResponseEnabled"),
		SharedFQDN:                    d.bool("SharedFQDN"),
		ThunderboltDockEnabled:        int(d.optInt("ThunderboltDockEnabled")),
		WsmanOnlyMode:                 d.bool("WsmanOnlyMode"),
	}
	return g, d.err
}

func (g GeneralSettings) properties() []Property {
	b := strconv.FormatBool
	i := strconv.Itoa
	return []Property{
		Prop("AMTNetworkEnabled", i(g.AMTNetworkEnabled)),
		Prop("DDNSPeriodicUpdateInterval", i(g.DDNSPeriodicUpdateInterval)),
		Prop("DDNSTTL", i(g.DDNSTTL)),
		Prop("DDNSUpdateByDHCPServerEnabled", b(g.DDNSUpdateByDHCPServerEnabled)),
		Prop("DDNSUpdateEnabled", b(g.DDNSUpdateEnabled)),
		Prop("DHCPSyncRequiresHostname", i(g.DHCPSyncRequiresHostname)),
		Prop("DHCPv6ConfigurationTimeout", i(g.DHCPv6ConfigurationTimeout)),
		Prop("DigestRealm", g.DigestRealm),
		Prop("DomainName", g.DomainName),
		Prop("ElementName", g.ElementName),
		Prop("HostName", g.HostName),
		Prop("HostOSFQDN", g.HostOSFQDN),
		Prop("IdleWakeTimeout", i(g.IdleWakeTimeout)),
		Prop("InstanceID", g.InstanceID),
		Prop("NetworkInterfaceEnabled", b(g.NetworkInterfaceEnabled)),
		Prop("PingResponseEnabled", b(g.PingResponseEnabled)),
		Prop("PowerSource", i(g.PowerSource)),
		Prop("PreferredAddressFamily", i(g.PreferredAddressFamily)),
		Prop("PresenceNotificationInterval", i(g.PresenceNotificationInterval)),
		Prop("PrivacyLevel", i(g.PrivacyLevel)),
		Prop("RmcpPingResponseEnabled", b(g.RmcpPingResponseEnabled)),
		Prop("SharedFQDN", b(g.SharedFQDN)),
		Prop("ThunderboltDockEnabled", i(g.ThunderboltDockEnabled)),
		Prop("WsmanOnlyMode", b(g.WsmanOnlyMode)),
	}
}

// GeneralSettings reads AMT_GeneralSettings (realm, host and domain name).
func (c *Client) GeneralSettings(ctx context.Context) (GeneralSettings, error) {
	n, err := c.Get(ctx, ClassGeneralSettings)
	if err != nil {
		return GeneralSettings{}, err
	}
	g, err := decodeGeneralSettings(n)
	if err != nil {
		return GeneralSettings{}, fmt.Errorf("decode AMT_GeneralSettings from %s: %w", c.cfg.Address, err)
	}
	return g, nil
}

// PutGeneralSettings writes g back, whole, as RPS does (§7.5: Get, change
// HostName/DomainName, Put), and returns what the device answers.
func (c *Client) PutGeneralSettings(ctx context.Context, g GeneralSettings) (GeneralSettings, error) {
	if g.InstanceID == "" {
		g.InstanceID = "Intel(r) AMT: General Settings"
	}
	n, err := c.Put(ctx, ClassGeneralSettings, g.properties(), Selector{Name: "InstanceID", Value: g.InstanceID})
	if err != nil {
		return GeneralSettings{}, err
	}
	if n == nil {
		return g, nil // empty PutResponse: the device took what we sent
	}
	out, err := decodeGeneralSettings(n)
	if err != nil {
		return GeneralSettings{}, fmt.Errorf("decode AMT_GeneralSettings Put answer from %s: %w", c.cfg.Address, err)
	}
	return out, nil
}

// SetupAndConfigurationService is AMT_SetupAndConfigurationService
// (PROTOCOL.md §2.2).
type SetupAndConfigurationService struct {
	ElementName                   string
	EnabledState                  int
	ProvisioningState             amt.ProvisioningState
	ProvisioningMode              int // 1 ACM, 4 CCM
	PasswordModel                 int
	ProvisioningServerOTP         []byte
	ZeroTouchConfigurationEnabled bool
}

// Provisioning modes of AMT_SetupAndConfigurationService (§2.2), also the
// argument of Unprovision (§7.8).
const (
	ProvisioningModeACM = 1
	ProvisioningModeCCM = 4
)

// SetupAndConfiguration reads AMT_SetupAndConfigurationService.
func (c *Client) SetupAndConfiguration(ctx context.Context) (SetupAndConfigurationService, error) {
	n, err := c.Get(ctx, ClassSetupAndConfiguration)
	if err != nil {
		return SetupAndConfigurationService{}, err
	}
	d := decoder{n: n}
	s := SetupAndConfigurationService{
		ElementName:                   d.str("ElementName"),
		EnabledState:                  int(d.optInt("EnabledState")),
		ProvisioningState:             amt.ProvisioningState(d.int("ProvisioningState")),
		ProvisioningMode:              int(d.optInt("ProvisioningMode")),
		PasswordModel:                 int(d.optInt("PasswordModel")),
		ZeroTouchConfigurationEnabled: d.bool("ZeroTouchConfigurationEnabled"),
	}
	if otp := d.str("ProvisioningServerOTP"); otp != "" && d.err == nil {
		b, err := base64.StdEncoding.DecodeString(otp)
		if err != nil {
			d.err = fmt.Errorf("%w: ProvisioningServerOTP is not base64", ErrMalformedResponse)
		}
		s.ProvisioningServerOTP = b
	}
	if d.err != nil {
		return SetupAndConfigurationService{}, fmt.Errorf("decode AMT_SetupAndConfigurationService from %s: %w", c.cfg.Address, d.err)
	}
	return s, nil
}

// SetMEBxPassword sets the MEBx password (§2.2; required before
// CommitChanges in remote configuration, §6.1 item 5). A refused password
// is a *ReturnError with Name INVALID_PASSWORD.
func (c *Client) SetMEBxPassword(ctx context.Context, password string) error {
	if password == "" {
		return fmt.Errorf("set MEBx password on %s: empty password: %w", c.cfg.Address, ErrInvalidArgument)
	}
	_, err := c.Invoke(ctx, ClassSetupAndConfiguration, "SetMEBxPassword", []Property{Prop("Password", password)})
	return err
}

// CommitChanges ends remote configuration (§6.3 step 6). It is one-shot:
// on ErrConnectionLost or a deadline, read SetupAndConfiguration back
// before calling again. After it, reconnect (the device may present a new
// TLS certificate, §7.3a).
func (c *Client) CommitChanges(ctx context.Context) error {
	_, err := c.Invoke(ctx, ClassSetupAndConfiguration, "CommitChanges", nil)
	return err
}

// Unprovision returns the device to pre-provisioning (§7.8); mode is
// ProvisioningModeACM (1) as RPS sends it.
func (c *Client) Unprovision(ctx context.Context, mode int) error {
	_, err := c.Invoke(ctx, ClassSetupAndConfiguration, "Unprovision", []Property{Prop("ProvisioningMode", strconv.Itoa(mode))})
	return err
}

// GetUUID asks the device for its UUID (base64 of the 16 SMBIOS-order
// bytes, fixture setupandconfiguration/getuuid.xml).
func (c *Client) GetUUID(ctx context.Context) (amt.UUID, error) {
	out, err := c.invoke(ctx, ClassSetupAndConfiguration, "GetUuid", nil, false)
	if err != nil {
		return amt.UUID{}, err
	}
	raw, err := base64.StdEncoding.DecodeString(out.Node.String("UUID"))
	if err != nil || len(raw) != len(amt.UUID{}) {
		return amt.UUID{}, fmt.Errorf("GetUuid on %s: %w: UUID is not base64 of 16 bytes", c.cfg.Address, ErrMalformedResponse)
	}
	var u amt.UUID
	copy(u[:], raw)
	return u, nil
}

// DigestPassword is the SetAdminAclEntryEx DigestPassword of a password:
// base64 of the raw MD5 of "user:realm:password" (PROTOCOL.md §7.4).
func DigestPassword(user, realm, password string) string {
	sum := md5.Sum([]byte(user + ":" + realm + ":" + password))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// DigestPasswordHex is the same hash as lower-case hex, the form
// IPS_HostBasedSetupService Setup/AdminSetup take (§7.2, §7.3).
func DigestPasswordHex(user, realm, password string) string {
	sum := md5.Sum([]byte(user + ":" + realm + ":" + password))
	return hex.EncodeToString(sum[:])
}

// SetAdminACLEntryEx sets the admin user and password (§6.3 step 3,
// §7.4): the password never leaves this process, only its digest hash.
// realm is GeneralSettings.DigestRealm. user must be 1-16 printable 7-bit
// ASCII characters.
func (c *Client) SetAdminACLEntryEx(ctx context.Context, user, realm, password string) error {
	if !validACLUser(user) {
		return fmt.Errorf("set admin ACL entry on %s: user name must be 1-16 printable ASCII characters: %w", c.cfg.Address, ErrInvalidArgument)
	}
	if realm == "" || password == "" {
		return fmt.Errorf("set admin ACL entry on %s: realm and password are required: %w", c.cfg.Address, ErrInvalidArgument)
	}
	_, err := c.Invoke(ctx, ClassAuthorization, "SetAdminAclEntryEx", []Property{
		Prop("Username", user),
		Prop("DigestPassword", DigestPassword(user, realm, password)),
	})
	return err
}

func validACLUser(u string) bool {
	if u == "" || len(u) > 16 {
		return false
	}
	for _, r := range u {
		if r < 0x21 || r > 0x7e || r == ':' {
			return false
		}
	}
	return true
}

// LowAccuracyTime is AMT_TimeSynchronizationService.GetLowAccuracyTimeSynch:
// the device clock Ta0 (§6.3 step 4).
func (c *Client) LowAccuracyTime(ctx context.Context) (time.Time, error) {
	out, err := c.Invoke(ctx, ClassTimeSynchronization, "GetLowAccuracyTimeSynch", nil)
	if err != nil {
		return time.Time{}, err
	}
	ta0, err := out.Node.Int("Ta0")
	if err != nil {
		return time.Time{}, fmt.Errorf("GetLowAccuracyTimeSynch on %s: %w", c.cfg.Address, err)
	}
	return time.Unix(ta0, 0), nil
}

// SetHighAccuracyTime is SetHighAccuracyTimeSynch(Ta0, Tm1, Tm2): ta0 as
// read from the device, tm1 our clock when we asked, tm2 our clock now
// (§6.3 step 4, RPS syncTime.ts). Times go as Unix seconds.
func (c *Client) SetHighAccuracyTime(ctx context.Context, ta0, tm1, tm2 time.Time) error {
	_, err := c.Invoke(ctx, ClassTimeSynchronization, "SetHighAccuracyTimeSynch", []Property{
		PropInt("Ta0", ta0.Unix()), PropInt("Tm1", tm1.Unix()), PropInt("Tm2", tm2.Unix()),
	})
	return err
}
