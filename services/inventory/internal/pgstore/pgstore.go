// Package pgstore is the inventory's PostgreSQL repository: it applies
// batches of record.Update in one transaction and reads DEVICE documents
// for the API. Schema: libs/store/migrations.
package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/amtprov/amtprov/services/inventory/internal/record"
)

// ErrNotFound is returned by Get for a device the inventory has never heard of.
var ErrNotFound = errors.New("device not found")

// Repo reads and writes the inventory tables.
type Repo struct{ pool *pgxpool.Pool }

// New returns a repository on pool.
func New(pool *pgxpool.Pool) *Repo { return &Repo{pool: pool} }

// Merge folds updates about the same device together (record.Update.Merge)
// and returns one update per device, sorted by UUID: every transaction then
// locks rows in the same order, so concurrent batches (other replicas)
// cannot deadlock, and no statement touches a row twice.
func Merge(updates []record.Update) []record.Update {
	byUUID := make(map[string]int, len(updates))
	out := make([]record.Update, 0, len(updates))
	for _, u := range updates {
		if i, ok := byUUID[u.UUID]; ok {
			out[i].Merge(u)
			continue
		}
		byUUID[u.UUID] = len(out)
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b record.Update) int { return strings.Compare(a.UUID, b.UUID) })
	return out
}

// Apply writes updates in one transaction: all of them or none.
func (r *Repo) Apply(ctx context.Context, updates []record.Update) error {
	us := Merge(updates)
	if len(us) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	queueDevices(b, us)
	queueCapability(b, us)
	queueLocation(b, us)
	queueProvisioning(b, us)
	queueConfig(b, us)
	queueIdent(b, us)
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("apply %d updates (%d devices): %w", len(updates), len(us), err)
	}
	return nil
}

// Retryable reports whether a failed Apply may succeed if tried again (lost
// connection, deadlock, serialization failure, server shutting down) rather
// than being refused for its data.
func Retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "08", "40", "53", "57", "58": // connection, transaction rollback, resources, operator intervention, system
			return true
		}
		return false
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// Refused reports whether the database rejected the data itself (a data
// exception or a constraint violation): the same rows will fail again.
func Refused(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23")
	}
	return false
}

// newer is the SQL form of record.Mark.After for group g of table t against
// the proposed row EXCLUDED.
func newer(t, g string) string {
	return fmt.Sprintf("(EXCLUDED.%[2]s_at IS NOT NULL AND (%[1]s.%[2]s_at IS NULL OR (EXCLUDED.%[2]s_at, EXCLUDED.%[2]s_event_id) > (%[1]s.%[2]s_at, %[1]s.%[2]s_event_id)))", t, g)
}

// setGroup renders "col = CASE WHEN newer THEN EXCLUDED.col ELSE t.col END"
// for the group's columns and its mark.
func setGroup(t, g string, cols ...string) string {
	cond := newer(t, g)
	cols = append(cols, g+"_at", g+"_event_id")
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = fmt.Sprintf("%[1]s = CASE WHEN %[3]s THEN EXCLUDED.%[1]s ELSE %[2]s.%[1]s END", c, t, cond)
	}
	return strings.Join(parts, ",\n  ")
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

const devicesSQL = `
INSERT INTO devices AS d (uuid, first_seen, last_seen)
SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[])
ON CONFLICT (uuid) DO UPDATE SET
  first_seen = LEAST(d.first_seen, EXCLUDED.first_seen),
  last_seen = GREATEST(d.last_seen, EXCLUDED.last_seen)
WHERE EXCLUDED.first_seen < d.first_seen OR EXCLUDED.last_seen > d.last_seen`

// queueDevices widens first/last seen. An update that says nothing about
// when the device was seen (staleness, management from scan.completed)
// leaves devices alone: the device was not seen then.
func queueDevices(b *pgx.Batch, us []record.Update) {
	ids := make([]string, 0, len(us))
	first := make([]time.Time, 0, len(us))
	last := make([]time.Time, 0, len(us))
	for _, u := range us {
		if u.FirstSeen.IsZero() || u.LastSeen.IsZero() {
			continue
		}
		ids, first, last = append(ids, u.UUID), append(first, u.FirstSeen), append(last, u.LastSeen)
	}
	if len(ids) > 0 {
		b.Queue(devicesSQL, ids, first, last)
	}
}

var capabilitySQL = `
INSERT INTO oob_capability AS c (uuid,
  hello_interface_version, admin_credentials_set, root_hashes, hello_at, hello_event_id,
  provisioning_state, state_at, state_event_id,
  amt_version, version_at, version_event_id,
  ports, ports_at, ports_event_id,
  managed_by, managed_at, managed_event_id)
SELECT u.uuid,
  u.hiv, u.acs, coalesce(u.rh::jsonb, '[]'), u.hat, u.hid,
  u.ps, u.sat, u.sid,
  coalesce(u.av, ''), u.vat, u.vid,
  coalesce(u.ports::integer[], '{}'), u.pat, u.pid,
  coalesce(u.mb, ''), u.mat, u.mid
FROM unnest($1::uuid[],
  $2::integer[], $3::boolean[], $4::text[], $5::timestamptz[], $6::text[],
  $7::text[], $8::timestamptz[], $9::text[],
  $10::text[], $11::timestamptz[], $12::text[],
  $13::text[], $14::timestamptz[], $15::text[],
  $16::text[], $17::timestamptz[], $18::text[])
  AS u(uuid, hiv, acs, rh, hat, hid, ps, sat, sid, av, vat, vid, ports, pat, pid, mb, mat, mid)
ON CONFLICT (uuid) DO UPDATE SET
  ` + setGroup("c", "hello", "hello_interface_version", "admin_credentials_set", "root_hashes") + `,
  ` + setGroup("c", "state", "provisioning_state") + `,
  ` + setGroup("c", "version", "amt_version") + `,
  ` + setGroup("c", "ports", "ports") + `,
  ` + setGroup("c", "managed", "managed_by") + `
WHERE ` + strings.Join([]string{newer("c", "hello"), newer("c", "state"), newer("c", "version"), newer("c", "ports"), newer("c", "managed")}, "\n   OR ")

// marks collects the (at, event id) columns of one field group; nil for a
// row whose update does not touch the group.
type marks struct {
	at []*time.Time
	id []*string
}

func (m *marks) add(mk *record.Mark) {
	if mk == nil {
		m.at, m.id = append(m.at, nil), append(m.id, nil)
		return
	}
	m.at, m.id = append(m.at, &mk.At), append(m.id, &mk.EventID)
}

func queueCapability(b *pgx.Batch, us []record.Update) {
	var (
		ids                  []string
		hiv                  []*int32
		acs                  []*bool
		rh, ps, av, ports    []*string
		mb                   []*string
		hello, st, ver, prts marks
		mgd                  marks
	)
	for i := range us {
		u := &us[i]
		if !u.HasCapability() {
			continue
		}
		ids = append(ids, u.UUID)
		if h := u.Hello; h != nil {
			v := int32(h.InterfaceVersion)
			js, _ := json.Marshal(nonNil(h.RootHashes)) // a slice of plain structs always marshals
			s := string(js)
			hiv, acs, rh = append(hiv, &v), append(acs, &h.AdminCredentialsSet), append(rh, &s)
			hello.add(&h.Mark)
		} else {
			hiv, acs, rh = append(hiv, nil), append(acs, nil), append(rh, nil)
			hello.add(nil)
		}
		if g := u.State; g != nil {
			ps = append(ps, &g.State)
			st.add(&g.Mark)
		} else {
			ps = append(ps, nil)
			st.add(nil)
		}
		if g := u.Version; g != nil {
			av = append(av, &g.AMTVersion)
			ver.add(&g.Mark)
		} else {
			av = append(av, nil)
			ver.add(nil)
		}
		if g := u.Ports; g != nil {
			s := intArray(g.Ports)
			ports = append(ports, &s)
			prts.add(&g.Mark)
		} else {
			ports = append(ports, nil)
			prts.add(nil)
		}
		if g := u.Managed; g != nil {
			mb = append(mb, &g.By)
			mgd.add(&g.Mark)
		} else {
			mb = append(mb, nil)
			mgd.add(nil)
		}
	}
	if len(ids) > 0 {
		b.Queue(capabilitySQL, ids, hiv, acs, rh, hello.at, hello.id, ps, st.at, st.id, av, ver.at, ver.id, ports, prts.at, prts.id, mb, mgd.at, mgd.id)
	}
}

var locationSQL = `
INSERT INTO device_location AS l (uuid, ip, addr_at, addr_event_id, last_hello_at, last_seen, stale, stale_at, stale_event_id)
SELECT u.uuid, u.ip::inet, u.aat, u.aid, u.lh, u.ls, coalesce(u.st, false), u.sta, u.sti
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::timestamptz[], $6::timestamptz[],
  $7::boolean[], $8::timestamptz[], $9::text[])
  AS u(uuid, ip, aat, aid, lh, ls, st, sta, sti)
ON CONFLICT (uuid) DO UPDATE SET
  ` + setGroup("l", "addr", "ip") + `,
  ` + setGroup("l", "stale", "stale") + `,
  last_hello_at = GREATEST(l.last_hello_at, EXCLUDED.last_hello_at),
  last_seen = GREATEST(l.last_seen, EXCLUDED.last_seen)
WHERE ` + newer("l", "addr") + ` OR ` + newer("l", "stale") + `
   OR EXCLUDED.last_hello_at > l.last_hello_at OR (l.last_hello_at IS NULL AND EXCLUDED.last_hello_at IS NOT NULL)
   OR EXCLUDED.last_seen > l.last_seen OR (l.last_seen IS NULL AND EXCLUDED.last_seen IS NOT NULL)`

func queueLocation(b *pgx.Batch, us []record.Update) {
	var (
		ids    []string
		ip     []*string
		addr   marks
		lh, ls []*time.Time
		stale  []*bool
		stl    marks
	)
	for i := range us {
		u := &us[i]
		if !u.HasLocation() {
			continue
		}
		ids = append(ids, u.UUID)
		if a := u.Addr; a != nil {
			ip = append(ip, &a.IP)
			addr.add(&a.Mark)
		} else {
			ip = append(ip, nil)
			addr.add(nil)
		}
		lh, ls = append(lh, nullTime(u.LastHelloAt)), append(ls, nullTime(u.LocationSeen))
		if g := u.Stale; g != nil {
			stale = append(stale, &g.Stale)
			stl.add(&g.Mark)
		} else {
			stale = append(stale, nil)
			stl.add(nil)
		}
	}
	if len(ids) > 0 {
		b.Queue(locationSQL, ids, ip, addr.at, addr.id, lh, ls, stale, stl.at, stl.id)
	}
}

var provisioningSQL = `
INSERT INTO device_provisioning AS p (uuid, state, job_id, attempt, profile, step, error_code, updated_at, event_id)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::integer[], $5::text[], $6::text[], $7::text[],
  $8::timestamptz[], $9::text[])
ON CONFLICT (uuid) DO UPDATE SET
  state = EXCLUDED.state, job_id = EXCLUDED.job_id, attempt = EXCLUDED.attempt, profile = EXCLUDED.profile,
  step = EXCLUDED.step, error_code = EXCLUDED.error_code, updated_at = EXCLUDED.updated_at, event_id = EXCLUDED.event_id
WHERE (EXCLUDED.updated_at, EXCLUDED.event_id) > (p.updated_at, p.event_id)`

func queueProvisioning(b *pgx.Batch, us []record.Update) {
	var (
		ids, state, job, profile, step, code, eid []string
		attempt                                   []int32
		upd                                       []time.Time
	)
	for i := range us {
		p := us[i].Provisioning
		if p == nil {
			continue
		}
		ids = append(ids, us[i].UUID)
		state, job, profile, step, code = append(state, p.State), append(job, p.JobID), append(profile, p.Profile), append(step, p.Step), append(code, p.ErrorCode)
		attempt = append(attempt, int32(p.Attempt))
		upd, eid = append(upd, p.At), append(eid, p.EventID)
	}
	if len(ids) > 0 {
		b.Queue(provisioningSQL, ids, state, job, attempt, profile, step, code, upd, eid)
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// intArray renders a PostgreSQL integer[] literal.
func intArray(v []int) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, p := range v {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.Itoa(p))
	}
	sb.WriteByte('}')
	return sb.String()
}
