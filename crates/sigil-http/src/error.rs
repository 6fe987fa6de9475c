//! One error type for every API endpoint, rendered as RFC 9457 `application/problem+json`.
//! The client gets a stable `code` and a specific, safe `detail`; internal causes are logged,
//! never sent.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use sigil_authority::compliance::ComplianceError;
use sigil_authority::{
    AuthorityError, INTERNAL_REASON, KEY_BOUND_REASON, Refusal, RefusalKind, RefusalRecord,
    RequestError,
};
use sigil_ca::CaError;
use sigil_domain::{IdError, InventoryError, LifecycleError};
use sigil_store::{IssueError, StoreError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Seconds, sent as `Retry-After` (with 429).
    pub retry_after: Option<u64>,
}

/// RFC 9457 problem details.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:sigil:problem:<code>`
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable error code.
    pub code: String,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn rate_limited(detail: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                detail,
            )
        }
    }

    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
            detail,
        )
    }

    /// 429 for an address past its failed-authentication limit.
    pub fn too_many_failures(ip: Option<std::net::IpAddr>, retry_after: u64) -> Self {
        let address = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        Self::rate_limited(
            format!(
                "too many failed authentications from {address}; retry in {retry_after} s (they are counted in the audit log)"
            ),
            retry_after,
        )
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            "Invalid field",
            detail,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        // The cause may hold SQL or paths: log it, tell the client only that it happened.
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            INTERNAL_REASON,
        )
    }
}

impl ApiError {
    /// The refusal as the audit log records it.
    pub fn record(&self) -> RefusalRecord<'_> {
        RefusalRecord {
            code: self.code,
            reason: &self.detail,
            denied: matches!(self.status, StatusCode::CONFLICT | StatusCode::FORBIDDEN),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            type_uri: format!("urn:sigil:problem:{}", self.code),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code.to_owned(),
        };
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sigil\""),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => Self::not_found(e.to_string()),
            StoreError::Conflict(_) => {
                Self::new(StatusCode::CONFLICT, "conflict", "Conflict", e.to_string())
            }
            StoreError::Lifecycle(l) => l.into(),
            StoreError::KeyBound(_) => Self::new(
                StatusCode::CONFLICT,
                "key-already-bound",
                "Public key already in use",
                KEY_BOUND_REASON,
            ),
            StoreError::NotEntitled(detail) => Self::new(
                StatusCode::FORBIDDEN,
                "credential-not-current",
                "Forbidden",
                detail,
            ),
            other => Self::internal(&other),
        }
    }
}

impl From<AuthorityError> for ApiError {
    fn from(e: AuthorityError) -> Self {
        match e {
            AuthorityError::AuditIntegrity(reason) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit-integrity",
                "Audit log integrity failure",
                reason,
            ),
            AuthorityError::Store(e) => e.into(),
            other => Self::internal(&other),
        }
    }
}

impl From<sigil_authority::monitoring::MonitoringError> for ApiError {
    fn from(e: sigil_authority::monitoring::MonitoringError) -> Self {
        use sigil_authority::monitoring::MonitoringError as M;
        match e {
            M::Detect(d) => Self::invalid(d.to_string()),
            M::Store(e) => e.into(),
            M::Conflict(reason) => Self::new(StatusCode::CONFLICT, "conflict", "Conflict", reason),
            M::Transport(reason) => {
                tracing::error!(error = %reason, "metrics bus unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "metrics-bus-unavailable",
                    "Service unavailable",
                    "the metrics bus is unavailable; retry later",
                )
            }
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let (status, title) = match r.kind {
            RefusalKind::Unauthenticated => (StatusCode::UNAUTHORIZED, "Authentication required"),
            RefusalKind::Forbidden => (StatusCode::FORBIDDEN, "Forbidden"),
            RefusalKind::Conflict => (StatusCode::CONFLICT, "Conflict"),
            RefusalKind::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid field"),
            RefusalKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Payload too large"),
            RefusalKind::NotFound => (StatusCode::NOT_FOUND, "Not found"),
        };
        Self::new(status, r.code, title, r.detail)
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Refused(r) => r.into(),
            RequestError::Id(e) => e.into(),
            RequestError::Ca(e) => e.into(),
            RequestError::Store(e) => e.into(),
            RequestError::Issue(e) => e.into(),
            RequestError::Authority(e) => e.into(),
            other => Self::internal(&other),
        }
    }
}

impl From<ComplianceError> for ApiError {
    fn from(e: ComplianceError) -> Self {
        match e {
            ComplianceError::Store(e) => e.into(),
            other => Self::internal(&other),
        }
    }
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "illegal-transition",
            "Lifecycle transition not allowed",
            e.to_string(),
        )
    }
}

impl From<InventoryError> for ApiError {
    fn from(e: InventoryError) -> Self {
        Self::invalid(e.to_string())
    }
}

impl From<IdError> for ApiError {
    fn from(e: IdError) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-id",
            "Invalid identifier",
            e.to_string(),
        )
    }
}

impl From<CaError> for ApiError {
    fn from(e: CaError) -> Self {
        let (status, code, title) = match &e {
            CaError::CsrPem(_) | CaError::CsrDer(_) => {
                (StatusCode::BAD_REQUEST, "csr-malformed", "Malformed CSR")
            }
            CaError::CsrTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "csr-too-large",
                "CSR too large",
            ),
            CaError::CsrBadSignature => (
                StatusCode::BAD_REQUEST,
                "csr-signature-invalid",
                "CSR signature invalid",
            ),
            CaError::CsrSignatureAlgorithm(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "csr-signature-algorithm",
                "CSR signature algorithm not accepted",
            ),
            CaError::WeakKey(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "key-too-weak",
                "Key too weak",
            ),
            CaError::UnsupportedKey(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "key-unsupported",
                "Key type not accepted",
            ),
            CaError::UnknownProfile(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-profile",
                "Unknown certificate profile",
            ),
            CaError::ManufacturerCa(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "manufacturer-ca-invalid",
                "Manufacturer CA refused",
            ),
            CaError::ForeignCertificate(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "foreign-certificate-invalid",
                "Foreign certificate refused",
            ),
            _ => return Self::internal(&e),
        };
        Self::new(status, code, title, e.to_string())
    }
}

impl From<IssueError<CaError>> for ApiError {
    fn from(e: IssueError<CaError>) -> Self {
        match e {
            IssueError::Store(s) => s.into(),
            IssueError::Sign(c) => c.into(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let (code, title) = match &r {
            JsonRejection::JsonDataError(_) => {
                ("invalid-body", "Request body does not match the schema")
            }
            JsonRejection::JsonSyntaxError(_) => ("malformed-json", "Malformed JSON"),
            JsonRejection::MissingJsonContentType(_) => {
                ("unsupported-media-type", "Expected application/json")
            }
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ("body-too-large", "Request body too large")
            }
            _ => ("malformed-request", "Malformed request"),
        };
        Self::new(r.status(), code, title, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query string",
            r.body_text(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sigil_domain::DeviceId;

    fn errors() -> Vec<RequestError> {
        let device: DeviceId = "01a241a0-38e3-775e-84f4-93162dd87c81".parse().unwrap();
        vec![
            Refusal::forbidden("bootstrap-untrusted", "not a registered CA").into(),
            Refusal::unauthenticated("the token is spent").into(),
            "not-an-id".parse::<DeviceId>().unwrap_err().into(),
            CaError::WeakKey("RSA 1024".into()).into(),
            CaError::CaCertificate("broken".into()).into(),
            StoreError::KeyBound(device).into(),
            StoreError::NotFound {
                kind: "device",
                id: device.to_string(),
            }
            .into(),
            StoreError::NotEntitled("superseded".into()).into(),
            StoreError::Corrupt("row 7".into()).into(),
            IssueError::<CaError>::Store(StoreError::Closed).into(),
            IssueError::Sign(CaError::UnknownProfile("x".into())).into(),
            AuthorityError::AuditIntegrity("the log was rewritten".into()).into(),
            AuthorityError::Random.into(),
        ]
    }

    /// What the audit log records of a refused request (a released token's reason) is what the
    /// caller was told, and internal causes reach neither.
    #[test]
    fn callers_and_the_audit_log_are_told_the_same_reason() {
        for (e, again) in errors().into_iter().zip(errors()) {
            let reason = e.public_reason();
            let problem = ApiError::from(again);
            assert_eq!(problem.detail, reason, "{e:?}");
            assert!(
                !reason.contains("row 7") && !reason.contains("closed"),
                "{reason}"
            );
        }
    }
}
