package pgstore

import (
	"github.com/jackc/pgx/v5"

	"github.com/amtprov/amtprov/services/inventory/internal/record"
)

// The "config" group of oob_capability and the "ident" group of
// device_identification: what the provisioner read back from a device it
// provisioned (events.Provisioning.Device on succeeded events). Each is
// its own statement so that the capability statement stays as it is.

var configSQL = `
INSERT INTO oob_capability AS c (uuid, control_mode, tls_enabled, sol, ider, kvm, config_at, config_event_id)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::boolean[], $4::boolean[], $5::boolean[], $6::boolean[], $7::timestamptz[], $8::text[])
ON CONFLICT (uuid) DO UPDATE SET
  ` + setGroup("c", "config", "control_mode", "tls_enabled", "sol", "ider", "kvm") + `
WHERE ` + newer("c", "config")

func queueConfig(b *pgx.Batch, us []record.Update) {
	var (
		ids, mode           []string
		tls, sol, ider, kvm []bool
		cfg                 marks
	)
	for i := range us {
		g := us[i].Config
		if g == nil {
			continue
		}
		ids, mode = append(ids, us[i].UUID), append(mode, g.ControlMode)
		tls, sol, ider, kvm = append(tls, g.TLSEnabled), append(sol, g.SOL), append(ider, g.IDER), append(kvm, g.KVM)
		cfg.add(&g.Mark)
	}
	if len(ids) > 0 {
		b.Queue(configSQL, ids, mode, tls, sol, ider, kvm, cfg.at, cfg.id)
	}
}

var identSQL = `
INSERT INTO device_identification AS i (uuid, hostname, domain, fqdn, ident_at, ident_event_id)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[])
ON CONFLICT (uuid) DO UPDATE SET
  ` + setGroup("i", "ident", "hostname", "domain", "fqdn") + `
WHERE ` + newer("i", "ident")

func queueIdent(b *pgx.Batch, us []record.Update) {
	var (
		ids, host, dom, fqdn []string
		idn                  marks
	)
	for i := range us {
		g := us[i].Ident
		if g == nil {
			continue
		}
		f := g.Hostname
		if g.Hostname != "" && g.Domain != "" {
			f = g.Hostname + "." + g.Domain
		}
		ids, host, dom, fqdn = append(ids, us[i].UUID), append(host, g.Hostname), append(dom, g.Domain), append(fqdn, f)
		idn.add(&g.Mark)
	}
	if len(ids) > 0 {
		b.Queue(identSQL, ids, host, dom, fqdn, idn.at, idn.id)
	}
}
