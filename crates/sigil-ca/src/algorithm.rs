use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, RsaKeySize, SignatureAlgorithm};

use crate::CaError;

/// Key algorithms Sigil can generate CA and server keys with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    #[default]
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa3072,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 4] = [
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::Ed25519,
        Self::Rsa3072,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Ed25519 => "ed25519",
            Self::Rsa3072 => "rsa-3072",
        }
    }

    pub(crate) fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
            Self::Rsa3072 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// A fresh key pair from the operating system's CSPRNG (through aws-lc-rs).
    pub fn generate(self) -> Result<KeyPair, CaError> {
        let key = match self {
            Self::Rsa3072 => {
                KeyPair::generate_rsa_for(self.signature_algorithm(), RsaKeySize::_3072)?
            }
            other => KeyPair::generate_for(other.signature_algorithm())?,
        };
        Ok(key)
    }

    /// The algorithm of an existing key, if it is one Sigil uses.
    pub(crate) fn of_key(key: &KeyPair) -> Option<Self> {
        let alg = key.algorithm();
        Self::ALL
            .into_iter()
            .find(|a| a.signature_algorithm() == alg)
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = CaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| CaError::UnknownAlgorithm(s.chars().take(32).collect()))
    }
}
