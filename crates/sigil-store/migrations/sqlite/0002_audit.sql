-- The tamper-evident audit log. `entry` (RFC 8785 canonical JSON) is the only authoritative
-- column of audit_entries; the others are copies for searching. audit_hashes holds the RFC 6962
-- hash of every complete subtree at its dense "stored hash index" (about two per entry).
CREATE TABLE audit_entries (
    seq          INTEGER PRIMARY KEY NOT NULL,
    recorded_at  TEXT NOT NULL,              -- as in the entry: fixed-width RFC 3339 UTC
    actor_id     TEXT NOT NULL,
    action       TEXT NOT NULL,
    device_id    TEXT,
    entry        TEXT NOT NULL
);
CREATE INDEX audit_entries_time ON audit_entries (recorded_at);
CREATE INDEX audit_entries_device ON audit_entries (device_id) WHERE device_id IS NOT NULL;
CREATE INDEX audit_entries_action ON audit_entries (action);
CREATE INDEX audit_entries_actor ON audit_entries (actor_id);

CREATE TABLE audit_hashes (
    idx   INTEGER PRIMARY KEY NOT NULL,
    hash  BLOB NOT NULL
);

-- One row: the number of entries. Every appending transaction updates it first, which
-- serialises appends (PostgreSQL row lock; SQLite has one writer anyway) and keeps seq gapless.
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    size  INTEGER NOT NULL
);
INSERT INTO audit_head (id, size) VALUES (1, 0);

-- Every checkpoint the log signed (C2SP signed notes).
CREATE TABLE audit_checkpoints (
    size        INTEGER PRIMARY KEY NOT NULL,
    note        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- When each API token was last recorded as used: `token.used` is logged on first use and then at
-- most once per interval, so the log shows every token in use without one entry per request.
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;
