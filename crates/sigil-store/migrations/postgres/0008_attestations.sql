-- Attestations: an operator's statement that an organisational control is in place, with the
-- evidence document (stored, and its SHA-256 logged) and an expiry after which it no longer
-- counts. Append-only: a newer attestation for the same check supersedes an older one.
CREATE TABLE attestations (
    id               TEXT PRIMARY KEY NOT NULL,  -- UUIDv7: sorts by time
    check_id         TEXT NOT NULL,
    attested_by      TEXT NOT NULL,              -- who attests (a person's name or role)
    recorded_by      TEXT NOT NULL,              -- the operator or token that recorded it
    statement        TEXT NOT NULL,
    document_name    TEXT NOT NULL,
    document_sha256  TEXT NOT NULL,
    document         BYTEA NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL
);
CREATE INDEX attestations_check ON attestations (check_id, id);
