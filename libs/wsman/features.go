package wsman

import (
	"context"
	"fmt"
	"strconv"
)

// Classes of the redirection features (PROTOCOL.md §7.7).
const (
	ClassRedirectionService = "AMT_RedirectionService"
	ClassKVMRedirectionSAP  = "CIM_KVMRedirectionSAP"
	ClassOptInService       = "IPS_OptInService"
)

// AMT_RedirectionService.RequestStateChange values (§2.5).
const (
	RedirectionDisabled = 32768 // IDER and SOL off
	RedirectionIDER     = 32769 // IDER on, SOL off
	RedirectionSOL      = 32770 // SOL on, IDER off
	RedirectionIDERSOL  = 32771 // both on
)

// RedirectionState is the RequestStateChange value for the wanted features.
func RedirectionState(sol, ider bool) int {
	s := RedirectionDisabled
	if ider {
		s |= 1
	}
	if sol {
		s |= 2
	}
	return s
}

// CIM_KVMRedirectionSAP.RequestStateChange values (§2.5).
const (
	KVMEnable  = 2
	KVMDisable = 3
)

// IPS_OptInService.OptInRequired values (§2.5).
const (
	OptInNone uint32 = 0
	OptInKVM  uint32 = 1
	OptInAll  uint32 = 4294967295
)

// RedirectionService is AMT_RedirectionService.
type RedirectionService struct {
	CreationClassName       string
	ElementName             string
	Name                    string
	SystemCreationClassName string
	SystemName              string
	EnabledState            int
	ListenerEnabled         bool
}

// SOL and IDER report the features EnabledState turns on.
func (r RedirectionService) SOL() bool  { return r.EnabledState&^RedirectionDisabled&2 != 0 }
func (r RedirectionService) IDER() bool { return r.EnabledState&^RedirectionDisabled&1 != 0 }

func decodeRedirection(n *Node) (RedirectionService, error) {
	d := decoder{n: n}
	r := RedirectionService{
		CreationClassName:       d.str("CreationClassName"),
		ElementName:             d.str("ElementName"),
		Name:                    d.str("Name"),
		SystemCreationClassName: d.str("SystemCreationClassName"),
		SystemName:              d.str("SystemName"),
		EnabledState:            int(d.int("EnabledState")),
		ListenerEnabled:         d.bool("ListenerEnabled"),
	}
	return r, d.err
}

// RedirectionService reads AMT_RedirectionService.
func (c *Client) RedirectionService(ctx context.Context) (RedirectionService, error) {
	n, err := c.Get(ctx, ClassRedirectionService)
	if err != nil {
		return RedirectionService{}, err
	}
	r, err := decodeRedirection(n)
	if err != nil {
		return RedirectionService{}, fmt.Errorf("decode AMT_RedirectionService from %s: %w", c.cfg.Address, err)
	}
	return r, nil
}

// RequestRedirectionStateChange enables SOL/IDER (RedirectionState, §7.7).
func (c *Client) RequestRedirectionStateChange(ctx context.Context, state int) error {
	if state < RedirectionDisabled || state > RedirectionIDERSOL {
		return fmt.Errorf("redirection state change on %s: state %d not in 32768-32771: %w", c.cfg.Address, state, ErrInvalidArgument)
	}
	_, err := c.Invoke(ctx, ClassRedirectionService, "RequestStateChange", []Property{Prop("RequestedState", strconv.Itoa(state))})
	return err
}

// PutRedirectionService writes r (ListenerEnabled = SOL || IDER || KVM,
// §7.7) and returns what the device answers.
func (c *Client) PutRedirectionService(ctx context.Context, r RedirectionService) (RedirectionService, error) {
	props := []Property{
		Prop("CreationClassName", r.CreationClassName),
		Prop("ElementName", r.ElementName),
		PropInt("EnabledState", int64(r.EnabledState)),
		PropBool("ListenerEnabled", r.ListenerEnabled),
		Prop("Name", r.Name),
		Prop("SystemCreationClassName", r.SystemCreationClassName),
		Prop("SystemName", r.SystemName),
	}
	n, err := c.Put(ctx, ClassRedirectionService, props)
	if err != nil {
		return RedirectionService{}, err
	}
	if n == nil {
		return r, nil // empty PutResponse: the device took what we sent
	}
	out, err := decodeRedirection(n)
	if err != nil {
		return RedirectionService{}, fmt.Errorf("decode AMT_RedirectionService Put answer from %s: %w", c.cfg.Address, err)
	}
	return out, nil
}

// KVMRedirectionSAP is CIM_KVMRedirectionSAP: EnabledState 2 enabled, 3
// disabled, 6 enabled but offline (redirection listener off).
type KVMRedirectionSAP struct {
	EnabledState   int
	RequestedState int
}

// KVMRedirectionSAP reads CIM_KVMRedirectionSAP.
func (c *Client) KVMRedirectionSAP(ctx context.Context) (KVMRedirectionSAP, error) {
	n, err := c.Get(ctx, ClassKVMRedirectionSAP)
	if err != nil {
		return KVMRedirectionSAP{}, err
	}
	d := decoder{n: n}
	k := KVMRedirectionSAP{EnabledState: int(d.int("EnabledState")), RequestedState: int(d.optInt("RequestedState"))}
	if d.err != nil {
		return KVMRedirectionSAP{}, fmt.Errorf("decode CIM_KVMRedirectionSAP from %s: %w", c.cfg.Address, d.err)
	}
	return k, nil
}

// RequestKVMStateChange enables (KVMEnable) or disables (KVMDisable) KVM
// (§7.7). Its ReturnValue follows the CIM table, not the PT one.
func (c *Client) RequestKVMStateChange(ctx context.Context, state int) error {
	if state != KVMEnable && state != KVMDisable {
		return fmt.Errorf("KVM state change on %s: state %d is neither 2 nor 3: %w", c.cfg.Address, state, ErrInvalidArgument)
	}
	_, err := c.Invoke(ctx, ClassKVMRedirectionSAP, "RequestStateChange", []Property{Prop("RequestedState", strconv.Itoa(state))})
	return err
}

// OptInService is IPS_OptInService (user consent, §7.7).
type OptInService struct {
	CreationClassName       string
	ElementName             string
	Name                    string
	SystemCreationClassName string
	SystemName              string
	OptInRequired           uint32
	OptInState              int
	CanModifyOptInPolicy    int
	OptInCodeTimeout        int
	OptInDisplayTimeout     int
}

func decodeOptIn(n *Node) (OptInService, error) {
	d := decoder{n: n}
	o := OptInService{
		CreationClassName:       d.str("CreationClassName"),
		ElementName:             d.str("ElementName"),
		Name:                    d.str("Name"),
		SystemCreationClassName: d.str("SystemCreationClassName"),
		SystemName:              d.str("SystemName"),
		OptInState:              int(d.optInt("OptInState")),
		CanModifyOptInPolicy:    int(d.optInt("CanModifyOptInPolicy")),
		OptInCodeTimeout:        int(d.optInt("OptInCodeTimeout")),
		OptInDisplayTimeout:     int(d.optInt("OptInDisplayTimeout")),
	}
	req := d.int("OptInRequired")
	if d.err == nil && (req < 0 || req > int64(OptInAll)) {
		d.err = fmt.Errorf("%w: OptInRequired %d out of range", ErrMalformedResponse, req)
	}
	o.OptInRequired = uint32(req)
	return o, d.err
}

// OptInService reads IPS_OptInService.
func (c *Client) OptInService(ctx context.Context) (OptInService, error) {
	n, err := c.Get(ctx, ClassOptInService)
	if err != nil {
		return OptInService{}, err
	}
	o, err := decodeOptIn(n)
	if err != nil {
		return OptInService{}, fmt.Errorf("decode IPS_OptInService from %s: %w", c.cfg.Address, err)
	}
	return o, nil
}

// PutOptInService writes o (OptInRequired: OptInNone, OptInKVM, OptInAll).
func (c *Client) PutOptInService(ctx context.Context, o OptInService) (OptInService, error) {
	props := []Property{
		PropInt("CanModifyOptInPolicy", int64(o.CanModifyOptInPolicy)),
		Prop("CreationClassName", o.CreationClassName),
		Prop("ElementName", o.ElementName),
		Prop("Name", o.Name),
		PropInt("OptInCodeTimeout", int64(o.OptInCodeTimeout)),
		PropInt("OptInDisplayTimeout", int64(o.OptInDisplayTimeout)),
		PropInt("OptInRequired", int64(o.OptInRequired)),
		PropInt("OptInState", int64(o.OptInState)),
		Prop("SystemCreationClassName", o.SystemCreationClassName),
		Prop("SystemName", o.SystemName),
	}
	n, err := c.Put(ctx, ClassOptInService, props)
	if err != nil {
		return OptInService{}, err
	}
	if n == nil {
		return o, nil // empty PutResponse: the device took what we sent
	}
	out, err := decodeOptIn(n)
	if err != nil {
		return OptInService{}, fmt.Errorf("decode IPS_OptInService Put answer from %s: %w", c.cfg.Address, err)
	}
	return out, nil
}
