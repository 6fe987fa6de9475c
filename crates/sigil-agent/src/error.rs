/// Why the agent stopped or an attempt failed. Each has its own process exit code, so a
/// supervisor (systemd, a gateway's init) can tell a retryable outage from a dead identity.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("server unreachable: {0}")]
    Unreachable(String),
    #[error(
        "the server's CA does not match the pinned fingerprint sha256:{pinned}; it offered {offered:?}"
    )]
    FingerprintMismatch {
        pinned: String,
        offered: Vec<String>,
    },
    #[error("the server refused the enrolment credential: {0}")]
    CredentialRefused(String),
    #[error("this device's certificate is revoked: {0}")]
    Revoked(String),
    #[error("the device's clock is {skew_seconds} s away from the server's; fix the time first")]
    ClockSkew { skew_seconds: i64 },
    #[error("the certificate expired at {0} before it could be renewed; enrol again")]
    Expired(time::OffsetDateTime),
    #[error("the server answered {status}: {detail}")]
    Server { status: u16, detail: String },
    #[error("the server's answer is not acceptable: {0}")]
    BadAnswer(String),
    #[error("state directory: {0}")]
    State(String),
    #[error("no identity in the state directory; run `sigil-agent enroll` first")]
    NotEnrolled,
    #[error("invalid argument: {0}")]
    Usage(String),
    /// Signed update metadata or a target failed TUF's checks: an attack, or a broken
    /// repository. Nothing was installed.
    #[error("update refused ({attack}): {detail}")]
    UpdateRefused { attack: Attack, detail: String },
    #[error("the product's signed metadata lists no target {0}")]
    NoSuchTarget(String),
    #[error(
        "release {offered} is not newer than the installed {installed}; installing it needs an explicit rollback"
    )]
    Downgrade { offered: String, installed: String },
    #[error("installation failed: {0}")]
    InstallFailed(String),
}

/// The attacks The Update Framework names, each refused with its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// A target whose content is not what the targets metadata signs (tampered).
    ArbitrarySoftware,
    /// Metadata older than what the device has already seen (rollback).
    Rollback,
    /// Metadata past its expiry (indefinite freeze).
    Freeze,
    /// A file larger than signed or allowed (endless data).
    EndlessData,
    /// Metadata files that do not belong together (mix-and-match).
    MixAndMatch,
    /// Signatures that do not reach the role's threshold of trusted keys (a wrong, revoked or
    /// missing key).
    UntrustedSignature,
}

impl Attack {
    pub fn exit_code(self) -> i32 {
        match self {
            Attack::ArbitrarySoftware => 90,
            Attack::Rollback => 91,
            Attack::Freeze => 92,
            Attack::EndlessData => 93,
            Attack::MixAndMatch => 94,
            Attack::UntrustedSignature => 95,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Attack::ArbitrarySoftware => "arbitrary-software",
            Attack::Rollback => "rollback",
            Attack::Freeze => "freeze",
            Attack::EndlessData => "endless-data",
            Attack::MixAndMatch => "mix-and-match",
            Attack::UntrustedSignature => "untrusted-signature",
        }
    }
}

impl std::fmt::Display for Attack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl AgentError {
    /// Process exit code (sysexits-style where one fits).
    pub fn exit_code(&self) -> i32 {
        match self {
            AgentError::Usage(_) => 64,
            AgentError::BadAnswer(_) | AgentError::Server { .. } => 65,
            AgentError::Unreachable(_) => 69,
            AgentError::State(_) | AgentError::NotEnrolled => 73,
            AgentError::FingerprintMismatch { .. } => 76,
            AgentError::CredentialRefused(_) => 77,
            AgentError::Revoked(_) => 78,
            AgentError::Expired(_) => 79,
            AgentError::ClockSkew { .. } => 80,
            AgentError::UpdateRefused { attack, .. } => attack.exit_code(),
            AgentError::NoSuchTarget(_) => 96,
            AgentError::Downgrade { .. } => 97,
            AgentError::InstallFailed(_) => 98,
        }
    }

    /// A short name for the kind of failure (for counting them).
    pub fn kind(&self) -> &'static str {
        match self {
            AgentError::Unreachable(_) => "unreachable",
            AgentError::FingerprintMismatch { .. } => "fingerprint-mismatch",
            AgentError::CredentialRefused(_) => "credential-refused",
            AgentError::Revoked(_) => "revoked",
            AgentError::ClockSkew { .. } => "clock-skew",
            AgentError::Expired(_) => "expired",
            AgentError::Server { .. } => "server-error",
            AgentError::BadAnswer(_) => "bad-answer",
            AgentError::State(_) => "state",
            AgentError::NotEnrolled => "not-enrolled",
            AgentError::Usage(_) => "usage",
            AgentError::UpdateRefused { attack, .. } => attack.name(),
            AgentError::NoSuchTarget(_) => "no-such-target",
            AgentError::Downgrade { .. } => "downgrade",
            AgentError::InstallFailed(_) => "install-failed",
        }
    }

    /// Worth retrying later: the server may come back; a refused or revoked identity will not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AgentError::Unreachable(_) | AgentError::Server { .. } | AgentError::BadAnswer(_)
        )
    }
}

pub(crate) fn state_err(what: &str, e: impl std::fmt::Display) -> AgentError {
    AgentError::State(format!("{what}: {e}"))
}
