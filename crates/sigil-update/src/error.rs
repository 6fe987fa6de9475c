use thiserror::Error;

/// Why update data was refused. Every message names the offending value and the rule.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateError {
    #[error("version `{value}` is not a valid {scheme} version: {reason}")]
    InvalidVersion {
        scheme: &'static str,
        value: String,
        reason: String,
    },
    #[error("unknown version scheme `{0}` (expected `semver` or `integer`)")]
    UnknownScheme(String),
    #[error("target name `{name}` is not allowed: {reason}")]
    InvalidTargetName { name: String, reason: &'static str },
    #[error("key: {0}")]
    Key(String),
    #[error("metadata: {0}")]
    Metadata(String),
    /// A rollout plan, percentage or window that cannot work.
    #[error("{0}")]
    Rollout(String),
    #[error("{role} metadata has {valid} valid signature(s) of its {threshold} required")]
    Threshold {
        role: &'static str,
        valid: usize,
        threshold: u32,
    },
    #[error("signature by key {keyid} does not verify over the {role} metadata")]
    BadSignature { role: &'static str, keyid: String },
    #[error("key {keyid} is not a {role} key")]
    NotRoleKey { role: &'static str, keyid: String },
}
