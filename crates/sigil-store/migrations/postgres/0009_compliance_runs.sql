-- Compliance posture over time: one row per framework evaluation, with the status of every
-- requirement, so a change (and when it happened) can be shown and alerted on.
CREATE TABLE compliance_runs (
    id                 TEXT PRIMARY KEY NOT NULL,  -- UUIDv7: sorts by time
    framework          TEXT NOT NULL,
    evaluated_at       BIGINT NOT NULL,
    catalogue_version  TEXT NOT NULL,
    score              TEXT NOT NULL,              -- decimal, 0 to 100
    summary            TEXT NOT NULL,              -- JSON counts of requirements by status
    requirements       TEXT NOT NULL               -- JSON object: requirement id -> status
);
CREATE INDEX compliance_runs_framework ON compliance_runs (framework, id);
