-- Posture reports from device agents (over mTLS): the whole history, newest last. The report
-- is the validated JSON as received.
CREATE TABLE posture_reports (
    id           TEXT PRIMARY KEY NOT NULL,   -- UUIDv7: sorts by arrival
    device_id    TEXT NOT NULL REFERENCES devices (id),
    received_at  INTEGER NOT NULL,
    report       TEXT NOT NULL
);
CREATE INDEX posture_reports_device ON posture_reports (device_id, id);
