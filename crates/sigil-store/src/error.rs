use sigil_domain::{DeviceId, IssuanceRefusal, LifecycleError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error("this public key is already bound to another device ({0})")]
    KeyBound(DeviceId),
    /// The credential a request was authenticated with does not entitle it to a new identity
    /// (a superseded certificate, or a bootstrap certificate of a device already enrolled).
    #[error("{0}")]
    NotEntitled(String),
    #[error("invalid database configuration: {0}")]
    Config(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the store is shut down")]
    Closed,
    #[error("recording failed, nothing was committed: {0}")]
    Batch(String),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<IssuanceRefusal> for StoreError {
    fn from(e: IssuanceRefusal) -> Self {
        match e {
            IssuanceRefusal::Lifecycle(l) => Self::Lifecycle(l),
            IssuanceRefusal::KeyBound(owner) => Self::KeyBound(owner),
        }
    }
}

/// Failure of [`crate::Store::issue_certificate`]: either the store refused, or the signer did.
#[derive(Debug, thiserror::Error)]
pub enum IssueError<E> {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing failed: {0}")]
    Sign(E),
}
