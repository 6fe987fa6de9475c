-- Vulnerability handling: how long remediation may take, where sites are, when each
-- vulnerability was first seen in a product, and CRA Article 14 cases with their reports
-- and the alerts sent about them.

-- Days to remediate per severity ('critical' .. 'unknown'), and for a known exploited one.
CREATE TABLE remediation_policy (
    severity TEXT PRIMARY KEY NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low', 'none', 'unknown', 'known_exploited')),
    days     BIGINT NOT NULL CHECK (days BETWEEN 1 AND 3650)
);
INSERT INTO remediation_policy (severity, days) VALUES
    ('critical', 7), ('high', 30), ('medium', 90), ('low', 180), ('none', 365), ('unknown', 30),
    ('known_exploited', 14);

-- The country of each site devices are at (ISO 3166-1 alpha-2): reports name member states.
CREATE TABLE sites (
    name       TEXT PRIMARY KEY NOT NULL,
    country    TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- When Sigil first found a vulnerability in a component of a product: the remediation clock
-- starts there, and a later firmware version still carrying it does not restart it.
CREATE TABLE vuln_exposures (
    product_id    TEXT NOT NULL REFERENCES products (id),
    vulnerability TEXT NOT NULL,
    component     TEXT NOT NULL,
    first_seen    BIGINT NOT NULL,
    PRIMARY KEY (product_id, vulnerability, component)
);

-- One case per product and actively exploited vulnerability.
CREATE TABLE vuln_cases (
    id               TEXT PRIMARY KEY NOT NULL,
    product_id       TEXT NOT NULL REFERENCES products (id),
    vulnerability    TEXT NOT NULL,
    cause            TEXT NOT NULL CHECK (cause IN ('known-exploited', 'operator', 'incident')),
    reason           TEXT NOT NULL,
    aware_at         BIGINT NOT NULL,
    fix_release      TEXT,
    fix_available_at BIGINT,
    state            TEXT NOT NULL CHECK (state IN ('open', 'closed')),
    closed_at        BIGINT,
    close_reason     TEXT,
    opened_by        TEXT NOT NULL,
    UNIQUE (product_id, vulnerability)
);
CREATE INDEX vuln_cases_state ON vuln_cases (state, product_id);

-- Reports submitted to the CSIRT / ENISA, as the operator records them.
CREATE TABLE vuln_case_reports (
    case_id      TEXT NOT NULL REFERENCES vuln_cases (id),
    stage        TEXT NOT NULL CHECK (stage IN ('early-warning', 'notification', 'final-report')),
    submitted_at BIGINT NOT NULL,
    reference    TEXT,
    submitted_by TEXT NOT NULL,
    PRIMARY KEY (case_id, stage)
);

-- Deadline alerts sent, so each goes out once.
CREATE TABLE vuln_case_alerts (
    case_id TEXT NOT NULL REFERENCES vuln_cases (id),
    stage   TEXT NOT NULL,
    urgency TEXT NOT NULL CHECK (urgency IN ('nearing', 'overdue')),
    sent_at BIGINT NOT NULL,
    PRIMARY KEY (case_id, stage, urgency)
);
