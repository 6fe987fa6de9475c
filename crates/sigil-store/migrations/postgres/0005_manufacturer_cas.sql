-- Manufacturer (IDevID) CA certificates an operator trusts for a product: a device of that
-- product may enrol over EST with a bootstrap certificate one of them issued, in place of a
-- one-time token (IEEE 802.1AR style).
CREATE TABLE manufacturer_cas (
    id          TEXT PRIMARY KEY NOT NULL,
    product_id  TEXT NOT NULL REFERENCES products (id),
    sha256      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    der         BYTEA NOT NULL,
    not_after   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (product_id, sha256)
);
