-- Staged rollouts of a release to a product's devices, and each device's place and outcome in
-- them. Times are Unix seconds (UTC).

CREATE TABLE rollouts (
    id               TEXT PRIMARY KEY NOT NULL,      -- UUIDv7
    product_id       TEXT NOT NULL REFERENCES update_channels (product_id),
    release_id       TEXT NOT NULL REFERENCES releases (id),
    selector         TEXT NOT NULL,                  -- JSON: which devices (site, tag, states, ids)
    plan             TEXT NOT NULL,                  -- JSON: groups, thresholds, minimum sample, approval
    rollback         BIGINT NOT NULL CHECK (rollback IN (0, 1)),
    maint_window     TEXT,                           -- HH:MM-HH:MM (UTC), assignments only inside
    rate_per_minute  BIGINT,                        -- new assignments per minute at most
    timeout_seconds  BIGINT NOT NULL CHECK (timeout_seconds > 0),
    state            TEXT NOT NULL CHECK (state IN ('running', 'awaiting-approval', 'paused', 'halted', 'stopped', 'completed')),
    current_group    BIGINT NOT NULL CHECK (current_group >= 0),
    reason           TEXT NOT NULL,                  -- why it is in its state (the threshold, or who); halted: stopped by its own thresholds
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX rollouts_product ON rollouts (product_id, state);
-- One rollout under way per product, whichever process creates it.
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (product_id)
    WHERE state IN ('running', 'awaiting-approval', 'paused', 'halted');

-- The devices a rollout may reach. `group_index` is set when the device is assigned; the
-- order key (a hash of rollout and device ids) decides who comes first.
CREATE TABLE rollout_devices (
    rollout_id        TEXT NOT NULL REFERENCES rollouts (id),
    device_id         TEXT NOT NULL REFERENCES devices (id),
    order_key         TEXT NOT NULL,
    group_index       BIGINT,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'assigned', 'downloading', 'installing', 'installed', 'failed', 'rejected', 'timed-out')),
    reason            TEXT,
    reported_version  TEXT,
    baseline_failures BIGINT NOT NULL,               -- bit set of compliance checks not passing at assignment
    assigned_at       BIGINT,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (rollout_id, device_id)
);
CREATE INDEX rollout_devices_order ON rollout_devices (rollout_id, status, order_key);
CREATE INDEX rollout_devices_device ON rollout_devices (device_id);
