package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amtprov/amtprov/services/inventory/internal/record"
)

// deviceSelect reads DEVICE documents; every table but devices is optional.
const deviceSelect = `
SELECT d.uuid::text, d.first_seen, d.last_seen,
  coalesce(i.hostname, ''), coalesce(i.domain, ''), coalesce(i.fqdn, ''),
  coalesce(i.serial, ''), coalesce(i.model, ''), coalesce(i.manufacturer, ''),
  coalesce(host(l.ip), ''), coalesce(l.mac::text, ''), l.last_hello_at, coalesce(l.stale, false),
  coalesce(c.amt_version, ''), coalesce(c.sku, ''), coalesce(c.provisioning_state, ''),
  coalesce(c.control_mode, 'none'), coalesce(c.hello_interface_version, 0),
  coalesce(c.admin_credentials_set, false), coalesce(c.root_hashes, '[]'),
  coalesce(c.tls_enabled, false), coalesce(c.sol, false), coalesce(c.ider, false), coalesce(c.kvm, false),
  coalesce(c.managed_by, ''),
  coalesce(p.state, ''), coalesce(p.attempt, 0), coalesce(p.error_code, ''), p.updated_at
FROM devices d
LEFT JOIN oob_capability c ON c.uuid = d.uuid
LEFT JOIN device_location l ON l.uuid = d.uuid
LEFT JOIN device_identification i ON i.uuid = d.uuid
LEFT JOIN device_provisioning p ON p.uuid = d.uuid`

func scanDevice(row pgx.Row) (record.Device, error) {
	var (
		d                      record.Device
		lastHello, provUpdated *time.Time
		hashes                 []byte
		hiv                    int32
		attempt                int32
	)
	err := row.Scan(&d.UUID, &d.FirstSeen.Time, &d.LastSeen.Time,
		&d.Identification.Hostname, &d.Identification.Domain, &d.Identification.FQDN,
		&d.Identification.Serial, &d.Identification.Model, &d.Identification.Manufacturer,
		&d.Location.IP, &d.Location.MAC, &lastHello, &d.Location.Stale,
		&d.Capability.AMTVersion, &d.Capability.SKU, &d.Capability.ProvisioningState,
		&d.Capability.ControlMode, &hiv,
		&d.Capability.AdminCredentialsSet, &hashes,
		&d.Capability.TLSEnabled, &d.Capability.SOL, &d.Capability.IDER, &d.Capability.KVM,
		&d.Capability.ManagedBy,
		&d.Provisioning.State, &attempt, &d.Provisioning.ErrorCode, &provUpdated)
	if err != nil {
		return d, err
	}
	d.Capability.HelloInterfaceVersion = int(hiv)
	d.Provisioning.Attempt = int(attempt)
	if lastHello != nil {
		d.Location.LastHelloAt.Time = *lastHello
	}
	if provUpdated != nil {
		d.Provisioning.UpdatedAt.Time = *provUpdated
	}
	d.Capability.RootHashes = []record.RootHash{}
	if err := json.Unmarshal(hashes, &d.Capability.RootHashes); err != nil {
		return d, fmt.Errorf("decode root_hashes of %s: %w", d.UUID, err)
	}
	return d, nil
}

// Get reads one device by canonical UUID; ErrNotFound if it is unknown.
func (r *Repo) Get(ctx context.Context, uuid string) (record.Device, error) {
	d, err := scanDevice(r.pool.QueryRow(ctx, deviceSelect+` WHERE d.uuid = $1`, uuid))
	if errors.Is(err, pgx.ErrNoRows) {
		return d, fmt.Errorf("get device %s: %w", uuid, ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("get device %s: %w", uuid, err)
	}
	return d, nil
}

// List reads up to limit devices with UUID greater than after (all when
// after is ""), in UUID order, optionally only those whose provisioning
// state is state. more reports whether further devices follow.
func (r *Repo) List(ctx context.Context, state, after string, limit int) (devs []record.Device, more bool, err error) {
	q := deviceSelect + ` WHERE ($1 = '' OR c.provisioning_state = $1) AND (nullif($2, '') IS NULL OR d.uuid > nullif($2, '')::uuid)
ORDER BY d.uuid LIMIT $3`
	rows, err := r.pool.Query(ctx, q, state, after, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("list devices: %w", err)
	}
	devs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (record.Device, error) { return scanDevice(row) })
	if err != nil {
		return nil, false, fmt.Errorf("list devices: %w", err)
	}
	if len(devs) > limit {
		return devs[:limit], true, nil
	}
	return devs, false, nil
}
