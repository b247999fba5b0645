-- Provisioner schema (ARCHITECTURE.md "Provisioning workflow", "Data model"),
-- written by services/provisioner; device_credentials is also written by
-- discovery (credentials of devices provisioned by another console).
--
-- Jobs: one row per (device, attempt). At most one job per device is not
-- finished (queued or running): the partial unique index below. A worker
-- owns a running job while lease_expires is in the future; a job whose lease
-- has expired is taken over by the next worker that sees a hello or a
-- redelivery for the device, and it resumes at the first step without a
-- finished row in provisioning_steps.

-- +goose Up
CREATE TABLE profiles (
    name       text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    settings   jsonb       NOT NULL DEFAULT '{}',
    is_default boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- At most one default profile.
CREATE UNIQUE INDEX profiles_one_default ON profiles (is_default) WHERE is_default;

CREATE TABLE profile_assignments (
    uuid       uuid PRIMARY KEY,
    profile    text NOT NULL REFERENCES profiles (name) ON UPDATE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE provisioning_jobs (
    id            bigserial PRIMARY KEY,
    uuid          uuid        NOT NULL,
    attempt       integer     NOT NULL CHECK (attempt >= 1),
    state         text        NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    lease_owner   text        NOT NULL DEFAULT '',
    lease_expires timestamptz,
    profile       text        NOT NULL DEFAULT '',
    domain        text        NOT NULL DEFAULT '',
    source_ip     inet,
    hello_event_id text       NOT NULL DEFAULT '',
    error_code    text        NOT NULL DEFAULT '',
    hint          text        NOT NULL DEFAULT '',
    detail        text        NOT NULL DEFAULT '', -- what failed, for explain; never a secret
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    UNIQUE (uuid, attempt)
);
CREATE UNIQUE INDEX provisioning_jobs_one_open ON provisioning_jobs (uuid) WHERE state IN ('queued', 'running');
CREATE INDEX provisioning_jobs_state ON provisioning_jobs (state, updated_at);

CREATE TABLE provisioning_steps (
    job_id       bigint      NOT NULL REFERENCES provisioning_jobs (id) ON DELETE CASCADE,
    step         text        NOT NULL,
    seq          integer     NOT NULL, -- position of the step in the workflow
    started      timestamptz NOT NULL,
    finished     timestamptz,
    outcome      text        NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'ok', 'skipped', 'retry', 'failed')),
    return_value integer,
    error_code   text        NOT NULL DEFAULT '',
    attempt_no   integer     NOT NULL DEFAULT 1, -- how many times the step was started
    state        jsonb       NOT NULL DEFAULT '{}', -- what later steps need (instance ids, fingerprints); never a secret
    PRIMARY KEY (job_id, step)
);

CREATE TABLE device_credentials (
    uuid              uuid        NOT NULL,
    version           integer     NOT NULL CHECK (version >= 1),
    username          text        NOT NULL,
    password_enc      bytea       NOT NULL, -- AES-GCM (libs/secrets), aad "device_credentials"+uuid+"password_enc"
    mebx_password_enc bytea,                -- same, aad ...+"mebx_password_enc"
    key_id            text        NOT NULL,
    tls_cert_sha256   text        NOT NULL DEFAULT '',
    source            text        NOT NULL DEFAULT 'amtprov' CHECK (source IN ('amtprov', 'other_console')),
    match             text, -- other_console: the CIDR or UUID of the credentials file row
    job_id            bigint,
    created_at        timestamptz NOT NULL DEFAULT now(),
    active            boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (uuid, version)
);
CREATE UNIQUE INDEX device_credentials_one_active ON device_credentials (uuid) WHERE active;

CREATE TABLE pid_pps (
    pid     text PRIMARY KEY,
    pps_enc bytea NOT NULL,
    key_id  text  NOT NULL
);

-- +goose Down
DROP TABLE pid_pps;
DROP TABLE device_credentials;
DROP TABLE provisioning_steps;
DROP TABLE provisioning_jobs;
DROP TABLE profile_assignments;
DROP TABLE profiles;
