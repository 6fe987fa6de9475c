-- Coordinated vulnerability disclosure (CRA Annex I Part II (5) and (6)): the policy each
-- product publishes as its security.txt (scope: the product id; '*' is the organisation's,
-- for products without their own), and the reports received, each with its deadlines.
CREATE TABLE disclosure_policies (
    scope      TEXT PRIMARY KEY NOT NULL,
    policy     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A report, as received (the submission's JSON), and what became of it. A public report's
-- receipt (the reporter's way to ask for its status) is kept only as its SHA-256.
CREATE TABLE disclosure_reports (
    id              TEXT PRIMARY KEY NOT NULL,
    product_id      TEXT NOT NULL REFERENCES products (id),
    channel         TEXT NOT NULL CHECK (channel IN ('public', 'operator')),
    receipt_hash    TEXT UNIQUE,
    submission      TEXT NOT NULL,
    received_by     TEXT NOT NULL,
    received_at     BIGINT NOT NULL,
    acknowledge_by  BIGINT NOT NULL,
    decide_by       BIGINT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('received', 'acknowledged', 'accepted', 'rejected')),
    acknowledged_at BIGINT,
    decided_at      BIGINT,
    decided_by      TEXT,
    decision        TEXT,
    advisory_id     TEXT REFERENCES vuln_records (id)
);
CREATE INDEX disclosure_reports_product ON disclosure_reports (product_id, state);
CREATE INDEX disclosure_reports_state ON disclosure_reports (state, channel);
