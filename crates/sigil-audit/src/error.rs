#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("malformed audit entry: {0}")]
    Entry(String),
    #[error("audit entry is not in RFC 8785 canonical form")]
    NotCanonical,
    #[error("Merkle tree: {0}")]
    Tree(String),
    #[error("proof does not verify: {0}")]
    Proof(String),
    #[error("malformed checkpoint: {0}")]
    Checkpoint(String),
    #[error("signature: {0}")]
    Signature(String),
    #[error("log key: {0}")]
    Key(String),
    #[error("malformed export: {0}")]
    Export(String),
}
