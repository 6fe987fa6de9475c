use thiserror::Error;

#[derive(Debug, Error)]
pub enum MosquittoError {
    /// The broker's answer on the response topic is not what the plugin sends.
    #[error("malformed dynamic-security response: {0}")]
    Malformed(String),
    /// A command was refused by the plugin (other than the idempotent "not found" on deletes).
    #[error("dynamic-security refused {command}: {error}")]
    Refused { command: String, error: String },
    #[error(
        "no dynamic-security response within {0:?} (is the plugin loaded, and may this user use $CONTROL/dynamic-security?)"
    )]
    Timeout(std::time::Duration),
    #[error("broker connection: {0}")]
    Connection(String),
    #[error("configuration: {0}")]
    Config(String),
}
