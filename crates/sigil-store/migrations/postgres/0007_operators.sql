-- Operator accounts (people) and their sessions; API tokens gain scopes.
CREATE TABLE operators (
    id              TEXT PRIMARY KEY NOT NULL,
    username        TEXT NOT NULL UNIQUE,
    role            TEXT NOT NULL,
    password_hash   TEXT NOT NULL,          -- Argon2id, PHC string
    totp_secret     BYTEA,                     -- AES-256-GCM under the data directory's secrets key
    totp_last_step  BIGINT,                     -- last accepted RFC 6238 time step: a code is used once
    failed_logins   BIGINT NOT NULL DEFAULT 0,  -- consecutive failures since the last success
    locked_until    BIGINT,
    created_at      BIGINT NOT NULL,
    disabled_at     BIGINT
);

CREATE TABLE operator_sessions (
    id_hash      TEXT PRIMARY KEY NOT NULL, -- SHA-256 of the cookie secret; the secret is never stored
    operator_id  TEXT NOT NULL REFERENCES operators (id),
    mfa          BIGINT NOT NULL,               -- 1 when a second factor was verified at login
    source_ip    TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX operator_sessions_operator ON operator_sessions (operator_id);

-- What a token may be used for (comma-separated); '*' for tokens made before scopes existed.
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '*';

-- Every access policy applied, in order; the newest is in force (none: the built-in defaults).
-- Rolling back applies an older text again as a new version: history is never rewritten.
CREATE TABLE policy_versions (
    version     BIGINT PRIMARY KEY NOT NULL,
    text        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    comment     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL
);
