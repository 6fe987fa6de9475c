//! Sealing small secrets (TOTP seeds) for the database with AES-256-GCM: a database dump alone
//! does not give an attacker anyone's second factor.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::AuthorityError;

pub struct SecretBox {
    key: LessSafeKey,
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Result<Self, AuthorityError> {
        let key = UnboundKey::new(&AES_256_GCM, key).map_err(|_| AuthorityError::Random)?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// `nonce || ciphertext || tag`; `context` (the owner's name) is bound as associated data,
    /// so a sealed value moved to another row does not open.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, AuthorityError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| AuthorityError::Random)?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| AuthorityError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// The plaintext, or `None` if the value was not sealed by this key for `context`.
    pub fn open(&self, sealed: &[u8], context: &str) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_context() {
        let a = SecretBox::new(&[7; 32]).unwrap();
        let b = SecretBox::new(&[8; 32]).unwrap();
        let sealed = a.seal(b"seed", "alice").unwrap();
        assert_eq!(a.open(&sealed, "alice").unwrap(), b"seed");
        assert!(a.open(&sealed, "bob").is_none());
        assert!(b.open(&sealed, "alice").is_none());
        assert!(a.open(&sealed[..5], "alice").is_none());
        let mut tampered = sealed.clone();
        tampered[15] ^= 1;
        assert!(a.open(&tampered, "alice").is_none());
    }
}
