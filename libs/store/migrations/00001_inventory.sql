-- Inventory schema (ARCHITECTURE.md "Data model"), written by services/inventory.
--
-- Every device-keyed table has one row per device. Its columns come in field
-- groups; each group is set by some event types and carries the time of the
-- event it reflects (<group>_at) and that event's id (<group>_event_id). A
-- writer replaces a group only when (new_at, new_event_id) > (old_at,
-- old_event_id), so an older event never overwrites newer data, the same
-- event applied twice changes nothing, and replaying the stream in any order
-- gives the same rows. NULL <group>_at means "no event has set this group".
-- Event ids compare bytewise (COLLATE "C"), as Go compares strings, so a
-- writer that merges events in memory first agrees with the database.
-- No column holds the time a row was written: that would differ on replay.
--
-- No foreign keys: every per-device table is keyed by a devices.uuid, and
-- the inventory writes the devices row in the same transaction as the
-- others. A foreign key would add a per-row trigger that locks the parent
-- row, which costs about a quarter of the ingest throughput.
--
-- fillfactor 80 on the tables every hello updates (last seen, hello group)
-- leaves room in each page for HOT updates, which skip the indexes.

-- +goose Up
CREATE TABLE devices (
    uuid       uuid PRIMARY KEY,
    first_seen timestamptz NOT NULL, -- earliest event time about the device
    last_seen  timestamptz NOT NULL  -- latest event time about the device
) WITH (fillfactor = 80);

CREATE TABLE oob_capability (
    uuid uuid PRIMARY KEY, -- a devices row; see "No foreign keys" above

    -- group "hello": what the last setup-mode hello said (PROTOCOL.md §4.2, §4.4)
    hello_interface_version integer,
    admin_credentials_set   boolean,
    root_hashes             jsonb NOT NULL DEFAULT '[]', -- [{"alg":"sha256","hex":"..."}]
    hello_at                timestamptz,
    hello_event_id          text COLLATE "C",

    -- group "state": AMT provisioning state (PROTOCOL.md §2.2)
    provisioning_state text CHECK (provisioning_state IN ('pre', 'in', 'post')),
    state_at           timestamptz,
    state_event_id     text COLLATE "C",

    -- group "version": firmware version as discovery or the provisioner read it
    amt_version      text NOT NULL DEFAULT '',
    version_at       timestamptz,
    version_event_id text COLLATE "C",

    -- group "ports": AMT ports found open by discovery (PROTOCOL.md §1)
    ports          integer[] NOT NULL DEFAULT '{}',
    ports_at       timestamptz,
    ports_event_id text COLLATE "C",

    -- group "config": configuration read back from the device after provisioning
    sku             text    NOT NULL DEFAULT '',
    control_mode    text    NOT NULL DEFAULT 'none' CHECK (control_mode IN ('none', 'ccm', 'acm')),
    tls_enabled     boolean NOT NULL DEFAULT false,
    sol             boolean NOT NULL DEFAULT false,
    ider            boolean NOT NULL DEFAULT false,
    kvm             boolean NOT NULL DEFAULT false,
    config_at       timestamptz,
    config_event_id text COLLATE "C"
) WITH (fillfactor = 80);

-- GET /v1/devices?state=... pages through one state in uuid order.
CREATE INDEX oob_capability_state_uuid ON oob_capability (provisioning_state, uuid);

CREATE TABLE device_location (
    uuid uuid PRIMARY KEY, -- a devices row; see "No foreign keys" above

    -- group "addr": the address the device was last heard from or found at
    ip            inet,
    addr_at       timestamptz,
    addr_event_id text COLLATE "C",

    -- group "net": link details (discovery, provisioner)
    mac          macaddr,
    subnet       cidr,
    fqdn_source  text NOT NULL DEFAULT '', -- where the FQDN came from: dhcp, mebx, reverse-dns, ...
    net_at       timestamptz,
    net_event_id text COLLATE "C",

    -- monotonic times, merged with GREATEST (no group needed)
    last_hello_at timestamptz,
    last_seen     timestamptz
) WITH (fillfactor = 80);

CREATE TABLE device_identification (
    uuid uuid PRIMARY KEY, -- a devices row; see "No foreign keys" above

    -- group "ident": who the device says it is (provisioner, discovery)
    hostname       text NOT NULL DEFAULT '',
    domain         text NOT NULL DEFAULT '',
    fqdn           text NOT NULL DEFAULT '',
    serial         text NOT NULL DEFAULT '',
    model          text NOT NULL DEFAULT '',
    manufacturer   text NOT NULL DEFAULT '',
    smbios_uuid    uuid,
    ident_at       timestamptz,
    ident_event_id text COLLATE "C"
);

-- The latest provisioning event about a device: the "provisioning" block of
-- the read API. The provisioner's own job tables come with its migration.
CREATE TABLE device_provisioning (
    uuid       uuid PRIMARY KEY, -- a devices row; see "No foreign keys" above
    state      text        NOT NULL CHECK (state IN ('started', 'running', 'succeeded', 'failed')),
    job_id     text        NOT NULL DEFAULT '',
    attempt    integer     NOT NULL DEFAULT 0,
    profile    text        NOT NULL DEFAULT '',
    step       text        NOT NULL DEFAULT '',
    error_code text        NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL, -- the event's time
    event_id   text COLLATE "C" NOT NULL
);

-- +goose Down
DROP TABLE device_provisioning;
DROP TABLE device_identification;
DROP TABLE device_location;
DROP TABLE oob_capability;
DROP TABLE devices;
