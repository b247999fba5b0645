package discovery

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/amtprov/amtprov/libs/amt"
	"github.com/amtprov/amtprov/libs/events"
	"github.com/amtprov/amtprov/libs/outbox"
	"github.com/amtprov/amtprov/libs/secrets"
	"github.com/amtprov/amtprov/services/discovery/sweep"
)

// repo is discovery's PostgreSQL side (migration 00004_discovery.sql). It
// reads two tables it does not own: device_location (inventory: where a
// device was last seen) and device_credentials (provisioner: amtprov's own
// credentials and pinned certificates; discovery adds other consoles').
type repo struct {
	pool *pgxpool.Pool
	keys *secrets.Keyring
}

const targetCols = `id, cidr::text, COALESCE(EXTRACT(EPOCH FROM schedule)::bigint, 0), rate_limit, rmcp_port, http_port, tls_port, tcp_all, enabled, next_run_at, created_at`

func scanTarget(row pgx.Row) (Target, error) {
	var t Target
	var sched int64
	err := row.Scan(&t.ID, &t.CIDR, &sched, &t.RateLimit, &t.RMCPPort, &t.HTTPPort, &t.TLSPort, &t.TCPAll, &t.Enabled, &t.NextRunAt, &t.CreatedAt)
	if sched > 0 {
		t.Schedule = (time.Duration(sched) * time.Second).String()
	}
	return t, err
}

func (r *repo) upsertTarget(ctx context.Context, t Target, schedule time.Duration) (Target, error) {
	var sched any
	if schedule > 0 {
		sched = strconv.FormatInt(int64(schedule/time.Second), 10) + " seconds"
	}
	row := r.pool.QueryRow(ctx, `
INSERT INTO discovery_targets (cidr, schedule, rate_limit, rmcp_port, http_port, tls_port, tcp_all, enabled, next_run_at)
VALUES ($1::cidr, $2::interval, $3, $4, $5, $6, $7, $8, CASE WHEN $2::interval IS NULL THEN NULL ELSE now() END)
ON CONFLICT (cidr) DO UPDATE SET schedule = EXCLUDED.schedule, rate_limit = EXCLUDED.rate_limit,
    rmcp_port = EXCLUDED.rmcp_port, http_port = EXCLUDED.http_port, tls_port = EXCLUDED.tls_port,
    tcp_all = EXCLUDED.tcp_all, enabled = EXCLUDED.enabled, next_run_at = EXCLUDED.next_run_at
RETURNING `+targetCols, t.CIDR, sched, t.RateLimit, t.RMCPPort, t.HTTPPort, t.TLSPort, t.TCPAll, t.Enabled)
	out, err := scanTarget(row)
	if err != nil {
		return Target{}, fmt.Errorf("save discovery target %s: %w", t.CIDR, err)
	}
	return out, nil
}

func (r *repo) targets(ctx context.Context) ([]Target, error) {
	rows, err := r.pool.Query(ctx, `SELECT `+targetCols+` FROM discovery_targets ORDER BY cidr`)
	if err != nil {
		return nil, fmt.Errorf("list discovery targets: %w", err)
	}
	defer rows.Close()
	var out []Target
	for rows.Next() {
		t, err := scanTarget(rows)
		if err != nil {
			return nil, fmt.Errorf("list discovery targets: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list discovery targets: %w", err)
	}
	return out, nil
}

// targetFor is the most specific target containing block, if any.
func (r *repo) targetFor(ctx context.Context, block netip.Prefix) (Target, bool, error) {
	t, err := scanTarget(r.pool.QueryRow(ctx, `SELECT `+targetCols+` FROM discovery_targets WHERE cidr >>= $1::cidr ORDER BY masklen(cidr) DESC LIMIT 1`, block.String()))
	if errors.Is(err, pgx.ErrNoRows) {
		return Target{}, false, nil
	}
	if err != nil {
		return Target{}, false, fmt.Errorf("find target of %s: %w", block, err)
	}
	return t, true, nil
}

// claimDue moves next_run_at of every enabled, scheduled target that is due
// and returns them: of many replicas, exactly one claims each run.
func (r *repo) claimDue(ctx context.Context) ([]Target, error) {
	rows, err := r.pool.Query(ctx, `
UPDATE discovery_targets SET next_run_at = now() + schedule
WHERE enabled AND schedule IS NOT NULL AND (next_run_at IS NULL OR next_run_at <= now())
RETURNING `+targetCols)
	if err != nil {
		return nil, fmt.Errorf("claim scheduled targets: %w", err)
	}
	defer rows.Close()
	var out []Target
	for rows.Next() {
		t, err := scanTarget(rows)
		if err != nil {
			return nil, fmt.Errorf("claim scheduled targets: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// shardPlan is one shard of a new scan.
type shardPlan struct {
	msg       shardMsg
	addresses int
}

// createScan records a scan, its shards and its credentials (encrypted) in
// one transaction.
func (r *repo) createScan(ctx context.Context, id, trigger string, blocks []netip.Prefix, shards []shardPlan, creds []CredentialRow) error {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("create scan %s: %w", id, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	total := int64(0)
	for _, s := range shards {
		total += int64(s.addresses)
	}
	cidrs := make([]string, len(blocks))
	for i, b := range blocks {
		cidrs[i] = b.String()
	}
	if _, err := tx.Exec(ctx, `INSERT INTO discovery_scans (id, trigger, targets, shards_total, addresses_total) VALUES ($1, $2, $3::cidr[], $4, $5)`,
		id, trigger, cidrs, len(shards), total); err != nil {
		return fmt.Errorf("create scan %s: %w", id, err)
	}
	rows := make([][]any, len(shards))
	for i, s := range shards {
		rows[i] = []any{id, s.msg.Shard, s.msg.Target, s.addresses}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"discovery_shards"}, []string{"scan_id", "shard", "target", "addresses"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("create scan %s: shards: %w", id, err)
	}
	for i, c := range creds {
		sealed, err := r.keys.Seal([]byte(c.Password), secrets.AAD("discovery_credentials", id+"/"+strconv.Itoa(i), "password_enc"))
		if err != nil {
			return fmt.Errorf("create scan %s: seal credentials row %d: %w", id, i+1, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO discovery_credentials (scan_id, row_no, match, username, password_enc, key_id) VALUES ($1, $2, $3, $4, $5, $6)`,
			id, i, c.Match, c.Username, sealed, secrets.KeyID(sealed)); err != nil {
			return fmt.Errorf("create scan %s: credentials row %d: %w", id, i+1, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("create scan %s: %w", id, err)
	}
	return nil
}

func (r *repo) failScan(ctx context.Context, id, msg string) error {
	_, err := r.pool.Exec(ctx, `UPDATE discovery_scans SET state = 'failed', error = $2, finished_at = now() WHERE id = $1 AND state = 'running'`, id, msg)
	if err != nil {
		return fmt.Errorf("mark scan %s failed: %w", id, err)
	}
	return nil
}

const scanCols = `id, trigger, targets::text[], state, error, shards_total, shards_done, addresses_total, addresses_probed, found, identified, created_at, finished_at`

func readScan(row pgx.Row) (Scan, error) {
	var s Scan
	err := row.Scan(&s.ID, &s.Trigger, &s.Targets, &s.State, &s.Error, &s.ShardsTotal, &s.ShardsDone, &s.AddressesTotal, &s.AddressesProbed, &s.Found, &s.Identified, &s.CreatedAt, &s.FinishedAt)
	return s, err
}

func (r *repo) scan(ctx context.Context, id string) (Scan, error) {
	s, err := readScan(r.pool.QueryRow(ctx, `SELECT `+scanCols+` FROM discovery_scans WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Scan{}, errScanNotFound
	}
	if err != nil {
		return Scan{}, fmt.Errorf("read scan %s: %w", id, err)
	}
	return s, nil
}

var errScanNotFound = errors.New("no such scan")

func (r *repo) scans(ctx context.Context, limit int) ([]Scan, error) {
	rows, err := r.pool.Query(ctx, `SELECT `+scanCols+` FROM discovery_scans ORDER BY created_at DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list scans: %w", err)
	}
	defer rows.Close()
	var out []Scan
	for rows.Next() {
		s, err := readScan(rows)
		if err != nil {
			return nil, fmt.Errorf("list scans: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// identifierFor loads the credentials that may open devices of shard:
// active device_credentials of devices last located in it, and the
// scan's credentials-file rows (CIDR rows that overlap the shard, UUID
// rows of devices last located in it).
func (r *repo) identifierFor(ctx context.Context, scanID string, shard netip.Prefix) (*identifier, error) {
	id := &identifier{byAddr: map[netip.Addr][]credential{}}
	rows, err := r.pool.Query(ctx, `
SELECT c.uuid::text, c.version, host(l.ip), c.username, c.password_enc, c.tls_cert_sha256, c.source, COALESCE(c.match, '')
FROM device_credentials c JOIN device_location l ON l.uuid = c.uuid
WHERE c.active AND l.ip <<= $1::cidr`, shard.String())
	if err != nil {
		return nil, fmt.Errorf("credentials for shard %s: %w", shard, err)
	}
	for rows.Next() {
		var u, ip, user, pin, source, match string
		var version int
		var enc []byte
		if err := rows.Scan(&u, &version, &ip, &user, &enc, &pin, &source, &match); err != nil {
			rows.Close()
			return nil, fmt.Errorf("credentials for shard %s: %w", shard, err)
		}
		a, err := netip.ParseAddr(ip)
		if err != nil {
			continue
		}
		pw, err := r.keys.OpenCredential(enc, u, version, "password_enc")
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("credentials of %s: %w", u, err)
		}
		c := credential{uuid: u, username: user, password: string(pw), source: source, match: match}
		if source == SourceAmtprov {
			sum, err := hex.DecodeString(pin)
			if err != nil || len(sum) != 32 {
				continue // amtprov's credentials go only over pinned TLS
			}
			c.pin = sum
		}
		id.byAddr[a] = append(id.byAddr[a], c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("credentials for shard %s: %w", shard, err)
	}
	rows, err = r.pool.Query(ctx, `SELECT row_no, match, username, password_enc FROM discovery_credentials WHERE scan_id = $1 ORDER BY row_no`, scanID)
	if err != nil {
		return nil, fmt.Errorf("scan %s credentials: %w", scanID, err)
	}
	type fileRow struct {
		no          int
		match, user string
		enc         []byte
	}
	var file []fileRow
	for rows.Next() {
		var f fileRow
		if err := rows.Scan(&f.no, &f.match, &f.user, &f.enc); err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan %s credentials: %w", scanID, err)
		}
		file = append(file, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("scan %s credentials: %w", scanID, err)
	}
	for _, f := range file {
		prefix, u, err := parseMatch(f.match)
		if err != nil || (u == "" && !prefix.Overlaps(shard)) {
			continue
		}
		var addr netip.Addr
		if u != "" {
			var ip string
			err := r.pool.QueryRow(ctx, `SELECT host(ip) FROM device_location WHERE uuid = $1 AND ip <<= $2::cidr`, u, shard.String()).Scan(&ip)
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("location of %s: %w", u, err)
			}
			if addr, err = netip.ParseAddr(ip); err != nil {
				continue
			}
		}
		pw, err := r.keys.Open(f.enc, secrets.AAD("discovery_credentials", scanID+"/"+strconv.Itoa(f.no), "password_enc"))
		if err != nil {
			return nil, fmt.Errorf("scan %s credentials row %d: %w", scanID, f.no+1, err)
		}
		c := credential{uuid: u, username: f.user, password: string(pw), source: SourceOtherConsole, match: f.match}
		if u != "" {
			id.byAddr[addr] = append(id.byAddr[addr], c)
		} else {
			id.cidrs = append(id.cidrs, cidrCredential{prefix: prefix, cred: c})
		}
	}
	slices.SortStableFunc(id.cidrs, func(a, b cidrCredential) int { return b.prefix.Bits() - a.prefix.Bits() })
	return id, nil
}

// locationOf is the device's last known address (inventory's device_location).
func (r *repo) locationOf(ctx context.Context, uuid string) (netip.Addr, bool, error) {
	var ip *string
	err := r.pool.QueryRow(ctx, `SELECT host(ip) FROM device_location WHERE uuid = $1`, uuid).Scan(&ip)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && ip == nil) {
		return netip.Addr{}, false, nil
	}
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("location of %s: %w", uuid, err)
	}
	a, err := netip.ParseAddr(*ip)
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("location of %s: %w", uuid, err)
	}
	return a, true, nil
}

// shardOutcome is what finishShard records.
type shardOutcome struct {
	msg        shardMsg
	res        sweep.Result
	worker     string
	deliveries int
	source     string // ce-source of the events
	id         *identifier
}

func (o shardOutcome) usedCredential(idn sweep.Identity) (credential, bool) {
	if o.id == nil {
		return credential{}, false
	}
	return o.id.usedFor(idn.UUID)
}

// finishShard records a swept shard exactly once: results, other-console
// credentials, events (outbox), scan counters, and, for the scan's last
// shard, the scan's completion and its scan.completed event. done is false
// when the shard had been recorded already (a redelivery).
func (r *repo) finishShard(ctx context.Context, o shardOutcome) (done bool, completed *events.ScanCompleted, err error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return false, nil, fmt.Errorf("finish shard %s of %s: %w", o.msg.Shard, o.msg.ScanID, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	var addresses int
	err = tx.QueryRow(ctx, `UPDATE discovery_shards SET done_at = now(), found = $3, worker = $4, deliveries = $5
WHERE scan_id = $1 AND shard = $2::cidr AND done_at IS NULL RETURNING addresses`,
		o.msg.ScanID, o.msg.Shard, len(o.res.Found), o.worker, o.deliveries).Scan(&addresses)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, fmt.Errorf("finish shard %s of %s: %w", o.msg.Shard, o.msg.ScanID, err)
	}
	identified := 0
	for _, f := range o.res.Found {
		var u *string
		source := ""
		if f.Identity != nil {
			identified++
			u, source = &f.Identity.UUID, f.Identity.Source
		}
		if _, err := tx.Exec(ctx, `INSERT INTO discovery_results (scan_id, ip, uuid, state, amt_version, method, source, ports, seen_at)
VALUES ($1, $2::inet, $3::uuid, $4, $5, $6, $7, $8, $9) ON CONFLICT (scan_id, ip) DO NOTHING`,
			o.msg.ScanID, f.Addr.String(), u, f.State, f.Version, f.Method, source, f.Ports, f.SeenAt); err != nil {
			return false, nil, fmt.Errorf("record %v of scan %s: %w", f.Addr, o.msg.ScanID, err)
		}
		if f.Identity != nil && source == SourceOtherConsole {
			if err := r.saveOtherConsole(ctx, tx, *f.Identity, o); err != nil {
				return false, nil, err
			}
		}
		ev := &events.DeviceDiscovered{IP: f.Addr.String(), Ports: f.Ports, AMTVersion: f.Version, ProvisioningState: f.State,
			Method: f.Method, ScanID: o.msg.ScanID, SeenAt: f.SeenAt}
		if f.Identity != nil {
			ev.UUID = f.Identity.UUID
		}
		env, err := events.New(o.source, ev, "discovered-"+o.msg.ScanID+"-"+ev.Key())
		if err != nil {
			return false, nil, fmt.Errorf("event for %v: %w", f.Addr, err)
		}
		if err := outbox.Add(ctx, tx, env, ctx); err != nil {
			return false, nil, err
		}
	}
	var doneShards, total int
	if err := tx.QueryRow(ctx, `UPDATE discovery_scans SET shards_done = shards_done + 1, addresses_probed = addresses_probed + $2,
    found = found + $3, identified = identified + $4 WHERE id = $1 RETURNING shards_done, shards_total`,
		o.msg.ScanID, addresses, len(o.res.Found), identified).Scan(&doneShards, &total); err != nil {
		return false, nil, fmt.Errorf("count shard of scan %s: %w", o.msg.ScanID, err)
	}
	if doneShards >= total {
		if completed, err = r.complete(ctx, tx, o.msg.ScanID, o.source); err != nil {
			return false, nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return false, nil, fmt.Errorf("finish shard %s of %s: %w", o.msg.Shard, o.msg.ScanID, err)
	}
	return true, completed, nil
}

// saveOtherConsole stores credentials that opened a device another console
// provisioned under its UUID (device_credentials, source other_console),
// unless the device's active credentials are amtprov's own or these same
// credentials already.
func (r *repo) saveOtherConsole(ctx context.Context, tx pgx.Tx, idn sweep.Identity, o shardOutcome) error {
	var (
		cur         *string
		curSource   string
		curUser     string
		curEnc      []byte
		curVersion  int
		nextVersion int
	)
	// The active row, if any, and the next version, in one read.
	err := tx.QueryRow(ctx, `SELECT a.uuid::text, COALESCE(a.source, ''), COALESCE(a.username, ''), a.password_enc, COALESCE(a.version, 0),
    COALESCE((SELECT max(version) FROM device_credentials WHERE uuid = $1), 0) + 1
FROM (SELECT 1) one LEFT JOIN device_credentials a ON a.uuid = $1 AND a.active`, idn.UUID).Scan(&cur, &curSource, &curUser, &curEnc, &curVersion, &nextVersion)
	if err != nil {
		return fmt.Errorf("credentials of %s: %w", idn.UUID, err)
	}
	c, ok := o.usedCredential(idn)
	if !ok {
		return nil
	}
	if cur != nil {
		if curSource == SourceAmtprov {
			return nil
		}
		if pw, err := r.keys.OpenCredential(curEnc, idn.UUID, curVersion, "password_enc"); err == nil && curUser == c.username && string(pw) == c.password {
			return nil
		}
	}
	sealed, err := r.keys.Seal([]byte(c.password), secrets.CredentialAAD(idn.UUID, nextVersion, "password_enc"))
	if err != nil {
		return fmt.Errorf("seal credentials of %s: %w", idn.UUID, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE device_credentials SET active = false WHERE uuid = $1 AND active`, idn.UUID); err != nil {
		return fmt.Errorf("retire credentials of %s: %w", idn.UUID, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO device_credentials (uuid, version, username, password_enc, key_id, tls_cert_sha256, source, match, active)
VALUES ($1, $2, $3, $4, $5, $6, 'other_console', $7, true)`, idn.UUID, nextVersion, c.username, sealed, secrets.KeyID(sealed), idn.TLSCertSHA256, c.match); err != nil {
		return fmt.Errorf("store credentials of %s: %w", idn.UUID, err)
	}
	return nil
}

// complete marks the scan completed and queues scan.completed.
func (r *repo) complete(ctx context.Context, tx pgx.Tx, scanID, source string) (*events.ScanCompleted, error) {
	ev := &events.ScanCompleted{ScanID: scanID}
	if err := tx.QueryRow(ctx, `UPDATE discovery_scans SET state = 'completed', finished_at = now() WHERE id = $1
RETURNING trigger, targets::text[], created_at, finished_at, addresses_probed, found, identified`, scanID).Scan(
		&ev.Trigger, &ev.Targets, &ev.StartedAt, &ev.FinishedAt, &ev.Addresses, &ev.Found, &ev.Identified); err != nil {
		return nil, fmt.Errorf("complete scan %s: %w", scanID, err)
	}
	if err := tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'pre'), count(*) FILTER (WHERE state = 'in'),
    count(*) FILTER (WHERE state = 'post'), count(*) FILTER (WHERE state = '') FROM discovery_results WHERE scan_id = $1`, scanID).Scan(
		&ev.States.Pre, &ev.States.In, &ev.States.Post, &ev.States.Unknown); err != nil {
		return nil, fmt.Errorf("complete scan %s: states: %w", scanID, err)
	}
	list := func(q string) ([]string, error) {
		rows, err := tx.Query(ctx, q, scanID, events.MaxScanListed+1)
		if err != nil {
			return nil, err
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if len(out) > events.MaxScanListed {
			out, ev.Truncated = out[:events.MaxScanListed], true
		}
		return out, err
	}
	var err error
	if ev.Stale, err = list(`
SELECT c.uuid::text FROM device_credentials c JOIN device_location l ON l.uuid = c.uuid
WHERE c.active AND c.source = 'amtprov' AND l.ip <<= ANY ((SELECT targets FROM discovery_scans WHERE id = $1)::inet[])
  AND NOT EXISTS (SELECT 1 FROM discovery_results r WHERE r.scan_id = $1 AND (r.uuid = c.uuid OR r.ip = l.ip))
ORDER BY 1 LIMIT $2`); err != nil {
		return nil, fmt.Errorf("complete scan %s: stale devices: %w", scanID, err)
	}
	if ev.OtherConsole, err = list(`SELECT DISTINCT uuid::text FROM discovery_results WHERE scan_id = $1 AND source = 'other_console' ORDER BY 1 LIMIT $2`); err != nil {
		return nil, fmt.Errorf("complete scan %s: other-console devices: %w", scanID, err)
	}
	// Every shard is recorded: the credentials file has done its work (what
	// opened a device now lives in device_credentials); keep no more secrets
	// than needed.
	if _, err := tx.Exec(ctx, `DELETE FROM discovery_credentials WHERE scan_id = $1`, scanID); err != nil {
		return nil, fmt.Errorf("complete scan %s: drop its credentials: %w", scanID, err)
	}
	env, err := events.New(source, ev, "scan-completed-"+scanID)
	if err != nil {
		return nil, fmt.Errorf("complete scan %s: %w", scanID, err)
	}
	if err := outbox.Add(ctx, tx, env, ctx); err != nil {
		return nil, err
	}
	return ev, nil
}

func parseUUID(s string) (string, error) {
	u, err := amt.ParseUUID(s)
	if err != nil {
		return "", err
	}
	if u.IsZero() {
		return "", errors.New("all-zero uuid")
	}
	return u.String(), nil
}
