use std::path::PathBuf;

/// Errors starting or running the server (not request errors: see `api::ApiError`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already holds a Sigil CA; refusing to overwrite it")]
    AlreadyInitialised(PathBuf),
    #[error("the CA keys are encrypted and no passphrase is available: set SIGIL_CA_PASSPHRASE")]
    NoPassphrase,
    #[error("SIGIL_CA_PASSPHRASE is too short (at least {0} characters)")]
    WeakPassphrase(usize),
    #[error("{0} is readable by group or others; refusing to use it (chmod 600)")]
    InsecurePermissions(PathBuf),
    #[error("the system random number generator failed")]
    Random,
    #[error("CA: {0}")]
    Ca(#[from] sigil_ca::CaError),
    #[error("storage: {0}")]
    Store(#[from] sigil_store::StoreError),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("{0}")]
    AuditIntegrity(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("access policy: {0}")]
    Policy(#[from] sigil_policy::PolicyError),
    #[error("compliance catalogue: {0}")]
    Catalogue(#[from] sigil_compliance::CatalogueError),
}
