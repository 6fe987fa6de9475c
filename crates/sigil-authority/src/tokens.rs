//! Secrets handed to callers (API tokens, enrolment tokens, session cookies): minted from the
//! system RNG, stored only as SHA-256.

use base64::Engine;
use sigil_domain::Fingerprint;

use crate::AuthorityError;

/// Name of the bootstrap token written to `DIR/admin.token`.
pub const ADMIN_TOKEN_NAME: &str = "bootstrap-admin";

/// SHA-256 of a token or session secret, as stored.
pub fn token_hash(token: &str) -> Fingerprint {
    Fingerprint::from_digest(&sigil_ca::sha256(token.as_bytes()))
}

/// A fresh secret: `prefix` followed by 256 random bits, base64url.
pub fn generate_secret(prefix: &str) -> Result<String, AuthorityError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| AuthorityError::Random)?;
    Ok(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A fresh API token secret: `sigil_` followed by 256 random bits, base64url.
pub fn generate_token() -> Result<String, AuthorityError> {
    generate_secret("sigil_")
}
