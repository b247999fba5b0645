package amt

import "fmt"

// ProvisioningState is AMT_SetupAndConfigurationService.ProvisioningState
// (PROTOCOL.md §2.2).
type ProvisioningState int

// Provisioning states.
const (
	PreProvisioning  ProvisioningState = 0
	InProvisioning   ProvisioningState = 1
	PostProvisioning ProvisioningState = 2
)

// String gives the API spelling: "pre", "in", "post".
func (s ProvisioningState) String() string {
	switch s {
	case PreProvisioning:
		return "pre"
	case InProvisioning:
		return "in"
	case PostProvisioning:
		return "post"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// ParseProvisioningState accepts "pre", "in", "post".
func ParseProvisioningState(s string) (ProvisioningState, error) {
	switch s {
	case "pre":
		return PreProvisioning, nil
	case "in":
		return InProvisioning, nil
	case "post":
		return PostProvisioning, nil
	}
	return 0, fmt.Errorf("unknown provisioning state %q (want pre, in or post)", s)
}

// ControlMode is the activation mode (IPS_HostBasedSetupService.CurrentControlMode, §2.3).
type ControlMode int

// Control modes.
const (
	ControlNone ControlMode = 0
	ControlCCM  ControlMode = 1
	ControlACM  ControlMode = 2
)

// String gives the API spelling: "none", "ccm", "acm".
func (m ControlMode) String() string {
	switch m {
	case ControlNone:
		return "none"
	case ControlCCM:
		return "ccm"
	case ControlACM:
		return "acm"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}
