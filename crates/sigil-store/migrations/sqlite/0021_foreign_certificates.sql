-- Certificates another CA issued to devices: kept for the inventory and for expiry tracking,
-- never consulted for trust (TLS, EST and bootstrap read only `certificates` and the
-- manufacturer CAs). One row per device and certificate.
CREATE TABLE foreign_certificates (
    device_id    TEXT NOT NULL REFERENCES devices (id),
    sha256       TEXT NOT NULL,               -- of the certificate DER
    subject      TEXT NOT NULL,
    issuer       TEXT NOT NULL,
    serial       TEXT NOT NULL,               -- the issuer's serial, lower-case hex
    not_before   INTEGER NOT NULL,
    not_after    INTEGER NOT NULL,
    spki_sha256  TEXT NOT NULL,
    der          BLOB    NOT NULL,
    imported_by  TEXT NOT NULL,
    imported_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, sha256)
);
CREATE INDEX foreign_certificates_expiry ON foreign_certificates (not_after);
