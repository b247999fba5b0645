package certauthority

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/outbox"
)

// SignRequest asks for a device TLS certificate (amt.v1.ca.sign).
type SignRequest struct {
	UUID string `json:"uuid"` // device UUID
	FQDN string `json:"fqdn"` // becomes CN and the DNS SAN
	// PublicKey is base64 DER: PKCS#1 RSAPublicKey (AMT's DERKey) or
	// SubjectPublicKeyInfo.
	PublicKey    string `json:"public_key"`
	Purpose      string `json:"purpose"`       // "device-tls"
	ValidityDays int    `json:"validity_days"` // 0: the CA's default
}

// SignResponse is the issued certificate.
type SignResponse struct {
	Certificate       string    `json:"certificate"` // base64 DER
	Chain             []string  `json:"chain"`       // issuers, base64 DER, up to the org CA
	Serial            string    `json:"serial"`      // lower-case hex
	FingerprintSHA256 string    `json:"fingerprint_sha256"`
	NotAfter          time.Time `json:"not_after"`
}

// maxPublicKeyB64 bounds the request field (an 8192-bit SPKI is ~1.4 KB).
const maxPublicKeyB64 = 4096

// Sign checks the request against the policy and issues, records and
// announces a certificate. Refusals are *admin.Error with the codes of
// errors.go.
func (s *Service) Sign(ctx context.Context, req SignRequest) (resp SignResponse, err error) {
	ctx, span := s.tracer.Start(ctx, "certauthority.sign")
	defer func() {
		if err != nil {
			code := admin.CodeOf(err)
			if code == "" {
				code = admin.CodeInternal
				span.RecordError(err)
				span.SetStatus(codes.Error, "sign failed")
			}
			span.SetAttributes(attribute.String("amtprov.ca.refused", code))
			s.denied.Add(ctx, 1, metric.WithAttributes(attribute.String("code", code)))
		}
		span.End()
	}()

	id, err := uuid.Parse(req.UUID)
	if err != nil {
		return resp, admin.Errorf(admin.CodeBadRequest, "uuid %q is not a UUID", req.UUID)
	}
	devUUID := id.String()
	span.SetAttributes(attribute.String("amtprov.device.uuid", devUUID))
	purpose := req.Purpose
	if purpose == "" {
		purpose = PurposeDeviceTLS
	}
	if purpose != PurposeDeviceTLS {
		return resp, admin.Errorf(CodePurposeNotAllowed, "purpose %q is not issued; only %q", req.Purpose, PurposeDeviceTLS)
	}
	fqdn := CanonicalSuffix(req.FQDN)
	if err := validDNSName(fqdn); err != nil {
		return resp, admin.Errorf(admin.CodeBadRequest, "fqdn: %v", err)
	}
	days := req.ValidityDays
	if days == 0 {
		days = s.cfg.DefaultValidityDays
	}
	if days < 1 || days > s.cfg.MaxValidityDays {
		return resp, admin.Errorf(CodeValidityNotAllowed, "validity_days %d outside 1..%d", req.ValidityDays, s.cfg.MaxValidityDays)
	}
	if len(req.PublicKey) > maxPublicKeyB64 {
		return resp, admin.Errorf(CodeKeyInvalid, "public_key is %d characters, at most %d", len(req.PublicKey), maxPublicKeyB64)
	}
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(req.PublicKey))
	if err != nil {
		return resp, admin.Errorf(CodeKeyInvalid, "public_key is not standard base64")
	}
	pub, err := parsePublicKey(der, s.cfg.MinRSABits)
	if err != nil {
		return resp, err
	}
	allowed, err := s.fqdnAllowed(ctx, fqdn)
	if err != nil {
		return resp, err
	}
	if !allowed {
		return resp, admin.Errorf(CodeFQDNNotAllowed, "%s is not inside an allowed domain suffix (configured: %s; provisioning domains count: %t)",
			fqdn, strings.Join(s.cfg.AllowedSuffixes, ","), !s.cfg.DenyProvisioningDomainSuffixes)
	}

	serial, err := newSerial()
	if err != nil {
		return resp, err
	}
	now := time.Now().UTC()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fqdn, Organization: []string{s.cfg.Organization}},
		DNSNames:              []string{fqdn},
		NotBefore:             now.Add(-5 * time.Minute), // device clocks drift before the clock step
		NotAfter:              now.AddDate(0, 0, days),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, s.caCert, pub, s.caKey)
	if err != nil {
		return resp, fmt.Errorf("sign certificate for %s: %w", devUUID, err)
	}
	sh := serialHex(serial)
	fp := fingerprintSHA256(certDER)
	if err := s.recordIssued(ctx, devUUID, purpose, fqdn, sh, certDER, tmpl.NotBefore, tmpl.NotAfter); err != nil {
		return resp, err
	}
	s.issued.Add(ctx, 1, metric.WithAttributes(attribute.String("purpose", purpose)))
	span.SetAttributes(attribute.String("amtprov.cert.serial", sh))
	return SignResponse{
		Certificate:       base64.StdEncoding.EncodeToString(certDER),
		Chain:             []string{base64.StdEncoding.EncodeToString(s.caCert.Raw)},
		Serial:            sh,
		FingerprintSHA256: fp,
		NotAfter:          tmpl.NotAfter,
	}, nil
}

// fqdnAllowed applies the suffix policy: configured suffixes, then (unless
// disabled) the suffixes of the provisioning domains.
func (s *Service) fqdnAllowed(ctx context.Context, fqdn string) (bool, error) {
	for _, suf := range s.cfg.AllowedSuffixes {
		if InSuffix(fqdn, suf) {
			return true, nil
		}
	}
	if s.cfg.DenyProvisioningDomainSuffixes {
		return false, nil
	}
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM domains WHERE $1 = suffix OR right($1, length(suffix) + 1) = '.' || suffix)`, fqdn).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("check %s against the provisioning domains: %w", fqdn, err)
	}
	return ok, nil
}

// recordIssued stores the certificate, supersedes the device's previous
// active one of the same purpose and queues the cert.issued event, in one
// transaction. A per-device advisory lock serialises concurrent requests
// for one device so that exactly one certificate stays active.
func (s *Service) recordIssued(ctx context.Context, devUUID, purpose, cn, serial string, der []byte, nb, na time.Time) error {
	env, err := s.certIssuedEvent(devUUID, serial, fingerprintSHA256(der), purpose, nb, na)
	if err != nil {
		return fmt.Errorf("record certificate %s: %w", serial, err)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("record certificate %s: begin: %w", serial, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('amtprov certificates ' || $1 || ' ' || $2, 0))`, devUUID, purpose); err != nil {
		return fmt.Errorf("record certificate %s: lock device: %w", serial, err)
	}
	rows, err := tx.Query(ctx, `UPDATE certificates SET superseded_at = now(), superseded_by = $3
WHERE uuid = $1 AND purpose = $2 AND superseded_at IS NULL RETURNING serial`, devUUID, purpose, serial)
	if err != nil {
		return fmt.Errorf("record certificate %s: supersede previous: %w", serial, err)
	}
	var superseded []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return fmt.Errorf("record certificate %s: supersede previous: %w", serial, err)
		}
		superseded = append(superseded, p)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("record certificate %s: supersede previous: %w", serial, err)
	}
	if err := recordCertificate(ctx, tx, serial, devUUID, purpose, cn, der, nb, na); err != nil {
		return err
	}
	if len(superseded) > 0 {
		if err := admin.Audit(admin.WithActor(ctx, "certauthority"), tx, "certificate.supersede", devUUID,
			map[string]any{"purpose": purpose, "serial": serial, "superseded": superseded}); err != nil {
			return err
		}
	}
	if err := outbox.Add(ctx, tx, env, ctx); err != nil {
		return fmt.Errorf("record certificate %s: %w", serial, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("record certificate %s: commit: %w", serial, err)
	}
	return nil
}
