-- Revocation: when and why a certificate was revoked (RFC 5280 CRLReason code), and every CRL
-- the issuing CA signed (the number must only grow, across restarts).
ALTER TABLE certificates ADD COLUMN revoked_at INTEGER;
ALTER TABLE certificates ADD COLUMN revocation_reason INTEGER;
CREATE INDEX certificates_revoked ON certificates (not_after) WHERE revoked_at IS NOT NULL;

CREATE TABLE crls (
    number       INTEGER PRIMARY KEY NOT NULL,
    this_update  INTEGER NOT NULL,
    next_update  INTEGER NOT NULL,
    der          BLOB NOT NULL
);
