//! Keys as TUF writes them, and signers.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use super::metadata::canonical_json;
use crate::UpdateError;

/// A public key: `{"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": hex}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKey {
    pub keytype: String,
    pub scheme: String,
    pub keyval: KeyValue,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    pub public: String,
}

impl PublicKey {
    pub fn ed25519(raw: &[u8]) -> Self {
        Self {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            keyval: KeyValue {
                public: hex::encode(raw),
            },
        }
    }

    /// Parse a key in TUF's JSON form; only Ed25519 keys of 32 bytes are accepted.
    pub fn from_json(text: &[u8]) -> Result<Self, UpdateError> {
        let key: Self = serde_json::from_slice(text)
            .map_err(|e| UpdateError::Key(format!("not a TUF public key: {e}")))?;
        key.raw_ed25519()?;
        Ok(key)
    }

    fn raw_ed25519(&self) -> Result<Vec<u8>, UpdateError> {
        if self.keytype != "ed25519" || self.scheme != "ed25519" {
            return Err(UpdateError::Key(format!(
                "unsupported key type {}/{} (Sigil signs with ed25519)",
                self.keytype, self.scheme
            )));
        }
        // Lower-case only: the key id hashes the text, so `AB..` and `ab..` would be two ids
        // for one key, and one signer could count twice towards a threshold.
        if !self
            .keyval
            .public
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(UpdateError::Key(
                "the public key must be lower-case hex".into(),
            ));
        }
        let raw = hex::decode(&self.keyval.public)
            .map_err(|_| UpdateError::Key("public key is not hex".into()))?;
        if raw.len() != 32 {
            return Err(UpdateError::Key(format!(
                "an Ed25519 public key is 32 bytes, not {}",
                raw.len()
            )));
        }
        Ok(raw)
    }

    /// The key id: hex SHA-256 of the key's canonical JSON (TUF 1.0, "KEYID").
    pub fn key_id(&self) -> String {
        hex::encode(digest(&SHA256, &canonical_json(self)))
    }

    /// Check the key is a well-formed Ed25519 key in Sigil's form.
    pub fn check(&self) -> Result<(), UpdateError> {
        self.raw_ed25519().map(|_| ())
    }

    /// Whether `signature` (raw bytes) is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match self.raw_ed25519() {
            Ok(raw) => UnparsedPublicKey::new(&ED25519, raw)
                .verify(message, signature)
                .is_ok(),
            Err(_) => false,
        }
    }
}

/// Something that signs metadata: an online key in the server, a key file in the CLI.
pub trait Signer: Send + Sync {
    fn public_key(&self) -> &PublicKey;
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, UpdateError>;
    fn key_id(&self) -> String {
        self.public_key().key_id()
    }
}

/// An Ed25519 key held in memory.
pub struct Ed25519Signer {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl Ed25519Signer {
    /// A fresh key, and its PKCS#8 v1 DER (the form OpenSSL and Python's `cryptography` read).
    pub fn generate() -> Result<(Self, Vec<u8>), UpdateError> {
        let pair = Ed25519KeyPair::generate()
            .map_err(|_| UpdateError::Key("could not generate an Ed25519 key".into()))?;
        let der = pair
            .to_pkcs8v1()
            .map_err(|_| UpdateError::Key("could not encode the key".into()))?;
        let der = der.as_ref().to_vec();
        Ok((Self::from_pkcs8(&der)?, der))
    }

    /// From PKCS#8 DER (v1 or v2).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, UpdateError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| UpdateError::Key("not an Ed25519 PKCS#8 private key".into()))?;
        let public = PublicKey::ed25519(pair.public_key().as_ref());
        Ok(Self { pair, public })
    }

    /// From a PEM `PRIVATE KEY` block (an unencrypted PKCS#8 key file).
    pub fn from_pem(text: &str) -> Result<Self, UpdateError> {
        let block = pem::parse(text).map_err(|e| UpdateError::Key(format!("key file: {e}")))?;
        if block.tag() != "PRIVATE KEY" {
            return Err(UpdateError::Key(format!(
                "key file holds a {}, not a PRIVATE KEY",
                block.tag()
            )));
        }
        Self::from_pkcs8(block.contents())
    }

    /// The private key as PKCS#8 v1 DER, for sealing.
    pub fn pkcs8_der(&self) -> Result<Vec<u8>, UpdateError> {
        self.pair
            .to_pkcs8v1()
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| UpdateError::Key("could not encode the key".into()))
    }

    /// The public key as SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> Result<Vec<u8>, UpdateError> {
        self.pair
            .public_key()
            .as_der()
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| UpdateError::Key("could not encode the public key".into()))
    }
}

impl Signer for Ed25519Signer {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, UpdateError> {
        Ok(self.pair.sign(message).as_ref().to_vec())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn key_ids_hash_the_canonical_key() {
        let key = PublicKey::ed25519(&[0u8; 32]);
        let expected = format!(
            "{{\"keytype\":\"ed25519\",\"keyval\":{{\"public\":\"{}\"}},\"scheme\":\"ed25519\"}}",
            "00".repeat(32)
        );
        assert_eq!(canonical_json(&key), expected.as_bytes());
        assert_eq!(
            key.key_id(),
            hex::encode(digest(&SHA256, expected.as_bytes()))
        );
    }

    #[test]
    fn signatures_verify_only_under_their_key_and_message() {
        let (a, der) = Ed25519Signer::generate().unwrap();
        let (b, _) = Ed25519Signer::generate().unwrap();
        let sig = a.sign(b"meta").unwrap();
        assert!(a.public_key().verifies(b"meta", &sig));
        assert!(!a.public_key().verifies(b"metA", &sig));
        assert!(!b.public_key().verifies(b"meta", &sig));
        let again = Ed25519Signer::from_pkcs8(&der).unwrap();
        assert_eq!(again.public_key(), a.public_key());
    }

    #[test]
    fn foreign_or_malformed_keys_are_refused() {
        assert!(PublicKey::from_json(b"{}").is_err());
        let rsa = br#"{"keytype":"rsa","scheme":"rsassa-pss-sha256","keyval":{"public":"00"}}"#;
        assert!(PublicKey::from_json(rsa).is_err());
        let short = br#"{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"0011"}}"#;
        assert!(PublicKey::from_json(short).is_err());
        let upper = format!(
            r#"{{"keytype":"ed25519","scheme":"ed25519","keyval":{{"public":"{}"}}}}"#,
            "AB".repeat(32)
        );
        assert!(
            PublicKey::from_json(upper.as_bytes()).is_err(),
            "one key, two ids"
        );
        assert!(
            Ed25519Signer::from_pem(
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            )
            .is_err()
        );
        assert!(Ed25519Signer::from_pkcs8(b"junk").is_err());
    }
}
