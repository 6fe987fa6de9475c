-- Operator accounts (people) and their sessions; API tokens gain scopes.
CREATE TABLE operators (
    id              TEXT PRIMARY KEY NOT NULL,
    username        TEXT NOT NULL UNIQUE,
    role            TEXT NOT NULL,
    password_hash   TEXT NOT NULL,          -- Argon2id, PHC string
    totp_secret     BLOB,                     -- AES-256-GCM under the data directory's secrets key
    totp_last_step  INTEGER,                     -- last accepted RFC 6238 time step: a code is used once
    failed_logins   INTEGER NOT NULL DEFAULT 0,  -- consecutive failures since the last success
    locked_until    INTEGER,
    created_at      INTEGER NOT NULL,
    disabled_at     INTEGER
);

CREATE TABLE operator_sessions (
    id_hash      TEXT PRIMARY KEY NOT NULL, -- SHA-256 of the cookie secret; the secret is never stored
    operator_id  TEXT NOT NULL REFERENCES operators (id),
    mfa          INTEGER NOT NULL,               -- 1 when a second factor was verified at login
    source_ip    TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX operator_sessions_operator ON operator_sessions (operator_id);

-- What a token may be used for (comma-separated); '*' for tokens made before scopes existed.
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '*';

-- Every access policy applied, in order; the newest is in force (none: the built-in defaults).
-- Rolling back applies an older text again as a new version: history is never rewritten.
CREATE TABLE policy_versions (
    version     INTEGER PRIMARY KEY NOT NULL,
    text        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    comment     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL
);
