#[derive(Debug, thiserror::Error)]
pub enum VulnError {
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: &'static str, limit: usize },
    #[error("{what} is malformed at line {line}: {reason}")]
    Malformed {
        what: &'static str,
        line: usize,
        reason: String,
    },
    #[error("OSV archive refused: {0}")]
    Archive(String),
    #[error("gzip file refused: {0}")]
    Gzip(String),
    #[error("VEX document refused: {0}")]
    InvalidVex(String),
    #[error("unsupported SBOM: {0}")]
    UnsupportedSbom(String),
    #[error("OSV record `{id}`: {reason}")]
    InvalidRecord { id: String, reason: String },
    #[error("`{version}` is not a valid {ecosystem} version: {reason}")]
    InvalidVersion {
        ecosystem: &'static str,
        version: String,
        reason: String,
    },
}
