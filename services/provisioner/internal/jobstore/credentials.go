package jobstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Credentials is one device_credentials row, secrets still sealed.
type Credentials struct {
	UUID            string    `json:"uuid"`
	Version         int       `json:"version"`
	Username        string    `json:"username"`
	PasswordEnc     []byte    `json:"-"`
	MEBxPasswordEnc []byte    `json:"-"`
	KeyID           string    `json:"key_id"`
	TLSCertSHA256   string    `json:"tls_cert_sha256"`
	Source          string    `json:"source"`
	JobID           *int64    `json:"job_id,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
	Active          bool      `json:"active"`
}

// Sealer seals a secret for one row and column (libs/secrets.Keyring).
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	ActiveKeyID() string
}

// SaveJobCredentials stores the admin and MEBx passwords generated for a
// job, sealed by seal with aad bound to the device, version and column,
// before they are sent to the device. It returns the new version; the row
// becomes active when the device confirms CommitChanges (FinishStep of the
// commit step with StepResult.CredentialsVersion), even if the job fails
// after that. A job that already saved
// credentials gets them back instead (see JobCredentials).
func (s *Store) SaveJobCredentials(ctx context.Context, jobID int64, owner, uuid, username string,
	seal func(version int, column string) ([]byte, string, error)) (int, error) {
	var version int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := owns(ctx, tx, jobID, owner); err != nil {
			return err
		}
		// Serialise versions per device.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 7))`, uuid); err != nil {
			return fmt.Errorf("lock credentials of %s: %w", uuid, err)
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) + 1 FROM device_credentials WHERE uuid = $1`, uuid).Scan(&version); err != nil {
			return fmt.Errorf("next credentials version of %s: %w", uuid, err)
		}
		pw, keyID, err := seal(version, "password_enc")
		if err != nil {
			return err
		}
		mebx, mebxKey, err := seal(version, "mebx_password_enc")
		if err != nil {
			return err
		}
		if mebxKey != keyID {
			return fmt.Errorf("seal credentials of %s: keys %s and %s differ (rotation mid-seal)", uuid, keyID, mebxKey)
		}
		_, err = tx.Exec(ctx, `INSERT INTO device_credentials (uuid, version, username, password_enc, mebx_password_enc, key_id, source, job_id)
			VALUES ($1, $2, $3, $4, $5, $6, 'amtprov', $7)`, uuid, version, username, pw, mebx, keyID, jobID)
		if err != nil {
			return fmt.Errorf("store credentials of %s: %w", uuid, err)
		}
		return nil
	})
	return version, err
}

const credColumns = `uuid::text, version, username, password_enc, mebx_password_enc, key_id, tls_cert_sha256, source, job_id, created_at, active`

func scanCreds(row pgx.Row) (Credentials, error) {
	var c Credentials
	err := row.Scan(&c.UUID, &c.Version, &c.Username, &c.PasswordEnc, &c.MEBxPasswordEnc, &c.KeyID, &c.TLSCertSHA256, &c.Source, &c.JobID, &c.CreatedAt, &c.Active)
	return c, err
}

// JobCredentials returns the newest credentials a job saved, or ErrNotFound.
func (s *Store) JobCredentials(ctx context.Context, jobID int64) (Credentials, error) {
	c, err := scanCreds(s.pool.QueryRow(ctx, `SELECT `+credColumns+` FROM device_credentials WHERE job_id = $1 ORDER BY version DESC LIMIT 1`, jobID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Credentials{}, fmt.Errorf("credentials of job %d: %w", jobID, ErrNotFound)
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials of job %d: %w", jobID, err)
	}
	return c, nil
}

// DeviceCredentials returns the device's active credentials, else its
// newest (Active false then: not confirmed on the device), or ErrNotFound.
func (s *Store) DeviceCredentials(ctx context.Context, uuid string) (Credentials, error) {
	c, err := scanCreds(s.pool.QueryRow(ctx, `SELECT `+credColumns+` FROM device_credentials WHERE uuid = $1
		ORDER BY active DESC, version DESC LIMIT 1`, uuid))
	if errors.Is(err, pgx.ErrNoRows) {
		return Credentials{}, fmt.Errorf("credentials of %s: %w", uuid, ErrNotFound)
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials of %s: %w", uuid, err)
	}
	return c, nil
}
