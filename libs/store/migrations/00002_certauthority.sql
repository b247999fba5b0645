-- Certificate authority schema (services/certauthority), the audit log and the
-- transactional outbox shared by every service that writes events together
-- with database changes (libs/outbox, libs/admin).
--
-- Secrets are never stored in clear: *_enc columns hold libs/secrets sealed
-- values (AES-256-GCM; the sealing key's id is inside the value and repeated
-- in key_id so rows still sealed with an old key can be found after a
-- rotation). The additional authenticated data is
-- secrets.AAD(<table>, <row key>, <column>), so a value copied to another
-- row or column does not decrypt:
--   org_ca.key_enc   secrets.AAD("org_ca", name, "key_enc")
--   domains.key_enc  secrets.AAD("domains", name, "key_enc")

-- +goose Up

-- The organisation CA that signs device TLS certificates. One row, created by
-- the first certauthority replica to start (under an advisory lock).
CREATE TABLE org_ca (
    name               text PRIMARY KEY,          -- 'default'
    cert_der           bytea       NOT NULL,      -- self-signed CA certificate
    key_enc            bytea       NOT NULL,      -- sealed PKCS#8 private key
    key_id             text        NOT NULL,
    fingerprint_sha256 text        NOT NULL,      -- lower-case hex of the DER
    not_after          timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- Provisioning certificate chains (PROTOCOL.md §6): what the provisioner
-- presents to a device in setup mode. A device accepts one whose root hash it
-- trusts and whose leaf CN matches its DNS suffix.
CREATE TABLE domains (
    name        text PRIMARY KEY,                 -- the suffix unless named otherwise
    suffix      text        NOT NULL,             -- DNS suffix, lower case, no trailing dot
    chain_pem   text        NOT NULL,             -- leaf first, root last
    key_enc     bytea       NOT NULL,             -- sealed PKCS#8 key of the leaf
    key_id      text        NOT NULL,
    root_sha256 text        NOT NULL,             -- lower-case hex, the hash devices trust
    root_sha1   text        NOT NULL,
    not_after   timestamptz NOT NULL,             -- of the leaf
    source      text        NOT NULL CHECK (source IN ('dev', 'imported')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX domains_suffix ON domains (suffix);
CREATE INDEX domains_root_sha256 ON domains (root_sha256);

-- Every certificate the CA issued: device TLS certificates (uuid set) and the
-- development provisioning chains (uuid NULL). At most one certificate per
-- device and purpose is active (superseded_at NULL); issuing a new one
-- supersedes the previous in the same transaction.
CREATE TABLE certificates (
    serial             text PRIMARY KEY,          -- lower-case hex
    uuid               uuid,
    purpose            text        NOT NULL,      -- device-tls | provisioning-root | provisioning-leaf | org-ca
    subject_cn         text        NOT NULL,
    fingerprint_sha256 text        NOT NULL,
    not_before         timestamptz NOT NULL,
    not_after          timestamptz NOT NULL,
    issued_at          timestamptz NOT NULL DEFAULT now(),
    superseded_at      timestamptz,
    superseded_by      text                       -- serial of the successor
);
CREATE UNIQUE INDEX certificates_one_active ON certificates (uuid, purpose)
    WHERE superseded_at IS NULL AND uuid IS NOT NULL;
CREATE INDEX certificates_uuid ON certificates (uuid, issued_at);

-- Append-only record of security-relevant actions (credential reads, domain
-- imports, ...). The triggers refuse UPDATE, DELETE and TRUNCATE, for the
-- table owner too, so a bug or a careless operator cannot rewrite history.
CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL,                 -- who asked (CLI user@host, service name)
    action  text        NOT NULL,                 -- e.g. device.credentials.read
    subject text        NOT NULL,                 -- what it was about (uuid, domain name)
    detail  jsonb       NOT NULL DEFAULT '{}'     -- never a secret
);
CREATE INDEX audit_log_subject ON audit_log (subject, at);

-- +goose StatementBegin
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Transactional outbox (libs/outbox): events written in the same transaction
-- as the change they report, published by outbox.Relay and deleted after
-- JetStream acknowledged them. headers holds the CloudEvents headers and the
-- W3C trace context of the writer.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    topic      text        NOT NULL,
    headers    jsonb       NOT NULL,
    data       bytea       NOT NULL,
    msg_id     text        NOT NULL UNIQUE,       -- ce-id = Nats-Msg-Id
    created_at timestamptz NOT NULL DEFAULT now(),
    failed_at  timestamptz,                       -- set when the row can never be published
    error      text                               -- why (dead letter for an operator)
);
CREATE INDEX outbox_pending ON outbox (id) WHERE failed_at IS NULL;

-- +goose Down
DROP TABLE outbox;
DROP TRIGGER audit_log_no_truncate ON audit_log;
DROP TRIGGER audit_log_no_update_delete ON audit_log;
DROP TABLE audit_log;
DROP FUNCTION audit_log_append_only();
DROP TABLE certificates;
DROP TABLE domains;
DROP TABLE org_ca;
