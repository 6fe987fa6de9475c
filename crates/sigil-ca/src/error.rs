use sigil_domain::DeviceId;

/// Everything that can go wrong in CA logic. Variants that describe caller input (`Csr*`,
/// `WeakKey`, `UnsupportedKey`, `ManufacturerCa`) carry a message that is safe to show the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    #[error("CSR is not valid PEM: {0}")]
    CsrPem(String),
    #[error("CSR is not a valid PKCS#10 structure: {0}")]
    CsrDer(String),
    #[error("CSR is too large ({0} bytes; at most {max})", max = crate::MAX_CSR_DER_LEN)]
    CsrTooLarge(usize),
    #[error("CSR signature does not verify: proof of possession failed")]
    CsrBadSignature,
    #[error(
        "CSR signature algorithm {0} is not accepted (use ECDSA with SHA-256/384/512, Ed25519, or RSA PKCS#1 v1.5 with SHA-256/384/512)"
    )]
    CsrSignatureAlgorithm(String),
    #[error("key is too weak: {0}")]
    WeakKey(String),
    #[error("key type is not accepted: {0}")]
    UnsupportedKey(String),
    #[error("unknown key algorithm `{0}` (expected ecdsa-p256, ecdsa-p384, ed25519 or rsa-3072)")]
    UnknownAlgorithm(String),
    #[error("unknown certificate profile `{0}`")]
    UnknownProfile(String),
    #[error("the issuing CA expires before a certificate for device {0} could be valid")]
    IssuerExpired(DeviceId),
    #[error("private key could not be decrypted: wrong passphrase or corrupted key file")]
    KeyDecrypt,
    #[error("private key is malformed: {0}")]
    KeyFormat(String),
    #[error("CA certificate is malformed: {0}")]
    CaCertificate(String),
    #[error("CA certificate and private key do not match")]
    KeyMismatch,
    #[error("manufacturer CA certificate refused: {0}")]
    ManufacturerCa(String),
    #[error("foreign certificate refused: {0}")]
    ForeignCertificate(String),
    #[error("invalid name for a certificate: {0}")]
    BadName(String),
    #[error("certificate generation failed: {0}")]
    Generation(#[from] rcgen::Error),
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
}
