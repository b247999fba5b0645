package provisioner

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/services/certauthority"
	"github.com/amtprov/amtprov/services/provisioner/internal/workflow"
)

// CASigner signs device certificates through certauthority (amt.v1.ca.sign).
type CASigner struct {
	Client *certauthority.Client
}

// caError carries the CA's refusal code to errcode.Classify.
type caError struct{ err *admin.Error }

func (e caError) Error() string  { return "certificate authority: " + e.err.Error() }
func (e caError) Unwrap() error  { return e.err }
func (e caError) CACode() string { return e.err.Code }

// SignDeviceCert implements workflow.Signer.
func (s CASigner) SignDeviceCert(ctx context.Context, r workflow.CertRequest) (workflow.Cert, error) {
	resp, err := s.Client.Sign(ctx, certauthority.SignRequest{UUID: r.UUID, FQDN: r.FQDN,
		PublicKey: base64.StdEncoding.EncodeToString(r.PublicKey), Purpose: "device-tls", ValidityDays: r.ValidityDays})
	if err != nil {
		var ae *admin.Error
		if errors.As(err, &ae) {
			return workflow.Cert{}, caError{ae}
		}
		return workflow.Cert{}, err
	}
	der, err := base64.StdEncoding.DecodeString(resp.Certificate)
	if err != nil {
		return workflow.Cert{}, fmt.Errorf("certificate authority answered a certificate that is not base64: %w", err)
	}
	return workflow.Cert{DER: der}, nil
}

// CADomains reads the provisioning domains from certauthority's table
// (keys decrypted with the keyring), cached for Refresh so a busy
// provisioner does not decrypt keys per device.
type CADomains struct {
	DB      certauthority.DB
	Keys    *secrets.Keyring
	Refresh time.Duration // default 10 s

	mu     sync.Mutex
	at     time.Time
	cached []workflow.Domain
}

// Domains implements workflow.DomainSource.
func (c *CADomains) Domains(ctx context.Context) ([]workflow.Domain, error) {
	refresh := c.Refresh
	if refresh <= 0 {
		refresh = 10 * time.Second
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cached) > 0 && time.Since(c.at) < refresh {
		return c.cached, nil
	}
	pds, err := certauthority.LoadProvisioningDomains(ctx, c.DB, c.Keys)
	if err != nil {
		return nil, err
	}
	out := make([]workflow.Domain, 0, len(pds))
	for _, d := range pds {
		out = append(out, workflow.Domain{Name: d.Name, Suffix: d.Suffix, RootSHA256: d.RootSHA256, RootSHA1: d.RootSHA1, Chain: d.Certificate})
	}
	c.cached, c.at = out, time.Now()
	return out, nil
}

// Aliases for wiring code outside this module (the workflow package is
// internal): what Deps.Domains and Deps.Signer deal in.
type (
	// Domain is a provisioning domain with its chain and key.
	Domain = workflow.Domain
	// DomainSource lists provisioning domains.
	DomainSource = workflow.DomainSource
	// CertRequest asks for a device TLS certificate.
	CertRequest = workflow.CertRequest
	// Cert is a signed device certificate.
	Cert = workflow.Cert
	// Signer signs device TLS certificates.
	Signer = workflow.Signer
	// WorkflowConfig tunes the device conversation.
	WorkflowConfig = workflow.Config
)
