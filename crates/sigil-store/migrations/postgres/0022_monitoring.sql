-- Behaviour monitoring: security profile versions (append-only, newest in force), alarms and
-- their decisions, and quarantine (a trust state the access policy reads).
CREATE TABLE security_profile_versions (
    version     BIGINT PRIMARY KEY,
    text        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    comment     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL
);
CREATE TABLE alarms (
    id                  TEXT PRIMARY KEY,       -- UUIDv7: ordered by time raised
    device_id           TEXT NOT NULL REFERENCES devices (id),
    profile             TEXT NOT NULL,
    behaviour           TEXT NOT NULL,
    metric              TEXT NOT NULL,
    severity            TEXT NOT NULL,          -- low | medium | high | critical
    mitigation          TEXT NOT NULL,          -- none | notify | quarantine | suspend | revoke
    suppressed          BIGINT NOT NULL,       -- 0 | 1
    active              BIGINT NOT NULL,       -- 1 until the detector clears it
    raised_at_ms        BIGINT NOT NULL,
    cleared_at_ms       BIGINT,
    decision            TEXT,                   -- acknowledged | false_positive
    decided_at          BIGINT,
    decided_by          TEXT,
    note                TEXT,
    explanation         TEXT NOT NULL,          -- JSON: behaviour, values, baseline
    cleared_explanation TEXT
);
-- At most one active alarm per device and behaviour, whichever detector raises it.
CREATE UNIQUE INDEX alarms_one_active ON alarms (device_id, behaviour) WHERE active = 1;
CREATE INDEX alarms_device ON alarms (device_id, id);
CREATE INDEX alarms_open ON alarms (id) WHERE active = 1 OR decision IS NULL;
ALTER TABLE devices ADD COLUMN quarantined_at BIGINT;
