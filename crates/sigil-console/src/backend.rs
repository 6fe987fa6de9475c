//! The console's one way to the authority: the REST API itself, called in process. Every read
//! and every action a page shows goes through the API's guard (the same session, CSRF rule and
//! Cedar rule table), its validation and its audit entries, so the console can never do or
//! see more than the person could with `curl`.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

use sigil_http::PeerAddr;

/// The header the API requires of a browser session's changes (its CSRF rule): a cross-site
/// form cannot send it, and the session cookie is SameSite=Strict.
pub const CSRF_HEADER: &str = "x-sigil-csrf";
/// Largest API answer a page reads (an audit page of 500 entries fits many times over).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct Backend {
    api: axum::Router,
}

/// What a console request carries on to the API: the person's cookie, their address (for the
/// API's login limits and audit entries) and whether their browser sent the CSRF header.
#[derive(Debug, Clone, Default)]
pub struct Forwarded {
    cookie: Option<HeaderValue>,
    peer: Option<PeerAddr>,
    csrf: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Forwarded {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // HTTP/2 browsers may send each cookie in a header of its own: join them all.
        let cookies: Vec<&str> = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let cookie = (!cookies.is_empty())
            .then(|| HeaderValue::from_str(&cookies.join("; ")).ok())
            .flatten();
        Ok(Self {
            cookie,
            peer: parts.extensions.get::<PeerAddr>().copied(),
            csrf: parts.headers.contains_key(CSRF_HEADER),
        })
    }
}

impl Forwarded {
    /// Whether the request carries a session cookie at all.
    pub fn has_session(&self) -> bool {
        self.cookie
            .as_ref()
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| {
                c.split(';')
                    .any(|pair| pair.trim().starts_with("sigil_session="))
            })
    }

    /// The same request, vouched for by the console's own same-origin check (login, logout).
    pub fn with_csrf(mut self) -> Self {
        self.csrf = true;
        self
    }
}

/// An API answer that was not a success: its status and RFC 9457 problem, for the page to show.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{title}: {detail}")]
pub struct ApiFailure {
    pub status: StatusCode,
    pub title: String,
    pub detail: String,
}

impl ApiFailure {
    fn from_answer(status: StatusCode, body: &[u8]) -> Self {
        let problem: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let text = |field: &str| problem[field].as_str().map(str::to_owned);
        Self {
            status,
            title: text("title")
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("Error").to_owned()),
            detail: text("detail").unwrap_or_default(),
        }
    }

    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            title: "Internal error".into(),
            detail: detail.into(),
        }
    }
}

/// A successful answer, whole.
pub struct Answer {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiFailure> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiFailure::internal(format!("the API's answer did not parse: {e}")))
    }
}

impl Backend {
    pub fn new(api: axum::Router) -> Self {
        Self { api }
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        from: &Forwarded,
        path: &str,
    ) -> Result<T, ApiFailure> {
        self.call(from, Method::GET, path, None).await?.json()
    }

    /// A download: the API's answer to a GET goes to the browser as it comes (a CSV export of
    /// a million devices is never held whole); a refusal becomes the console's error page.
    pub async fn download(&self, from: &Forwarded, path: &str) -> axum::response::Response {
        use axum::response::IntoResponse;
        match self.forward(from, path).await {
            Ok(response) => response,
            Err(e) => crate::error::ConsoleError::Api(e).into_response(),
        }
    }

    async fn forward(
        &self,
        from: &Forwarded,
        path: &str,
    ) -> Result<axum::response::Response, ApiFailure> {
        let response = self.send(from, Method::GET, path, None, None).await?;
        if response.status().is_success() {
            return Ok(response.map(Body::new));
        }
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(ApiFailure::from_answer(status, &body))
    }

    /// One API call with a raw body of the given type (a CSV file).
    pub async fn call_raw(
        &self,
        from: &Forwarded,
        path: &str,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), ApiFailure> {
        let response = self
            .send(
                from,
                Method::POST,
                path,
                Some(content_type),
                Some(Body::from(body)),
            )
            .await?;
        let (parts, body) = response.into_parts();
        let body = http_body_util::Limited::new(body, MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| ApiFailure::internal(format!("reading the API's answer: {e}")))?
            .to_bytes();
        Ok((parts.status, body))
    }

    /// One API call. `path` includes its query string; `json` is the request body, if any.
    pub async fn call(
        &self,
        from: &Forwarded,
        method: Method,
        path: &str,
        json: Option<&serde_json::Value>,
    ) -> Result<Answer, ApiFailure> {
        let response = match json {
            Some(value) => {
                let body = Body::from(value.to_string());
                self.send(from, method, path, Some("application/json"), Some(body))
                    .await?
            }
            None => self.send(from, method, path, None, None).await?,
        };
        let (parts, body) = response.into_parts();
        let body = http_body_util::Limited::new(body, MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| ApiFailure::internal(format!("reading the API's answer: {e}")))?
            .to_bytes();
        if parts.status.is_success() {
            Ok(Answer {
                headers: parts.headers,
                body,
            })
        } else {
            Err(ApiFailure::from_answer(parts.status, &body))
        }
    }

    /// The request as the person makes it: their cookie, their address, their CSRF header.
    async fn send(
        &self,
        from: &Forwarded,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Option<Body>,
    ) -> Result<axum::response::Response, ApiFailure> {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(cookie) = &from.cookie {
            request = request.header(header::COOKIE, cookie.clone());
        }
        if from.csrf {
            request = request.header(CSRF_HEADER, "1");
        }
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let mut request = request
            .body(body.unwrap_or_else(Body::empty))
            .map_err(|e| ApiFailure::internal(format!("bad API request: {e}")))?;
        if let Some(peer) = from.peer {
            request.extensions_mut().insert(peer);
        }
        self.api
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| ApiFailure::internal(e.to_string()))
    }
}
