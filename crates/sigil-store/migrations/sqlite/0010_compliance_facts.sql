-- Facts the compliance checks read. The key algorithm of each certificate is recorded at
-- issuance (as the CA names it, e.g. `ECDSA P-256`, `RSA-3072`) so a fleet evaluation reads no
-- DER; older rows have NULL and are classified from their DER.
ALTER TABLE certificates ADD COLUMN key_algorithm TEXT;

-- What a product's maker declares: the firmware versions that are current (anything else on a
-- device is out of date), the services a device may expose (`tcp/8883`), and the SBOM of each
-- firmware version. JSON arrays/objects; one row per product, replaced on each declaration
-- (the audit log keeps every version).
CREATE TABLE product_declarations (
    product_id        TEXT PRIMARY KEY NOT NULL REFERENCES products (id),
    current_firmware  TEXT NOT NULL,
    allowed_services  TEXT NOT NULL,
    sboms             TEXT NOT NULL,
    updated_at        INTEGER NOT NULL
);
