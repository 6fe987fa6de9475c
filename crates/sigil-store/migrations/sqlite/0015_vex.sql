-- VEX statements a product's maker (or its security team) made: the status of one
-- vulnerability in one component (by purl; empty: the whole product). A newer statement on the
-- same vulnerability and component replaces the older one.
CREATE TABLE vex_statements (
    product_id    TEXT NOT NULL REFERENCES products (id),
    vulnerability TEXT NOT NULL,
    component     TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('not_affected', 'affected', 'fixed', 'under_investigation')),
    justification TEXT,
    statement     TEXT,
    format        TEXT NOT NULL,
    document_sha256 TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (product_id, vulnerability, component)
);
