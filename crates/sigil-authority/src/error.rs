//! The authority's errors. Two kinds: what stops a service (configuration, files, keys, storage:
//! [`AuthorityError`]), and why a request was refused ([`Refusal`]), which a front-end renders in
//! its own protocol (problem+json for the REST API and EST). Neither knows HTTP.

use std::path::PathBuf;

/// Errors starting or running the authority's services.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
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
    /// A background computation ended abnormally (a panic on its thread).
    #[error("internal: {0}")]
    Internal(String),
}

/// What kind of refusal: front-ends map it to their protocol's status (401, 403, 409, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// No acceptable credential was presented.
    Unauthenticated,
    /// The caller is known but may not do this.
    Forbidden,
    /// The request conflicts with the state (an ambiguous match, a key bound elsewhere).
    Conflict,
    /// A field or document is not acceptable.
    Invalid,
    /// A body (an uploaded artefact) is larger than the server accepts.
    TooLarge,
    /// What the request names does not exist.
    NotFound,
}

/// A request refused by the authority, with a stable code and a detail safe to show the caller.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct Refusal {
    pub kind: RefusalKind,
    /// Stable, machine-readable (`bootstrap-untrusted`, `certificate-not-current`, ...).
    pub code: &'static str,
    pub detail: String,
}

impl Refusal {
    pub fn new(kind: RefusalKind, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            detail: detail.into(),
        }
    }

    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(RefusalKind::Unauthenticated, "unauthenticated", detail)
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(RefusalKind::Forbidden, code, detail)
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(RefusalKind::Invalid, "invalid-field", detail)
    }
}

/// Why a request the authority served failed: refused, or a domain error the front-end maps
/// (bad identifier, CSR, storage conflict), or an internal failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Id(#[from] sigil_domain::IdError),
    #[error(transparent)]
    Ca(#[from] sigil_ca::CaError),
    #[error(transparent)]
    Store(#[from] sigil_store::StoreError),
    #[error(transparent)]
    Issue(#[from] sigil_store::IssueError<sigil_ca::CaError>),
    #[error(transparent)]
    Authority(#[from] AuthorityError),
}

/// What a caller is told of a failure it did not cause: the cause is logged, never shown.
pub const INTERNAL_REASON: &str = "the server failed to process the request; see its log";

/// What a caller is told when the key it presented is certified for another device (which
/// device is not the caller's business).
pub const KEY_BOUND_REASON: &str =
    "this public key is already bound to another device; generate a new key on the device";

impl RequestError {
    /// The reason as the caller is told it, for audit entries that record a refusal (a token
    /// released after a refused issuance): the refusal's own words, or for an internal failure
    /// only that it happened. Front-ends tell callers the same (`sigil-http` tests that its
    /// problem details agree).
    pub fn public_reason(&self) -> String {
        match self {
            Self::Refused(r) => r.detail.clone(),
            Self::Id(e) => e.to_string(),
            Self::Ca(e) => ca_reason(e),
            Self::Store(e) => store_reason(e),
            Self::Issue(sigil_store::IssueError::Store(e)) => store_reason(e),
            Self::Issue(sigil_store::IssueError::Sign(e)) => ca_reason(e),
            Self::Authority(AuthorityError::AuditIntegrity(reason)) => reason.clone(),
            Self::Authority(AuthorityError::Store(e)) => store_reason(e),
            Self::Authority(_) => INTERNAL_REASON.to_owned(),
        }
    }
}

/// CA errors the caller caused (its CSR, key, profile or manufacturer CA) are explained; others
/// are internal.
pub fn ca_error_is_callers(e: &sigil_ca::CaError) -> bool {
    use sigil_ca::CaError as E;
    matches!(
        e,
        E::CsrPem(_)
            | E::CsrDer(_)
            | E::CsrTooLarge(_)
            | E::CsrBadSignature
            | E::CsrSignatureAlgorithm(_)
            | E::WeakKey(_)
            | E::UnsupportedKey(_)
            | E::UnknownProfile(_)
            | E::ManufacturerCa(_)
    )
}

fn ca_reason(e: &sigil_ca::CaError) -> String {
    if ca_error_is_callers(e) {
        e.to_string()
    } else {
        INTERNAL_REASON.to_owned()
    }
}

fn store_reason(e: &sigil_store::StoreError) -> String {
    use sigil_store::StoreError as E;
    match e {
        E::NotFound { .. } | E::Conflict(_) | E::Lifecycle(_) => e.to_string(),
        E::KeyBound(_) => KEY_BOUND_REASON.to_owned(),
        E::NotEntitled(detail) => detail.clone(),
        _ => INTERNAL_REASON.to_owned(),
    }
}
