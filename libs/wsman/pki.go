package wsman

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
)

// Classes of the certificate store and TLS configuration (PROTOCOL.md
// §6.3 step 5, §7.6).
const (
	ClassPublicKeyManagement     = "AMT_PublicKeyManagementService"
	ClassPublicKeyCertificate    = "AMT_PublicKeyCertificate"
	ClassPublicPrivateKeyPair    = "AMT_PublicPrivateKeyPair"
	ClassTLSCredentialContext    = "AMT_TLSCredentialContext"
	ClassTLSSettingData          = "AMT_TLSSettingData"
	ClassTLSProtocolEndpointColl = "AMT_TLSProtocolEndpointCollection"

	// TLSRemoteInstanceID is the network (802.3) interface's TLS settings,
	// the one remote configuration enables; TLSLocalInstanceID the LMS one.
	TLSRemoteInstanceID = "Intel(r) AMT 802.3 TLS Settings"
	TLSLocalInstanceID  = "Intel(r) AMT LMS TLS Settings"
	// TLSEndpointCollection is the ElementName of the
	// AMT_TLSProtocolEndpointCollection instance, as MeshCentral and
	// go-wsman-messages send it in the credential context (§7.6 [C]:
	// firmware echoes "TLSProtocolEndpoint Instances Collection").
	TLSEndpointCollection = "TLSProtocolEndpointInstances Collection"

	// KeyAlgorithmRSA and KeyLength2048 are the only GenerateKeyPair
	// arguments firmware takes (§2.5).
	KeyAlgorithmRSA = 0
	KeyLength2048   = 2048
)

// GenerateKeyPair makes a key pair on the device (§2.5: RSA 2048) and
// returns the reference to the new AMT_PublicPrivateKeyPair (its
// InstanceID selector, e.g. "Intel(r) AMT Key: Handle: 0").
func (c *Client) GenerateKeyPair(ctx context.Context, algorithm, length int) (EPR, error) {
	out, err := c.Invoke(ctx, ClassPublicKeyManagement, "GenerateKeyPair", []Property{
		PropInt("KeyAlgorithm", int64(algorithm)), PropInt("KeyLength", int64(length)),
	})
	if err != nil {
		return EPR{}, err
	}
	return outputEPR(c, out, "GenerateKeyPair", "KeyPair")
}

// AddCertificate stores a certificate (DER) whose key pair is on the
// device and returns the reference to the new AMT_PublicKeyCertificate.
func (c *Client) AddCertificate(ctx context.Context, der []byte) (EPR, error) {
	return c.addCert(ctx, "AddCertificate", der)
}

// AddTrustedRootCertificate stores a CA certificate (DER) as trusted root.
func (c *Client) AddTrustedRootCertificate(ctx context.Context, der []byte) (EPR, error) {
	return c.addCert(ctx, "AddTrustedRootCertificate", der)
}

func (c *Client) addCert(ctx context.Context, method string, der []byte) (EPR, error) {
	if len(der) == 0 {
		return EPR{}, fmt.Errorf("%s on %s: empty certificate: %w", method, c.cfg.Address, ErrInvalidArgument)
	}
	out, err := c.Invoke(ctx, ClassPublicKeyManagement, method, []Property{
		Prop("CertificateBlob", base64.StdEncoding.EncodeToString(der)),
	})
	if err != nil {
		return EPR{}, err
	}
	return outputEPR(c, out, method, "CreatedCertificate")
}

func outputEPR(c *Client, out *MethodOutput, method, param string) (EPR, error) {
	e, err := out.Node.Child(param).EPR()
	if err != nil {
		return EPR{}, fmt.Errorf("%s on %s: output %s: %w", method, c.cfg.Address, param, err)
	}
	if e.Selector("InstanceID") == "" {
		return EPR{}, fmt.Errorf("%s on %s: output %s: %w: no InstanceID selector", method, c.cfg.Address, param, ErrMalformedResponse)
	}
	return e, nil
}

// KeyPair is one AMT_PublicPrivateKeyPair. DERKey is the public key as
// firmware gives it: the recorded fixture and amtsim hold the PKCS#1
// RSAPublicKey (PROTOCOL.md §6.3 says SubjectPublicKeyInfo; parse both).
type KeyPair struct {
	InstanceID  string
	ElementName string
	DERKey      []byte
}

// KeyPairs enumerates AMT_PublicPrivateKeyPair.
func (c *Client) KeyPairs(ctx context.Context) ([]KeyPair, error) {
	items, err := c.Enumerate(ctx, ClassPublicPrivateKeyPair)
	if err != nil {
		return nil, err
	}
	out := make([]KeyPair, 0, len(items))
	for _, n := range items {
		d := decoder{n: n}
		k := KeyPair{InstanceID: d.required("InstanceID"), ElementName: d.str("ElementName")}
		k.DERKey = d.base64("DERKey")
		if d.err != nil {
			return nil, fmt.Errorf("decode AMT_PublicPrivateKeyPair from %s: %w", c.cfg.Address, d.err)
		}
		out = append(out, k)
	}
	return out, nil
}

// base64 reads a required base64 property.
func (d *decoder) base64(local string) []byte {
	v := d.required(local)
	if d.err != nil {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(v), ""))
	if err != nil {
		d.err = fmt.Errorf("%w: %s.%s is not base64", ErrMalformedResponse, d.n.localName(), local)
		return nil
	}
	return b
}

// PublicKeyCertificate is one AMT_PublicKeyCertificate.
type PublicKeyCertificate struct {
	InstanceID      string
	ElementName     string
	Issuer          string
	Subject         string
	TrustedRoot     bool
	X509Certificate []byte // DER
}

// PublicKeyCertificates enumerates AMT_PublicKeyCertificate.
func (c *Client) PublicKeyCertificates(ctx context.Context) ([]PublicKeyCertificate, error) {
	items, err := c.Enumerate(ctx, ClassPublicKeyCertificate)
	if err != nil {
		return nil, err
	}
	out := make([]PublicKeyCertificate, 0, len(items))
	for _, n := range items {
		d := decoder{n: n}
		p := PublicKeyCertificate{
			InstanceID:  d.required("InstanceID"),
			ElementName: d.str("ElementName"),
			Issuer:      d.str("Issuer"),
			Subject:     d.str("Subject"),
			// Firmware spells it TrustedRootCertficate (sic).
			TrustedRoot: d.bool("TrustedRootCertficate") || d.bool("TrustedRootCertificate"),
		}
		p.X509Certificate = d.base64("X509Certificate")
		if d.err != nil {
			return nil, fmt.Errorf("decode AMT_PublicKeyCertificate from %s: %w", c.cfg.Address, d.err)
		}
		out = append(out, p)
	}
	return out, nil
}

// TLSCredentialContext is one AMT_TLSCredentialContext: which certificate
// serves TLS (ElementInContext) for which endpoints.
type TLSCredentialContext struct {
	ElementInContext        EPR
	ElementProvidingContext EPR
}

// CertificateInstanceID is the InstanceID of the certificate in context.
func (t TLSCredentialContext) CertificateInstanceID() string {
	return t.ElementInContext.Selector("InstanceID")
}

func credentialContextProps(certInstanceID string) []Property {
	return []Property{
		PropRef("ElementInContext", InstanceRef(ClassPublicKeyCertificate, certInstanceID)),
		PropRef("ElementProvidingContext", EPR{
			ResourceURI: ResourceURI(ClassTLSProtocolEndpointColl),
			Selectors:   []Selector{{Name: "ElementName", Value: TLSEndpointCollection}},
		}),
	}
}

// CreateTLSCredentialContext makes the certificate certInstanceID (from
// AddCertificate) the device's TLS certificate (§6.3 step 5, §7.6); it
// takes effect at CommitChanges. It returns the new context's EPR.
func (c *Client) CreateTLSCredentialContext(ctx context.Context, certInstanceID string) (EPR, error) {
	if certInstanceID == "" {
		return EPR{}, fmt.Errorf("create TLS credential context on %s: empty certificate InstanceID: %w", c.cfg.Address, ErrInvalidArgument)
	}
	return c.Create(ctx, ClassTLSCredentialContext, credentialContextProps(certInstanceID))
}

// PutTLSCredentialContext replaces the certificate of the existing context
// (MeshCentral's path when one exists, §6.3 step 5). Pass the context as
// enumerated by TLSCredentialContexts: its two references become the
// header selectors that name the instance (AMT_TLSCredentialContext is
// keyed by them); without it no selector is sent, which firmware accepts
// only because there is at most one context.
func (c *Client) PutTLSCredentialContext(ctx context.Context, certInstanceID string, existing ...TLSCredentialContext) error {
	if certInstanceID == "" {
		return fmt.Errorf("put TLS credential context on %s: empty certificate InstanceID: %w", c.cfg.Address, ErrInvalidArgument)
	}
	var sel []Selector
	if len(existing) > 0 {
		in, prov := existing[0].ElementInContext, existing[0].ElementProvidingContext
		sel = []Selector{{Name: "ElementInContext", Ref: &in}, {Name: "ElementProvidingContext", Ref: &prov}}
	}
	_, err := c.Put(ctx, ClassTLSCredentialContext, credentialContextProps(certInstanceID), sel...)
	return err
}

// TLSCredentialContexts enumerates AMT_TLSCredentialContext (none before
// TLS is configured).
func (c *Client) TLSCredentialContexts(ctx context.Context) ([]TLSCredentialContext, error) {
	items, err := c.Enumerate(ctx, ClassTLSCredentialContext)
	if err != nil {
		return nil, err
	}
	out := make([]TLSCredentialContext, 0, len(items))
	for _, n := range items {
		in, err := n.Child("ElementInContext").EPR()
		if err != nil {
			return nil, fmt.Errorf("decode AMT_TLSCredentialContext from %s: %w", c.cfg.Address, err)
		}
		prov, err := n.Child("ElementProvidingContext").EPR()
		if err != nil {
			return nil, fmt.Errorf("decode AMT_TLSCredentialContext from %s: %w", c.cfg.Address, err)
		}
		out = append(out, TLSCredentialContext{ElementInContext: in, ElementProvidingContext: prov})
	}
	return out, nil
}

// TLSSettingData is one AMT_TLSSettingData instance (§7.6).
type TLSSettingData struct {
	InstanceID                 string
	ElementName                string
	Enabled                    bool
	MutualAuthentication       bool
	AcceptNonSecureConnections bool
	TrustedCN                  []string
}

func decodeTLSSetting(n *Node) (TLSSettingData, error) {
	d := decoder{n: n}
	t := TLSSettingData{
		InstanceID:                 d.required("InstanceID"),
		ElementName:                d.str("ElementName"),
		Enabled:                    d.bool("Enabled"),
		MutualAuthentication:       d.bool("MutualAuthentication"),
		AcceptNonSecureConnections: d.bool("AcceptNonSecureConnections"),
		TrustedCN:                  n.Values("TrustedCN"),
	}
	return t, d.err
}

// TLSSettings enumerates AMT_TLSSettingData (802.3 and LMS instances).
func (c *Client) TLSSettings(ctx context.Context) ([]TLSSettingData, error) {
	items, err := c.Enumerate(ctx, ClassTLSSettingData)
	if err != nil {
		return nil, err
	}
	out := make([]TLSSettingData, 0, len(items))
	for _, n := range items {
		t, err := decodeTLSSetting(n)
		if err != nil {
			return nil, fmt.Errorf("decode AMT_TLSSettingData from %s: %w", c.cfg.Address, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// PutTLSSettingData writes t (selected by its InstanceID); it takes effect
// at CommitChanges (§7.6). An empty TrustedCN is left out, as MeshCentral
// removes it (§6.3 step 5).
func (c *Client) PutTLSSettingData(ctx context.Context, t TLSSettingData) (TLSSettingData, error) {
	if t.InstanceID == "" {
		return TLSSettingData{}, fmt.Errorf("put AMT_TLSSettingData on %s: empty InstanceID: %w", c.cfg.Address, ErrInvalidArgument)
	}
	if t.ElementName == "" {
		t.ElementName = t.InstanceID
	}
	props := []Property{
		PropBool("AcceptNonSecureConnections", t.AcceptNonSecureConnections),
		Prop("ElementName", t.ElementName),
		PropBool("Enabled", t.Enabled),
		Prop("InstanceID", t.InstanceID),
		PropBool("MutualAuthentication", t.MutualAuthentication),
	}
	if len(t.TrustedCN) > 0 {
		props = append(props, PropList("TrustedCN", t.TrustedCN...))
	}
	n, err := c.Put(ctx, ClassTLSSettingData, props, Selector{Name: "InstanceID", Value: t.InstanceID})
	if err != nil {
		return TLSSettingData{}, err
	}
	if n == nil {
		return t, nil // empty PutResponse: the device took what we sent
	}
	out, err := decodeTLSSetting(n)
	if err != nil {
		return TLSSettingData{}, fmt.Errorf("decode AMT_TLSSettingData Put answer from %s: %w", c.cfg.Address, err)
	}
	return out, nil
}
