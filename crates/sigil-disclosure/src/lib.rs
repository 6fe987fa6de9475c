//! The public disclosure desk, on the API's HTTPS listener (RFC 9116 requires `https`):
//!
//! - `GET /.well-known/security.txt`: the organisation's policy and contacts;
//! - `GET /disclosure/{product}/security.txt`: a product's (its own, else the organisation's);
//! - `GET /disclosure/{product}/vex.json`: the product's fixed and not-affected VEX
//!   statements (OpenVEX), so fixed vulnerabilities are public (CRA Annex I Part II (4)), for
//!   products with a policy of their own; built at most once a minute per product;
//! - `POST /disclosure/reports`: a vulnerability report (JSON), answered with a receipt;
//! - `GET /disclosure/reports/status`: where a report stands, for its receipt (as a bearer
//!   token: a secret in a URL ends up in logs).
//!
//! Nothing here needs an account: reporters are strangers. So the intake is bounded: a small
//! body, a few well-formed reports per address (IPv6: per /48) and hour and a cap for all, a
//! cap on reports waiting for
//! acknowledgement, and every report audited (its digest, not its text). Only products with a
//! published policy take reports.
//!
//! It sees the authority only through [`DisclosureDesk`].

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use sigil_authority::vulns::{Receipt, ReportStatus};
use sigil_authority::{Authority, RequestError};
use sigil_http::{ApiError, ApiJson};
use sigil_vuln::disclosure::Submission;

/// The largest report body taken (the details field holds at most 16,000 characters).
pub const MAX_REPORT_BYTES: usize = 64 * 1024;

/// What the desk asks of the authority.
pub trait DisclosureDesk: Send + Sync + 'static {
    /// The `security.txt` of `product` (`None`: the organisation's), if published.
    fn security_txt(
        &self,
        product: Option<&str>,
    ) -> impl Future<Output = Result<Option<String>, RequestError>> + Send;
    /// The OpenVEX document of `product`, if a disclosure policy is published for it.
    fn published_vex(
        &self,
        product: &str,
    ) -> impl Future<Output = Result<Option<serde_json::Value>, RequestError>> + Send;
    /// Whether one more report from `ip` is taken now (`Err`: retry after these seconds).
    fn admit(&self, ip: Option<IpAddr>) -> Result<(), u64>;
    fn receive(
        &self,
        ip: Option<IpAddr>,
        submission: &Submission,
    ) -> impl Future<Output = Result<Receipt, RequestError>> + Send;
    fn status(
        &self,
        receipt: &str,
    ) -> impl Future<Output = Result<Option<ReportStatus>, RequestError>> + Send;
}

impl DisclosureDesk for Authority {
    async fn security_txt(&self, product: Option<&str>) -> Result<Option<String>, RequestError> {
        Authority::security_txt(self, product).await
    }

    async fn published_vex(
        &self,
        product: &str,
    ) -> Result<Option<serde_json::Value>, RequestError> {
        self.public_vex(product).await
    }

    fn admit(&self, ip: Option<IpAddr>) -> Result<(), u64> {
        self.intake_admit(ip)
    }

    async fn receive(
        &self,
        ip: Option<IpAddr>,
        submission: &Submission,
    ) -> Result<Receipt, RequestError> {
        self.receive_public_report(ip, submission).await
    }

    async fn status(&self, receipt: &str) -> Result<Option<ReportStatus>, RequestError> {
        self.report_status(receipt).await
    }
}

/// The desk's routes, generic over what answers them.
pub fn router<A: DisclosureDesk>() -> Router<Arc<A>> {
    Router::new()
        .route("/.well-known/security.txt", get(organisation::<A>))
        .route("/disclosure/{product}/security.txt", get(product::<A>))
        .route("/disclosure/{product}/vex.json", get(vex::<A>))
        .route(
            "/disclosure/reports",
            post(receive::<A>).layer(DefaultBodyLimit::max(MAX_REPORT_BYTES)),
        )
        .route("/disclosure/reports/status", get(status::<A>))
}

fn text_file(body: String) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            // Policies change; a day's caching is what crawlers expect of the file.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn organisation<A: DisclosureDesk>(State(desk): State<Arc<A>>) -> Result<Response, ApiError> {
    desk.security_txt(None)
        .await?
        .map(text_file)
        .ok_or_else(|| ApiError::not_found("no disclosure policy is published"))
}

async fn product<A: DisclosureDesk>(
    State(desk): State<Arc<A>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let none = || ApiError::not_found("no disclosure policy is published for this product");
    let Path(product) = path.map_err(|_| none())?;
    desk.security_txt(Some(&product))
        .await?
        .map(text_file)
        .ok_or_else(none)
}

/// Published VEX documents by (desk, product), with when they were built: strangers asking
/// again and again cost one build per product and minute.
type VexCache = std::sync::Mutex<
    std::collections::HashMap<(usize, String), (std::time::Instant, serde_json::Value)>,
>;
static VEX_CACHE: std::sync::LazyLock<VexCache> = std::sync::LazyLock::new(Default::default);
const VEX_FRESH: std::time::Duration = std::time::Duration::from_secs(60);
const VEX_CACHED_PRODUCTS: usize = 4096;

async fn vex<A: DisclosureDesk>(
    State(desk): State<Arc<A>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let none = || ApiError::not_found("no VEX is published for this product");
    let Path(product) = path.map_err(|_| none())?;
    let key = (Arc::as_ptr(&desk).cast::<()>() as usize, product.clone());
    let cached = VEX_CACHE.lock().ok().and_then(|c| {
        c.get(&key)
            .filter(|(at, _)| at.elapsed() < VEX_FRESH)
            .map(|(_, d)| d.clone())
    });
    let document = match cached {
        Some(d) => d,
        None => {
            let built = desk.published_vex(&product).await?.ok_or_else(none)?;
            if let Ok(mut cache) = VEX_CACHE.lock() {
                if cache.len() >= VEX_CACHED_PRODUCTS {
                    cache.clear();
                }
                cache.insert(key, (std::time::Instant::now(), built.clone()));
            }
            built
        }
    };
    Ok((
        [(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        )],
        axum::Json(document),
    )
        .into_response())
}

async fn receive<A: DisclosureDesk>(
    State(desk): State<Arc<A>>,
    request: Request,
) -> Result<Response, ApiError> {
    let ip = sigil_http::peer_ip(&request);
    let ApiJson(submission) = ApiJson::<Submission>::from_request(request, &()).await?;
    // Only a well-formed report spends the quota: junk cannot use up everyone's hour.
    submission.check().map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-disclosure",
            "Report refused",
            e.to_string(),
        )
    })?;
    desk.admit(ip).map_err(|retry| {
        ApiError::rate_limited(
            "too many reports from this network or in all this hour; write to a contact in security.txt",
            retry,
        )
    })?;
    let receipt = desk.receive(ip, &submission).await?;
    Ok((StatusCode::CREATED, axum::Json(receipt)).into_response())
}

async fn status<A: DisclosureDesk>(
    State(desk): State<Arc<A>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let receipt = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|r| r.starts_with("sigil-report_") && r.len() < 100)
        .ok_or_else(|| ApiError::unauthenticated("send the report's receipt as a bearer token"))?;
    let found = desk
        .status(receipt)
        .await?
        .ok_or_else(|| ApiError::not_found("no report has this receipt"))?;
    Ok(axum::Json(found).into_response())
}
