-- Software updates: each product's TUF repository (keys, signed documents), its releases, and
-- the content-addressed artefacts they ship. Times are Unix seconds (UTC).

-- A product's update channel: the version scheme its releases are ordered by.
CREATE TABLE update_channels (
    product_id      TEXT PRIMARY KEY NOT NULL REFERENCES products (id),
    version_scheme  TEXT NOT NULL CHECK (version_scheme IN ('semver', 'integer')),
    created_at      INTEGER NOT NULL
);

-- The keys of each role. An online key's private half is sealed (AES-256-GCM under a key
-- derived from the data directory's passphrase, bound to product, role and key id); an
-- offline key has only its public half here.
CREATE TABLE tuf_keys (
    product_id      TEXT NOT NULL REFERENCES update_channels (product_id),
    role            TEXT NOT NULL CHECK (role IN ('root', 'targets', 'snapshot', 'timestamp')),
    key_id          TEXT NOT NULL,
    public_key      TEXT NOT NULL,              -- TUF JSON
    sealed_private  BLOB,                       -- NULL: the key is kept off the server
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (product_id, role, key_id)
);

-- Every signed document of the repository, as served. A document awaiting offline signatures
-- is kept unpublished (one per role at most) and never served.
CREATE TABLE tuf_metadata (
    product_id   TEXT NOT NULL REFERENCES update_channels (product_id),
    role         TEXT NOT NULL CHECK (role IN ('root', 'targets', 'snapshot', 'timestamp')),
    version      INTEGER NOT NULL CHECK (version > 0),
    document     BLOB NOT NULL,
    expires_at   INTEGER NOT NULL,
    published    INTEGER NOT NULL CHECK (published IN (0, 1)),
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (product_id, role, version)
);

-- Uploaded files, stored on disk under DATA_DIR/artefacts by their SHA-256.
CREATE TABLE artefacts (
    sha256      TEXT PRIMARY KEY NOT NULL,
    length      INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE releases (
    id           TEXT PRIMARY KEY NOT NULL,     -- UUIDv7
    product_id   TEXT NOT NULL REFERENCES update_channels (product_id),
    version      TEXT NOT NULL,
    target_name  TEXT NOT NULL,
    sha256       TEXT NOT NULL REFERENCES artefacts (sha256),
    length       INTEGER NOT NULL,
    security     INTEGER NOT NULL CHECK (security IN (0, 1)),
    notes        TEXT NOT NULL,
    sbom_sha256  TEXT REFERENCES artefacts (sha256),
    state        TEXT NOT NULL CHECK (state IN ('awaiting-signature', 'published')),
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    UNIQUE (product_id, version),
    UNIQUE (product_id, target_name)
);
