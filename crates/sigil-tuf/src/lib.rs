//! Each product's TUF repository, read-only, on the API's HTTPS listener:
//!
//! - `GET /tuf/{product}/metadata/{N.root.json | timestamp.json | N.snapshot.json |
//!   N.targets.json | root.json}`: published metadata only (a document awaiting offline
//!   signatures is never served);
//! - `GET /tuf/{product}/targets/{dir/HASH.name}`: a published release's artefact, by the
//!   consistent-snapshot path TUF clients ask for.
//!
//! Everything served is signed (metadata) or named by its hash (targets), so the URLs are
//! stable and versioned files are cacheable forever; `timestamp.json` and `root.json` are
//! not cached. Nothing here writes, and nothing needs a credential: a TUF client trusts the
//! signatures, not the transport.
//!
//! It sees the authority only through [`UpdateRepository`].

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use sigil_authority::updates::TargetFile;
use sigil_authority::{Authority, RequestError};
use sigil_http::ApiError;
use sigil_update::tuf::{MetadataFile, TargetName};

/// What the repository front-end asks of the authority.
pub trait UpdateRepository: Send + Sync + 'static {
    /// A published metadata file of `product`, as served.
    fn metadata(
        &self,
        product: &str,
        file: MetadataFile,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, RequestError>> + Send;
    /// The artefact of a published release of `product` named `name` with SHA-256 `sha256`.
    fn target(
        &self,
        product: &str,
        sha256: &str,
        name: &TargetName,
    ) -> impl Future<Output = Result<Option<TargetFile>, RequestError>> + Send;
}

impl UpdateRepository for Authority {
    async fn metadata(
        &self,
        product: &str,
        file: MetadataFile,
    ) -> Result<Option<Vec<u8>>, RequestError> {
        self.updates().metadata_file(product, file).await
    }

    async fn target(
        &self,
        product: &str,
        sha256: &str,
        name: &TargetName,
    ) -> Result<Option<TargetFile>, RequestError> {
        self.updates().target_file(product, sha256, name).await
    }
}

/// The repository's routes, generic over what answers them.
pub fn router<A: UpdateRepository>() -> Router<Arc<A>> {
    Router::new()
        .route("/tuf/{product}/metadata/{file}", get(metadata::<A>))
        .route("/tuf/{product}/targets/{*path}", get(target::<A>))
}

/// The two path parameters; a path that is not UTF-8 names nothing served here.
fn parts(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), ApiError> {
    path.map(|Path(p)| p)
        .map_err(|_| ApiError::not_found("no such file"))
}

/// A product id from the path; anything else is simply not a repository here.
fn product_id(raw: &str) -> Result<String, ApiError> {
    raw.parse::<sigil_domain::ProductId>()
        .map(|p| p.to_string())
        .map_err(|_| ApiError::not_found("no such update repository"))
}

async fn metadata<A: UpdateRepository>(
    State(repo): State<Arc<A>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (product, file) = parts(path)?;
    let product = product_id(&product)?;
    let parsed =
        MetadataFile::parse(&file).ok_or_else(|| ApiError::not_found("no such metadata file"))?;
    let bytes = repo
        .metadata(&product, parsed)
        .await?
        .ok_or_else(|| ApiError::not_found("no such metadata file"))?;
    let cache = match parsed {
        MetadataFile::Timestamp | MetadataFile::LatestRoot => "no-cache",
        _ => "public, max-age=31536000, immutable",
    };
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        bytes,
    )
        .into_response())
}

async fn target<A: UpdateRepository>(
    State(repo): State<Arc<A>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (product, path) = parts(path)?;
    let product = product_id(&product)?;
    let (sha256, name) = TargetName::from_consistent_path(&path)
        .ok_or_else(|| ApiError::not_found("no such target"))?;
    let found = repo
        .target(&product, &sha256, &name)
        .await?
        .ok_or_else(|| ApiError::not_found("no such target"))?;
    let file = tokio::fs::File::open(&found.path).await.map_err(|e| {
        tracing::error!(path = %found.path.display(), error = %e, "a published release's artefact is missing");
        ApiError::not_found("no such target")
    })?;
    // The file's own length: the recorded one is the TUF client's to check against.
    let length = file
        .metadata()
        .await
        .map(|m| m.len())
        .unwrap_or(found.length);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(length)),
        ],
        body,
    )
        .into_response())
}
