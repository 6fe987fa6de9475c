-- One-time EST enrolment tokens, each bound to one device. Only the SHA-256 of the secret is
-- stored; used_at makes them single use.
CREATE TABLE enrollment_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    device_id   TEXT NOT NULL REFERENCES devices (id),
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX enrollment_tokens_device ON enrollment_tokens (device_id);
