-- SBOMs: one per product and firmware version (a release's, or one for firmware Sigil did not
-- ship), kept as uploaded (its SHA-256 in the audit log) and indexed by component.
CREATE TABLE sboms (
    id               TEXT PRIMARY KEY NOT NULL,
    product_id       TEXT NOT NULL REFERENCES products (id),
    firmware_version TEXT NOT NULL,
    release_id       TEXT REFERENCES releases (id),
    format           TEXT NOT NULL CHECK (format IN ('cyclonedx', 'spdx')),
    spec_version     TEXT NOT NULL,
    sha256           TEXT NOT NULL,
    document         BYTEA NOT NULL,
    components       BIGINT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    UNIQUE (product_id, firmware_version)
);

-- Components, with the OSV package their purl names (ecosystem with its release, e.g.
-- Debian:12, and the ecosystem's normalised name), for matching.
CREATE TABLE sbom_components (
    sbom_id    TEXT NOT NULL REFERENCES sboms (id),
    idx        BIGINT NOT NULL,
    name       TEXT NOT NULL,
    version    TEXT,
    purl       TEXT,
    cpe        TEXT,
    ecosystem  TEXT,
    package    TEXT,
    PRIMARY KEY (sbom_id, idx)
);
CREATE INDEX sbom_components_package ON sbom_components (package);

-- OSV records, as imported (the newest `modified` kept), and what they are looked up by.
CREATE TABLE vuln_records (
    id          TEXT PRIMARY KEY NOT NULL,
    modified    TEXT NOT NULL,
    withdrawn   BIGINT NOT NULL CHECK (withdrawn IN (0, 1)),
    summary     TEXT,
    record      TEXT NOT NULL,
    source      TEXT NOT NULL,
    imported_at BIGINT NOT NULL
);
CREATE TABLE vuln_aliases (
    alias     TEXT NOT NULL,
    record_id TEXT NOT NULL REFERENCES vuln_records (id),
    PRIMARY KEY (alias, record_id)
);
CREATE INDEX vuln_aliases_record ON vuln_aliases (record_id);
-- The ecosystem without its release (Debian, not Debian:12): matching checks the release.
CREATE TABLE vuln_packages (
    ecosystem TEXT NOT NULL,
    package   TEXT NOT NULL,
    record_id TEXT NOT NULL REFERENCES vuln_records (id),
    PRIMARY KEY (ecosystem, package, record_id)
);
CREATE INDEX vuln_packages_record ON vuln_packages (record_id);

-- CISA's Known Exploited Vulnerabilities and FIRST's EPSS scores, each replaced whole by an
-- import.
CREATE TABLE kev_entries (
    cve             TEXT PRIMARY KEY NOT NULL,
    date_added      TEXT NOT NULL,
    due_date        TEXT,
    ransomware      TEXT,
    name            TEXT NOT NULL,
    catalog_version TEXT NOT NULL
);
CREATE TABLE epss_scores (
    cve        TEXT PRIMARY KEY NOT NULL,
    epss       DOUBLE PRECISION NOT NULL,
    percentile DOUBLE PRECISION NOT NULL,
    score_date TEXT
);
