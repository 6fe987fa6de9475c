-- Revocation: when and why a certificate was revoked (RFC 5280 CRLReason code), and every CRL
-- the issuing CA signed (the number must only grow, across restarts).
ALTER TABLE certificates ADD COLUMN revoked_at BIGINT;
ALTER TABLE certificates ADD COLUMN revocation_reason BIGINT;
CREATE INDEX certificates_revoked ON certificates (not_after) WHERE revoked_at IS NOT NULL;

CREATE TABLE crls (
    number       BIGINT PRIMARY KEY NOT NULL,
    this_update  BIGINT NOT NULL,
    next_update  BIGINT NOT NULL,
    der          BYTEA NOT NULL
);
