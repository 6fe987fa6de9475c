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
