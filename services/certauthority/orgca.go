package certauthority

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amtprov/amtprov/libs/secrets"
)

// orgCALock is the advisory lock key under which the first replica creates
// the organisation CA; the others wait and then load it.
const orgCALock = "amtprov certauthority org_ca"

func orgCAAAD() []byte { return secrets.AAD("org_ca", orgCAName, "key_enc") }

// loadOrCreateOrgCA reads the organisation CA, creating it in the same
// transaction under an advisory lock if it does not exist yet.
func (s *Service) loadOrCreateOrgCA(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("load organisation CA: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, orgCALock); err != nil {
		return fmt.Errorf("load organisation CA: take lock: %w", err)
	}
	var certDER, keyEnc []byte
	err = tx.QueryRow(ctx, `SELECT cert_der, key_enc FROM org_ca WHERE name = $1`, orgCAName).Scan(&certDER, &keyEnc)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		certDER, keyEnc, err = s.createOrgCA(ctx, tx)
		if err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("create organisation CA: commit: %w", err)
		}
		s.log.InfoContext(ctx, "created organisation CA", "fingerprint_sha256", fingerprintSHA256(certDER), "key_bits", s.cfg.OrgKeyBits)
	case err != nil:
		return fmt.Errorf("load organisation CA: %w", err)
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return fmt.Errorf("load organisation CA: parse certificate: %w", err)
	}
	keyDER, err := s.keys.Open(keyEnc, orgCAAAD())
	if err != nil {
		return fmt.Errorf("load organisation CA: decrypt key (is the key that sealed it, %q, in the keyring?): %w", secrets.KeyID(keyEnc), err)
	}
	defer clear(keyDER)
	k, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return fmt.Errorf("load organisation CA: parse key: %w", err)
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok || !publicKeysEqual(key, cert.PublicKey) {
		return errors.New("load organisation CA: stored key does not belong to the stored certificate")
	}
	s.caCert, s.caKey = cert, key
	return nil
}

func (s *Service) createOrgCA(ctx context.Context, tx pgx.Tx) (certDER, keyEnc []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, s.cfg.OrgKeyBits)
	if err != nil {
		return nil, nil, fmt.Errorf("create organisation CA: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now().UTC()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: s.cfg.Organization + " organisation CA", Organization: []string{s.cfg.Organization}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(defaultOrgCAValidityYear, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create organisation CA: self-sign: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("create organisation CA: encode key: %w", err)
	}
	defer clear(keyDER)
	keyEnc, err = s.keys.Seal(keyDER, orgCAAAD())
	if err != nil {
		return nil, nil, fmt.Errorf("create organisation CA: seal key: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO org_ca (name, cert_der, key_enc, key_id, fingerprint_sha256, not_after) VALUES ($1, $2, $3, $4, $5, $6)`,
		orgCAName, certDER, keyEnc, s.keys.ActiveKeyID(), fingerprintSHA256(certDER), tmpl.NotAfter); err != nil {
		return nil, nil, fmt.Errorf("create organisation CA: store: %w", err)
	}
	if err := recordCertificate(ctx, tx, serialHex(serial), "", purposeOrgCA, tmpl.Subject.CommonName, certDER, tmpl.NotBefore, tmpl.NotAfter); err != nil {
		return nil, nil, fmt.Errorf("create organisation CA: %w", err)
	}
	return certDER, keyEnc, nil
}

// recordCertificate inserts one row of certificates; uuid "" is NULL.
func recordCertificate(ctx context.Context, tx pgx.Tx, serial, uuid, purpose, cn string, der []byte, nb, na time.Time) error {
	var u any
	if uuid != "" {
		u = uuid
	}
	if _, err := tx.Exec(ctx, `INSERT INTO certificates (serial, uuid, purpose, subject_cn, fingerprint_sha256, not_before, not_after) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		serial, u, purpose, cn, fingerprintSHA256(der), nb, na); err != nil {
		return fmt.Errorf("record certificate %s: %w", serial, err)
	}
	return nil
}
