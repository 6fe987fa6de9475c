-- Inventory, certificates and API tokens. Times are Unix seconds (UTC).
CREATE TABLE products (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    manufacturer  TEXT NOT NULL,
    support_end   TEXT NOT NULL,            -- YYYY-MM-DD, last day of declared security support
    created_at    BIGINT NOT NULL,
    UNIQUE (manufacturer, name)
);

CREATE TABLE devices (
    id                TEXT PRIMARY KEY NOT NULL,  -- UUIDv7: sorts by creation time
    product_id        TEXT NOT NULL REFERENCES products (id),
    serial_number     TEXT NOT NULL,
    hardware_id       TEXT UNIQUE,
    owner             TEXT,
    site              TEXT,
    firmware_version  TEXT,
    state             TEXT NOT NULL CHECK (state IN ('registered', 'provisioned', 'active', 'suspended', 'retired')),
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (product_id, serial_number)
);
CREATE INDEX devices_state ON devices (state, id);
CREATE INDEX devices_product ON devices (product_id, id);

CREATE TABLE device_tags (
    device_id  TEXT NOT NULL REFERENCES devices (id),
    tag        TEXT NOT NULL,
    PRIMARY KEY (device_id, tag)
);
CREATE INDEX device_tags_tag ON device_tags (tag, device_id);

-- One row per public key ever certified: a key belongs to exactly one device, forever.
CREATE TABLE device_keys (
    spki_sha256  TEXT PRIMARY KEY NOT NULL,
    device_id    TEXT NOT NULL REFERENCES devices (id),
    bound_at     BIGINT NOT NULL
);

CREATE TABLE certificates (
    serial       TEXT PRIMARY KEY NOT NULL,   -- lowercase hex
    device_id    TEXT NOT NULL REFERENCES devices (id),
    profile      TEXT NOT NULL,
    not_before   BIGINT NOT NULL,
    not_after    BIGINT NOT NULL,
    sha256       TEXT NOT NULL UNIQUE,        -- of the certificate DER
    spki_sha256  TEXT NOT NULL REFERENCES device_keys (spki_sha256),
    status       TEXT NOT NULL CHECK (status IN ('active', 'superseded', 'revoked')),
    der          BYTEA NOT NULL,
    issued_at    BIGINT NOT NULL
);
CREATE INDEX certificates_device ON certificates (device_id, issued_at);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,         -- SHA-256 of the secret; the secret is never stored
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);
