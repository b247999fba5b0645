package jobstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Settings is what a profile configures on a device (profiles.settings).
type Settings struct {
	// DomainSuffix selects this profile for devices whose domain ends in it
	// (when no profile is assigned by UUID).
	DomainSuffix string `json:"domain_suffix,omitempty"`
	// AdminUser is the digest user name (default "admin").
	AdminUser string `json:"admin_user,omitempty"`
	// HostnameTemplate names the device: "{uuid}" and "{uuid8}" are replaced
	// (default "amt-{uuid8}"). The domain is the provisioning domain's suffix.
	HostnameTemplate string `json:"hostname_template,omitempty"`
	// SOL, IDER, KVM turn the redirection features on.
	SOL  bool `json:"sol"`
	IDER bool `json:"ider"`
	KVM  bool `json:"kvm"`
	// UserConsent is "none", "kvm" or "all" (default "all").
	UserConsent string `json:"user_consent,omitempty"`
	// TLSValidityDays of the device certificate (default 365).
	TLSValidityDays int `json:"tls_validity_days,omitempty"`
}

// Defaults fills unset fields.
func (s Settings) Defaults() Settings {
	if s.AdminUser == "" {
		s.AdminUser = "admin"
	}
	if s.HostnameTemplate == "" {
		s.HostnameTemplate = "amt-{uuid8}"
	}
	if s.UserConsent == "" {
		s.UserConsent = "all"
	}
	if s.TLSValidityDays == 0 {
		s.TLSValidityDays = 365
	}
	return s
}

// Validate reports a setting no device could take.
func (s Settings) Validate() error {
	d := s.Defaults()
	switch d.UserConsent {
	case "none", "kvm", "all":
	default:
		return fmt.Errorf("user consent %q: want none, kvm or all", s.UserConsent)
	}
	if len(d.AdminUser) > 16 || strings.ContainsAny(d.AdminUser, ": \t") {
		return fmt.Errorf("admin user %q: at most 16 printable characters, no colon", s.AdminUser)
	}
	if d.TLSValidityDays < 1 || d.TLSValidityDays > 3650 {
		return fmt.Errorf("TLS validity %d days: want 1-3650", s.TLSValidityDays)
	}
	if len(d.HostnameTemplate) > 48 {
		return fmt.Errorf("host name template longer than 48 characters")
	}
	return nil
}

// Profile is one profiles row.
type Profile struct {
	Name      string    `json:"name"`
	Settings  Settings  `json:"settings"`
	IsDefault bool      `json:"is_default"`
	CreatedAt time.Time `json:"created_at"`
}

// ErrInvalid: a profile or assignment that cannot be stored.
var ErrInvalid = errors.New("invalid")

// ErrExists: a profile of that name exists.
var ErrExists = errors.New("already exists")

// CreateProfile stores p; with p.IsDefault it becomes the only default.
func (s *Store) CreateProfile(ctx context.Context, p Profile) (Profile, error) {
	if err := p.Settings.Validate(); err != nil {
		return Profile{}, fmt.Errorf("profile %s: %w: %v", p.Name, ErrInvalid, err)
	}
	js, err := json.Marshal(p.Settings)
	if err != nil {
		return Profile{}, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if p.IsDefault {
			if _, err := tx.Exec(ctx, `UPDATE profiles SET is_default = false, updated_at = now() WHERE is_default`); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, `INSERT INTO profiles (name, settings, is_default) VALUES ($1, $2, $3) RETURNING created_at`,
			p.Name, js, p.IsDefault).Scan(&p.CreatedAt)
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			return Profile{}, fmt.Errorf("profile %s: %w", p.Name, ErrExists)
		case "23514":
			return Profile{}, fmt.Errorf("profile %q: %w: name must be 1-63 letters, digits, dot, dash or underscore", p.Name, ErrInvalid)
		}
	}
	if err != nil {
		return Profile{}, fmt.Errorf("create profile %s: %w", p.Name, err)
	}
	return p, nil
}

// Profiles lists every profile by name.
func (s *Store) Profiles(ctx context.Context) ([]Profile, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, settings, is_default, created_at FROM profiles ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list profiles: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Profile, error) {
		var p Profile
		err := r.Scan(&p.Name, &p.Settings, &p.IsDefault, &p.CreatedAt)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("list profiles: %w", err)
	}
	return out, nil
}

// AssignProfile assigns profile name to device uuid (replacing any).
func (s *Store) AssignProfile(ctx context.Context, name, uuid string) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO profile_assignments (uuid, profile) VALUES ($1, $2)
		ON CONFLICT (uuid) DO UPDATE SET profile = excluded.profile, created_at = now()`, uuid, name)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23503" {
		return fmt.Errorf("assign profile %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("assign profile %s to %s: %w", name, uuid, err)
	}
	return nil
}

// ProfileFor picks the device's profile: its assignment by UUID, else the
// profile whose domain suffix matches one of suffixes (the longest suffix
// wins), else the default. ErrNotFound when none applies.
func (s *Store) ProfileFor(ctx context.Context, uuid string, suffixes []string) (Profile, error) {
	var p Profile
	err := s.pool.QueryRow(ctx, `SELECT p.name, p.settings, p.is_default, p.created_at FROM profiles p
		JOIN profile_assignments a ON a.profile = p.name WHERE a.uuid = $1`, uuid).Scan(&p.Name, &p.Settings, &p.IsDefault, &p.CreatedAt)
	if err == nil {
		return p, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return Profile{}, fmt.Errorf("profile of %s: %w", uuid, err)
	}
	all, err := s.Profiles(ctx)
	if err != nil {
		return Profile{}, err
	}
	best, bestLen := -1, 0
	for i, cand := range all {
		ds := strings.ToLower(strings.TrimSuffix(cand.Settings.DomainSuffix, "."))
		if ds == "" {
			continue
		}
		for _, sfx := range suffixes {
			sfx = strings.ToLower(strings.TrimSuffix(sfx, "."))
			if (sfx == ds || strings.HasSuffix(sfx, "."+ds)) && len(ds) > bestLen {
				best, bestLen = i, len(ds)
			}
		}
	}
	if best >= 0 {
		return all[best], nil
	}
	for _, cand := range all {
		if cand.IsDefault {
			return cand, nil
		}
	}
	return Profile{}, fmt.Errorf("profile of %s: %w", uuid, ErrNotFound)
}
