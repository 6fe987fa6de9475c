//! Private keys at rest: PKCS#8 `EncryptedPrivateKeyInfo` (PBES2, scrypt + AES-256-CBC).
//!
//! The standard format means an operator can inspect or migrate a key with stock tools
//! (`openssl pkey -in issuing.key`), and no bespoke crypto is involved.

use pkcs8::der::Decode;
use pkcs8::{EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef};
use rcgen::KeyPair;

use crate::CaError;

const ENCRYPTED_LABEL: &str = "ENCRYPTED PRIVATE KEY";

/// Encrypt a PKCS#8 DER private key under `passphrase`; returns PEM.
pub fn seal_private_key(pkcs8_der: &[u8], passphrase: &[u8]) -> Result<String, CaError> {
    let mut info =
        PrivateKeyInfoRef::from_der(pkcs8_der).map_err(|e| CaError::KeyFormat(e.to_string()))?;
    // Store PKCS#8 v1 (no embedded public key). aws-lc-rs writes Ed25519 keys as v2, which
    // OpenSSL 3.0 cannot decode; the public key is derivable from the private key anyway.
    info.public_key = None;
    let sealed = info
        .encrypt(passphrase)
        .map_err(|e| CaError::Crypto(format!("key encryption: {e}")))?;
    Ok(pem::encode(&pem::Pem::new(
        ENCRYPTED_LABEL,
        sealed.as_bytes(),
    )))
}

/// Decrypt a key written by [`seal_private_key`].
pub fn open_private_key(pem_text: &str, passphrase: &[u8]) -> Result<KeyPair, CaError> {
    let block = pem::parse(pem_text).map_err(|e| CaError::KeyFormat(e.to_string()))?;
    if block.tag() != ENCRYPTED_LABEL {
        // Refuse plaintext keys outright: a CA key on disk must be encrypted.
        return Err(CaError::KeyFormat(format!(
            "expected an {ENCRYPTED_LABEL}, found {}",
            block.tag()
        )));
    }
    let info = EncryptedPrivateKeyInfoRef::from_der(block.contents())
        .map_err(|e| CaError::KeyFormat(e.to_string()))?;
    let plain = info.decrypt(passphrase).map_err(|_| CaError::KeyDecrypt)?;
    KeyPair::try_from(plain.as_bytes()).map_err(|e| CaError::KeyFormat(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyAlgorithm;

    #[test]
    fn seal_and_open_round_trip_for_every_algorithm() {
        for alg in KeyAlgorithm::ALL {
            let key = alg.generate().unwrap_or_else(|e| panic!("{e}"));
            let sealed = seal_private_key(key.serialized_der(), b"correct horse")
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(sealed.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
            let opened = open_private_key(&sealed, b"correct horse")
                .unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(opened.public_key_raw(), key.public_key_raw(), "{alg}");
        }
    }

    #[test]
    fn sealed_keys_are_pkcs8_v1() {
        for alg in KeyAlgorithm::ALL {
            let key = alg.generate().unwrap_or_else(|e| panic!("{e}"));
            let sealed =
                seal_private_key(key.serialized_der(), b"pw").unwrap_or_else(|e| panic!("{e}"));
            let block = pem::parse(&sealed).unwrap_or_else(|e| panic!("{e}"));
            let info = EncryptedPrivateKeyInfoRef::from_der(block.contents())
                .unwrap_or_else(|e| panic!("{e}"));
            let plain = info.decrypt(b"pw").unwrap_or_else(|e| panic!("{e}"));
            let parsed =
                PrivateKeyInfoRef::from_der(plain.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            assert!(parsed.public_key.is_none(), "{alg}");
        }
    }

    #[test]
    fn wrong_passphrase_is_refused() {
        let key = KeyAlgorithm::EcdsaP256
            .generate()
            .unwrap_or_else(|e| panic!("{e}"));
        let sealed =
            seal_private_key(key.serialized_der(), b"right").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            open_private_key(&sealed, b"wrong"),
            Err(CaError::KeyDecrypt)
        ));
    }

    #[test]
    fn plaintext_key_is_refused() {
        let key = KeyAlgorithm::EcdsaP256
            .generate()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            open_private_key(&key.serialize_pem(), b"x"),
            Err(CaError::KeyFormat(_))
        ));
    }
}
