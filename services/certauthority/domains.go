package certauthority

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/amtprov/amtprov/libs/admin"
	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/secrets"
)

// Domain sources (domains.source).
const (
	SourceDev      = "dev"
	SourceImported = "imported"
)

// Domain describes a provisioning chain; it holds no secret.
type Domain struct {
	Name        string    `json:"name"`
	Suffix      string    `json:"suffix"`
	RootSHA256  string    `json:"root_sha256"`
	RootSHA1    string    `json:"root_sha1"`
	LeafSubject string    `json:"leaf_subject"`
	NotAfter    time.Time `json:"not_after"`
	Source      string    `json:"source"`
	CreatedAt   time.Time `json:"created_at"`
	// Created is false when create-dev found the domain already there.
	Created bool `json:"created"`
}

// Sizes of development chain keys: the root as the organisation CA; the
// leaf at 2048 bits, which every AMT generation accepts and which keeps the
// provisioner's TLS handshakes cheap.
const (
	devRootBits = 3072
	devLeafBits = 2048
)

// maxPFXSize bounds an imported PFX (real ones are a few KB).
const maxPFXSize = 64 << 10

// maxChainLen bounds the chain walk of an import.
const maxChainLen = 8

func domainKeyAAD(name string) []byte { return secrets.AAD("domains", name, "key_enc") }

// DB is what the domain functions need from PostgreSQL: *pgxpool.Pool.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

var _ DB = (*pgxpool.Pool)(nil)

// EnsureDevDomain returns the root SHA-256 of the development provisioning
// chain for suffix, issuing and storing it first if there is none. It is
// what `amtprov dev` calls before starting the simulated fleet, whose
// devices then trust the root (amtsim.Options.TrustHashes).
func EnsureDevDomain(ctx context.Context, db DB, keys *secrets.Keyring, suffix string) (amt.RootHash, error) {
	d, err := createDevDomain(admin.WithActor(ctx, "amtprov dev"), db, keys, suffix, "amtprov")
	if err != nil {
		return amt.RootHash{}, err
	}
	return amt.ParseRootHash("sha256:" + d.RootSHA256)
}

// CreateDevDomain is domain.create-dev: a development provisioning chain
// for suffix (PROTOCOL.md §6.2). Calling it again for the same suffix
// returns the existing chain (Created false), so devices that trust its
// root keep working.
func (s *Service) CreateDevDomain(ctx context.Context, suffix string) (Domain, error) {
	return createDevDomain(ctx, s.pool, s.keys, suffix, s.cfg.Organization)
}

func createDevDomain(ctx context.Context, db DB, keys *secrets.Keyring, suffix, org string) (Domain, error) {
	suffix = CanonicalSuffix(suffix)
	if err := validDNSName(suffix); err != nil {
		return Domain{}, admin.Errorf(admin.CodeBadRequest, "suffix: %v", err)
	}
	name := suffix
	tx, err := db.Begin(ctx)
	if err != nil {
		return Domain{}, fmt.Errorf("create dev domain %s: begin: %w", suffix, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := lockDomain(ctx, tx, name); err != nil {
		return Domain{}, err
	}
	existing, err := getDomain(ctx, tx, name)
	switch {
	case err == nil && existing.Source == SourceDev:
		return existing, nil
	case err == nil:
		return Domain{}, admin.Errorf(CodeDomainNotDevKey, "domain %s holds an imported chain; create-dev would replace it", name)
	case !errors.Is(err, pgx.ErrNoRows):
		return Domain{}, err
	}

	now := time.Now().UTC()
	rootKey, err := rsa.GenerateKey(rand.Reader, devRootBits)
	if err != nil {
		return Domain{}, fmt.Errorf("create dev domain %s: root key: %w", suffix, err)
	}
	leafKey, err := rsa.GenerateKey(rand.Reader, devLeafBits)
	if err != nil {
		return Domain{}, fmt.Errorf("create dev domain %s: leaf key: %w", suffix, err)
	}
	rootSerial, err := newSerial()
	if err != nil {
		return Domain{}, err
	}
	rootTmpl := &x509.Certificate{
		SerialNumber:          rootSerial,
		Subject:               pkix.Name{CommonName: org + " development provisioning root (" + suffix + ")", Organization: []string{org}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return Domain{}, fmt.Errorf("create dev domain %s: self-sign root: %w", suffix, err)
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return Domain{}, fmt.Errorf("create dev domain %s: %w", suffix, err)
	}
	leafSerial, err := newSerial()
	if err != nil {
		return Domain{}, err
	}
	// PROTOCOL.md §6.2: CA:FALSE, digitalSignature+keyEncipherment,
	// EKU serverAuth + Intel OID, CN and SAN = domain, OU marks it too.
	leafTmpl := &x509.Certificate{
		SerialNumber: leafSerial,
		Subject: pkix.Name{
			CommonName:         suffix,
			Organization:       []string{org},
			OrganizationalUnit: []string{SetupOU},
		},
		DNSNames:              []string{suffix},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(3, 0, 0),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{OIDIntelSetup},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, &leafKey.PublicKey, rootKey)
	if err != nil {
		return Domain{}, fmt.Errorf("create dev domain %s: sign leaf: %w", suffix, err)
	}
	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		return Domain{}, fmt.Errorf("create dev domain %s: %w", suffix, err)
	}
	if err := recordCertificate(ctx, tx, serialHex(rootSerial), "", purposeProvisioningRoot, root.Subject.CommonName, rootDER, root.NotBefore, root.NotAfter); err != nil {
		return Domain{}, err
	}
	if err := recordCertificate(ctx, tx, serialHex(leafSerial), "", purposeProvisioningLeaf, leaf.Subject.CommonName, leafDER, leaf.NotBefore, leaf.NotAfter); err != nil {
		return Domain{}, err
	}
	d, err := storeDomain(ctx, tx, keys, name, suffix, []*x509.Certificate{leaf, root}, leafKey, SourceDev)
	if err != nil {
		return Domain{}, err
	}
	if err := admin.Audit(ctx, tx, "domain.create-dev", name, map[string]any{"suffix": suffix, "root_sha256": d.RootSHA256}); err != nil {
		return Domain{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Domain{}, fmt.Errorf("create dev domain %s: commit: %w", suffix, err)
	}
	d.Created = true
	return d, nil
}

// AddDomainRequest is domain.add: a vendor-issued PFX for suffix.
type AddDomainRequest struct {
	Suffix   string `json:"suffix"`
	PFX      []byte `json:"pfx"`      // PKCS#12 bytes (base64 in JSON)
	Password string `json:"password"` // PFX password; never logged or stored
	Name     string `json:"name"`     // default: the suffix
	Replace  bool   `json:"replace"`  // replace a domain of the same name
}

// AddDomain imports a provisioning chain after the checks firmware would
// make (PROTOCOL.md §6.1 item 3, §6.2); a refusal is an *admin.Error whose
// code names the rule (CodeChainTooShort, CodeNotSetupCert, ...).
func (s *Service) AddDomain(ctx context.Context, req AddDomainRequest) (Domain, error) {
	suffix := CanonicalSuffix(req.Suffix)
	if err := validDNSName(suffix); err != nil {
		return Domain{}, admin.Errorf(admin.CodeBadRequest, "suffix: %v", err)
	}
	name := req.Name
	if name == "" {
		name = suffix
	}
	if len(req.PFX) == 0 || len(req.PFX) > maxPFXSize {
		return Domain{}, admin.Errorf(CodePFXUnreadable, "pfx is %d bytes; expected 1..%d", len(req.PFX), maxPFXSize)
	}
	chain, key, err := ValidateProvisioningPFX(req.PFX, req.Password, suffix, time.Now())
	if err != nil {
		return Domain{}, err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Domain{}, fmt.Errorf("add domain %s: begin: %w", name, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := lockDomain(ctx, tx, name); err != nil {
		return Domain{}, err
	}
	if _, err := getDomain(ctx, tx, name); err == nil {
		if !req.Replace {
			return Domain{}, admin.Errorf(CodeDomainExists, "domain %s exists; pass replace to swap its chain", name)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM domains WHERE name = $1`, name); err != nil {
			return Domain{}, fmt.Errorf("add domain %s: remove previous: %w", name, err)
		}
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return Domain{}, err
	}
	d, err := storeDomain(ctx, tx, s.keys, name, suffix, chain, key, SourceImported)
	if err != nil {
		return Domain{}, err
	}
	if err := admin.Audit(ctx, tx, "domain.add", name, map[string]any{"suffix": suffix, "root_sha256": d.RootSHA256, "leaf": d.LeafSubject, "replace": req.Replace}); err != nil {
		return Domain{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Domain{}, fmt.Errorf("add domain %s: commit: %w", name, err)
	}
	d.Created = true
	return d, nil
}

// ValidateProvisioningPFX decodes a PKCS#12 file and checks that AMT
// firmware in domain suffix would accept its chain at time now. It returns
// the chain leaf first, root last, and the leaf's private key. Each refusal
// is an *admin.Error whose code names the rule.
func ValidateProvisioningPFX(pfx []byte, password, suffix string, now time.Time) ([]*x509.Certificate, crypto.Signer, error) {
	key, first, cas, err := pkcs12.DecodeChain(pfx, password)
	if err != nil {
		return nil, nil, admin.Errorf(CodePFXUnreadable, "cannot read the PFX (wrong password, or not PKCS#12 with one key): %v", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, admin.Errorf(CodePFXUnreadable, "the PFX key (%T) cannot sign", key)
	}
	all := append([]*x509.Certificate{first}, cas...)
	chain, err := ValidateProvisioningChain(all, signer, suffix, now)
	if err != nil {
		return nil, nil, err
	}
	return chain, signer, nil
}

// ValidateProvisioningChain applies the firmware's checks to certificates in
// any order (a PFX's bag order is arbitrary) with the leaf's key. It returns
// the ordered chain, leaf first.
func ValidateProvisioningChain(certs []*x509.Certificate, key crypto.Signer, suffix string, now time.Time) ([]*x509.Certificate, error) {
	if len(certs) < 2 {
		return nil, admin.Errorf(CodeChainTooShort, "the PFX holds %d certificate(s); firmware needs the leaf and its root (at least 2)", len(certs))
	}
	if len(certs) > maxChainLen {
		return nil, admin.Errorf(CodeChainTooShort, "the PFX holds %d certificates; at most %d are accepted", len(certs), maxChainLen)
	}
	leaf := pickLeaf(certs)
	if !hasSetupMark(leaf) {
		return nil, admin.Errorf(CodeNotSetupCert, "leaf %q has neither the Intel OID %s in its extended key usage nor OU %q", leaf.Subject, OIDIntelSetup, SetupOU)
	}
	if !hasServerAuth(leaf) {
		return nil, admin.Errorf(CodeNoServerAuth, "leaf %q lacks the serverAuth extended key usage", leaf.Subject)
	}
	if !publicKeysEqual(key, leaf.PublicKey) {
		return nil, admin.Errorf(CodeKeyMismatch, "the private key in the PFX does not belong to leaf %q", leaf.Subject)
	}
	chain := []*x509.Certificate{leaf}
	for cur := leaf; !selfSigned(cur); {
		next := issuerOf(cur, certs)
		if next == nil || len(chain) >= maxChainLen {
			return nil, admin.Errorf(CodeNoRoot, "the chain ends at %q, which is not a self-signed root; include the root the devices trust", cur.Subject)
		}
		chain = append(chain, next)
		cur = next
	}
	if len(chain) < 2 {
		return nil, admin.Errorf(CodeChainTooShort, "leaf %q is self-signed; firmware needs a leaf issued by a trusted root", leaf.Subject)
	}
	for i, c := range chain {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return nil, admin.Errorf(CodeExpired, "certificate %d %q is valid from %s to %s", i, c.Subject,
				c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	names := append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
	for _, n := range names {
		if n != "" && DomainMatches(n, suffix) {
			return chain, nil
		}
	}
	return nil, admin.Errorf(CodeSuffixMismatch, "leaf names %q do not cover devices in %s (AMT compares %q)", names, suffix, NormalizeName(leaf.Subject.CommonName))
}

// pickLeaf is the only end-entity certificate if there is exactly one,
// else the first certificate that issued none of the others.
func pickLeaf(certs []*x509.Certificate) *x509.Certificate {
	var ee []*x509.Certificate
	for _, c := range certs {
		if !c.IsCA {
			ee = append(ee, c)
		}
	}
	if len(ee) == 1 {
		return ee[0]
	}
	for _, c := range certs {
		issuer := false
		for _, o := range certs {
			if o != c && bytes.Equal(o.RawIssuer, c.RawSubject) && o.CheckSignatureFrom(c) == nil {
				issuer = true
				break
			}
		}
		if !issuer {
			return c
		}
	}
	return certs[0]
}

// selfSigned checks the signature directly: CheckSignatureFrom refuses a
// parent that is not a CA, and a self-signed leaf must still be recognised.
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

func issuerOf(c *x509.Certificate, certs []*x509.Certificate) *x509.Certificate {
	for _, o := range certs {
		if o != c && bytes.Equal(c.RawIssuer, o.RawSubject) && c.CheckSignatureFrom(o) == nil {
			return o
		}
	}
	return nil
}

func hasSetupMark(c *x509.Certificate) bool {
	for _, oid := range c.UnknownExtKeyUsage {
		if oid.Equal(OIDIntelSetup) {
			return true
		}
	}
	for _, ou := range c.Subject.OrganizationalUnit {
		if ou == SetupOU {
			return true
		}
	}
	return false
}

func hasServerAuth(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth {
			return true
		}
	}
	return false
}

func lockDomain(ctx context.Context, tx pgx.Tx, name string) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('amtprov domains ' || $1, 0))`, name); err != nil {
		return fmt.Errorf("lock domain %s: %w", name, err)
	}
	return nil
}

const domainColumns = `name, suffix, root_sha256, root_sha1, chain_pem, not_after, source, created_at`

func scanDomain(row pgx.Row) (Domain, error) {
	var d Domain
	var chainPEM string
	if err := row.Scan(&d.Name, &d.Suffix, &d.RootSHA256, &d.RootSHA1, &chainPEM, &d.NotAfter, &d.Source, &d.CreatedAt); err != nil {
		return Domain{}, err
	}
	if ders, err := decodeChainPEM(chainPEM); err == nil {
		if leaf, err := x509.ParseCertificate(ders[0]); err == nil {
			d.LeafSubject = leaf.Subject.String()
		}
	}
	return d, nil
}

func getDomain(ctx context.Context, tx pgx.Tx, name string) (Domain, error) {
	d, err := scanDomain(tx.QueryRow(ctx, `SELECT `+domainColumns+` FROM domains WHERE name = $1`, name))
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Domain{}, fmt.Errorf("read domain %s: %w", name, err)
	}
	return d, err
}

func storeDomain(ctx context.Context, tx pgx.Tx, keys *secrets.Keyring, name, suffix string, chain []*x509.Certificate, key crypto.Signer, source string) (Domain, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Domain{}, fmt.Errorf("store domain %s: encode key: %w", name, err)
	}
	defer clear(keyDER)
	keyEnc, err := keys.Seal(keyDER, domainKeyAAD(name))
	if err != nil {
		return Domain{}, fmt.Errorf("store domain %s: seal key: %w", name, err)
	}
	ders := make([][]byte, len(chain))
	for i, c := range chain {
		ders[i] = c.Raw
	}
	root := chain[len(chain)-1]
	s256, s1 := rootHashes(root.Raw)
	d := Domain{
		Name: name, Suffix: suffix, RootSHA256: s256.Hex(), RootSHA1: s1.Hex(),
		LeafSubject: chain[0].Subject.String(), NotAfter: chain[0].NotAfter.UTC(), Source: source,
	}
	err = tx.QueryRow(ctx, `INSERT INTO domains (name, suffix, chain_pem, key_enc, key_id, root_sha256, root_sha1, not_after, source)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING created_at`,
		name, suffix, encodeChainPEM(ders), keyEnc, keys.ActiveKeyID(), d.RootSHA256, d.RootSHA1, d.NotAfter, source).Scan(&d.CreatedAt)
	if err != nil {
		return Domain{}, fmt.Errorf("store domain %s: %w", name, err)
	}
	return d, nil
}

// ListDomains is domain.list, ordered by name.
func (s *Service) ListDomains(ctx context.Context) ([]Domain, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+domainColumns+` FROM domains ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	defer rows.Close()
	out := []Domain{}
	for rows.Next() {
		d, err := scanDomain(rows)
		if err != nil {
			return nil, fmt.Errorf("list domains: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	return out, nil
}

// ProvisioningDomain is a chain ready for a TLS client: what the
// provisioner presents to a device in setup mode.
type ProvisioningDomain struct {
	Domain
	// Certificate holds the chain (leaf first, root last, as firmware wants
	// the root sent, PROTOCOL.md §6.1) and the leaf's private key.
	Certificate tls.Certificate
	// RootHashes are the root's SHA-256 and SHA-1 as a hello lists them.
	RootHashes []amt.RootHash
	// Leaf is the parsed leaf (names for suffix matching).
	Leaf *x509.Certificate
}

// LoadProvisioningDomains reads every domain with its key decrypted. The
// keys are secrets: keep them in memory only.
func LoadProvisioningDomains(ctx context.Context, db DB, keys *secrets.Keyring) ([]ProvisioningDomain, error) {
	rows, err := db.Query(ctx, `SELECT `+domainColumns+`, key_enc FROM domains ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("load provisioning domains: %w", err)
	}
	defer rows.Close()
	var out []ProvisioningDomain
	for rows.Next() {
		var d Domain
		var chainPEM string
		var keyEnc []byte
		if err := rows.Scan(&d.Name, &d.Suffix, &d.RootSHA256, &d.RootSHA1, &chainPEM, &d.NotAfter, &d.Source, &d.CreatedAt, &keyEnc); err != nil {
			return nil, fmt.Errorf("load provisioning domains: %w", err)
		}
		ders, err := decodeChainPEM(chainPEM)
		if err != nil {
			return nil, fmt.Errorf("load provisioning domain %s: %w", d.Name, err)
		}
		leaf, err := x509.ParseCertificate(ders[0])
		if err != nil {
			return nil, fmt.Errorf("load provisioning domain %s: parse leaf: %w", d.Name, err)
		}
		d.LeafSubject = leaf.Subject.String()
		keyDER, err := keys.Open(keyEnc, domainKeyAAD(d.Name))
		if err != nil {
			return nil, fmt.Errorf("load provisioning domain %s: decrypt key: %w", d.Name, err)
		}
		k, err := x509.ParsePKCS8PrivateKey(keyDER)
		clear(keyDER)
		if err != nil {
			return nil, fmt.Errorf("load provisioning domain %s: parse key: %w", d.Name, err)
		}
		s256, s1 := rootHashes(ders[len(ders)-1])
		out = append(out, ProvisioningDomain{
			Domain:      d,
			Certificate: tls.Certificate{Certificate: ders, PrivateKey: k, Leaf: leaf},
			RootHashes:  []amt.RootHash{s256, s1},
			Leaf:        leaf,
		})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load provisioning domains: %w", err)
	}
	return out, nil
}
