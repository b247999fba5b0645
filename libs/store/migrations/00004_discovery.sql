-- Network discovery (services/discovery, issue 5; PROTOCOL.md §9).
--
-- A target is an address block discovery sweeps on a schedule or on
-- demand. A scan covers one or more blocks; it is cut into shards (/24 or
-- smaller) that go on the JetStream work queue AMT_WORK and are leased by
-- any discovery replica. A shard is done once: its row's done_at is set in
-- the same transaction that adds its devices to discovery_results, bumps
-- the scan's counters and queues its events in the outbox; a redelivered
-- shard (a replica died before acknowledging it) is probed again but counted
-- only once. The replica that finishes the last shard completes the scan.

-- +goose Up
CREATE TABLE discovery_targets (
    id          bigserial PRIMARY KEY,
    cidr        cidr        NOT NULL UNIQUE CHECK (family(cidr) = 4 AND masklen(cidr) >= 8),
    schedule    interval CHECK (schedule IS NULL OR schedule >= interval '1 minute'), -- NULL: on demand only
    rate_limit  integer     NOT NULL DEFAULT 1000 CHECK (rate_limit BETWEEN 1 AND 1000000), -- packets/s per replica
    -- RMCP, HTTP and TLS ports (PROTOCOL.md §1); tests and labs move them
    rmcp_port   integer     NOT NULL DEFAULT 623 CHECK (rmcp_port BETWEEN 1 AND 65535),
    http_port   integer     NOT NULL DEFAULT 16992 CHECK (http_port BETWEEN 1 AND 65535),
    tls_port    integer     NOT NULL DEFAULT 16993 CHECK (tls_port BETWEEN 1 AND 65535),
    tcp_all     boolean     NOT NULL DEFAULT false, -- TCP-probe addresses that did not answer RMCP too
    enabled     boolean     NOT NULL DEFAULT true,
    next_run_at timestamptz, -- the scheduler's claim: the replica that moves it starts the scan
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE discovery_scans (
    id               text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    trigger          text        NOT NULL CHECK (trigger IN ('cli', 'schedule', 'provisioned')),
    targets          cidr[]      NOT NULL,
    state            text        NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'completed', 'failed')),
    error            text        NOT NULL DEFAULT '',
    shards_total     integer     NOT NULL CHECK (shards_total >= 0),
    shards_done      integer     NOT NULL DEFAULT 0,
    addresses_total  bigint      NOT NULL CHECK (addresses_total >= 0),
    addresses_probed bigint      NOT NULL DEFAULT 0,
    found            integer     NOT NULL DEFAULT 0,
    identified       integer     NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX discovery_scans_created ON discovery_scans (created_at DESC);

CREATE TABLE discovery_shards (
    scan_id    text        NOT NULL REFERENCES discovery_scans (id) ON DELETE CASCADE,
    shard      cidr        NOT NULL,
    target     cidr        NOT NULL,
    addresses  integer     NOT NULL,
    found      integer     NOT NULL DEFAULT 0,
    worker     text        NOT NULL DEFAULT '', -- replica that finished it
    deliveries integer     NOT NULL DEFAULT 0,  -- JetStream delivery count when finished
    done_at    timestamptz,
    PRIMARY KEY (scan_id, shard)
);

-- Devices found by a scan: the summary, the stale list and `scan list` read it.
CREATE TABLE discovery_results (
    scan_id    text        NOT NULL REFERENCES discovery_scans (id) ON DELETE CASCADE,
    ip         inet        NOT NULL,
    uuid       uuid,
    state      text        NOT NULL DEFAULT '' CHECK (state IN ('', 'pre', 'in', 'post')),
    amt_version text       NOT NULL DEFAULT '',
    method     text        NOT NULL CHECK (method IN ('rmcp', 'http', 'wsman')),
    source     text        NOT NULL DEFAULT '' CHECK (source IN ('', 'amtprov', 'other_console')),
    ports      integer[]   NOT NULL DEFAULT '{}',
    seen_at    timestamptz NOT NULL,
    PRIMARY KEY (scan_id, ip)
);
CREATE INDEX discovery_results_uuid ON discovery_results (scan_id, uuid) WHERE uuid IS NOT NULL;

-- Other-console credentials given to one scan (`amtprov scan run
-- --credentials FILE`), encrypted with libs/secrets, aad
-- "discovery_credentials"+scan_id/row+"password_enc". Once a device is
-- identified with a row, the credentials are copied to device_credentials
-- (source other_console) under its UUID; the rows are deleted when the scan
-- completes.
CREATE TABLE discovery_credentials (
    scan_id      text    NOT NULL REFERENCES discovery_scans (id) ON DELETE CASCADE,
    row_no       integer NOT NULL,
    match        text    NOT NULL, -- a CIDR or a UUID
    username     text    NOT NULL,
    password_enc bytea   NOT NULL,
    key_id       text    NOT NULL,
    PRIMARY KEY (scan_id, row_no)
);

-- Inventory groups fed by discovery (00001's ordering rule: a group's
-- (<group>_at, <group>_event_id) only moves forward).
-- Group "stale" (device_location): a device amtprov provisioned that a scan
-- of its last known address did not find (scan.completed); a later
-- discovery of the device clears it. The device is never deleted.
ALTER TABLE device_location
    ADD COLUMN stale          boolean NOT NULL DEFAULT false,
    ADD COLUMN stale_at       timestamptz,
    ADD COLUMN stale_event_id text COLLATE "C";
-- Group "managed" (oob_capability): who manages the device's AMT, as far as
-- amtprov knows: '' unknown, other_console (identified by discovery with
-- another console's credentials, scan.completed).
ALTER TABLE oob_capability
    ADD COLUMN managed_by       text NOT NULL DEFAULT '' CHECK (managed_by IN ('', 'amtprov', 'other_console')),
    ADD COLUMN managed_at       timestamptz,
    ADD COLUMN managed_event_id text COLLATE "C";

-- +goose Down
ALTER TABLE oob_capability DROP COLUMN managed_event_id, DROP COLUMN managed_at, DROP COLUMN managed_by;
ALTER TABLE device_location DROP COLUMN stale_event_id, DROP COLUMN stale_at, DROP COLUMN stale;
DROP TABLE discovery_credentials;
DROP TABLE discovery_results;
DROP TABLE discovery_shards;
DROP TABLE discovery_scans;
DROP TABLE discovery_targets;
