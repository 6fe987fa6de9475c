/// Errors starting or running the server (not request errors: see `sigil_http::ApiError`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error(transparent)]
    Authority(#[from] sigil_authority::AuthorityError),
    #[error("CA: {0}")]
    Ca(#[from] sigil_ca::CaError),
    #[error("storage: {0}")]
    Store(#[from] sigil_store::StoreError),
    #[error(transparent)]
    Broker(#[from] sigil_broker::BrokerError),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}
