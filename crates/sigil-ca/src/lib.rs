//! Sigil's certificate authority: key algorithms, CA hierarchy, protection of CA keys at rest,
//! CSR validation (proof of possession, key policy) and device certificate profiles.
//!
//! No I/O happens here: callers read and write files, pass in the current time, and decide
//! where artefacts go. Signing goes through rcgen's `SigningKey` trait so that a hardware-backed
//! key can replace the software key later without touching issuance logic.

mod algorithm;
mod bootstrap;
mod crl;
mod csr;
mod error;
pub mod est;
pub mod foreign;
mod hierarchy;
mod issue;
mod keystore;
pub mod ocsp;

pub use algorithm::KeyAlgorithm;
pub use bootstrap::{
    BootstrapCertificate, MAX_MANUFACTURER_CA_LEN, ManufacturerCa, directly_issued_by,
};
pub use crl::{CrlContents, RevokedEntry};
pub use csr::{CsrKey, MAX_CSR_DER_LEN, ValidatedCsr, certificate_key};
pub use error::CaError;
pub use hierarchy::{CaHierarchy, CaNames, GeneratedHierarchy, IssuingCa, certificate_pem};
pub use issue::{
    CRL_PATH, DEFAULT_PROFILE, IdentityScheme, IssuedCertificate, PROFILES, Profile, PublicUrls,
    ServerCertificate,
};
pub use keystore::{open_private_key, seal_private_key};

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}
