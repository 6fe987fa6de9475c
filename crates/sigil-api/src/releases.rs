//! Software updates: artefact uploads, releases, and each product's update channel (its TUF
//! repository's keys, current metadata, and documents awaiting offline signatures).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::{Extension, Json};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use sigil_authority::rfc3339;
use sigil_authority::updates::{ChannelKeys, NewRelease, PendingDocument, SignatureSubmission};
use sigil_domain::ProductId;
use sigil_store::ReleaseRecord;
use sigil_update::VersionScheme;
use sigil_update::tuf::{PublicKey, Role};

use super::{ApiError, ApiJson, ApiPath, AppState, Caller, Problem};

#[derive(Debug, Serialize, ToSchema)]
pub struct ArtefactResponse {
    /// Hex SHA-256 of the content: the artefact's name from now on.
    pub sha256: String,
    pub length: u64,
    /// `false` if the same content had been uploaded before.
    pub created: bool,
}

/// Upload a file (firmware image, SBOM) as `application/octet-stream`. It is stored by its
/// SHA-256; a release then refers to it by that hash.
#[utoipa::path(post, path = "/api/v1/artefacts", tag = "updates",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ArtefactResponse), (status = 413, body = Problem), (status = 415, body = Problem)))]
pub async fn upload_artefact(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ArtefactResponse>), ApiError> {
    let actor = caller.actor();
    let result = receive(&state, &caller, &headers, body).await;
    let artefact = state
        .audit_refusal(&actor, "artefact.upload", "artefact:upload".into(), result)
        .await?;
    Ok((StatusCode::CREATED, Json(artefact)))
}

async fn receive(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: Body,
) -> Result<ArtefactResponse, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .trim()
        .eq_ignore_ascii_case("application/octet-stream")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "upload the artefact as application/octet-stream",
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let updates = state.updates();
    let mut upload = updates.begin_artefact(declared).await?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "incomplete-body",
                "Incomplete body",
                format!("the upload was cut off: {e}"),
            )
        })?;
        if let Some(data) = frame.data_ref() {
            upload.write(data).await?;
        }
    }
    let artefact = upload.finish(updates, &caller.actor()).await?;
    Ok(ArtefactResponse {
        sha256: artefact.sha256,
        length: artefact.length,
        created: artefact.created,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The release's version under the product's scheme (semver by default).
    #[schema(example = "1.4.2")]
    pub version: String,
    /// SHA-256 of the uploaded artefact (`POST /api/v1/artefacts`).
    pub artefact_sha256: String,
    /// The file's name on the device; the TUF target is `VERSION/FILE_NAME`.
    #[schema(example = "firmware.bin")]
    pub file_name: String,
    /// SHA-256 of an uploaded SBOM for this release.
    #[serde(default)]
    pub sbom_sha256: Option<String>,
    /// A security release (published apart from feature releases, CRA Annex I Part II (2)).
    #[serde(default)]
    pub security: bool,
    #[serde(default)]
    pub notes: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseResponse {
    pub id: String,
    pub product_id: String,
    pub version: String,
    /// The TUF target name.
    pub target_name: String,
    pub sha256: String,
    pub length: u64,
    pub security: bool,
    pub notes: String,
    pub sbom_sha256: Option<String>,
    /// `awaiting-signature` (the targets key is offline) or `published`.
    pub state: String,
    pub created_by: String,
    pub created_at: String,
    /// When a signed targets document first listed it (the remediation clock of a security
    /// release starts here).
    pub published_at: Option<String>,
}

impl From<ReleaseRecord> for ReleaseResponse {
    fn from(r: ReleaseRecord) -> Self {
        Self {
            id: r.id,
            product_id: r.product_id,
            version: r.version,
            target_name: r.target_name,
            sha256: r.sha256,
            length: r.length,
            security: r.security,
            notes: r.notes,
            sbom_sha256: r.sbom_sha256,
            state: r.state,
            created_by: r.created_by,
            created_at: rfc3339(r.created_at),
            published_at: r.published_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseList {
    pub items: Vec<ReleaseResponse>,
}

/// Create a release of the product from an uploaded artefact. The product's update channel
/// is created with the defaults (semver, keys online) if it has none.
#[utoipa::path(post, path = "/api/v1/products/{id}/releases", tag = "updates", request_body = ReleaseRequest,
    responses((status = 201, body = ReleaseResponse), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn create_release(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(product): ApiPath<ProductId>,
    ApiJson(req): ApiJson<ReleaseRequest>,
) -> Result<(StatusCode, Json<ReleaseResponse>), ApiError> {
    let actor = caller.actor();
    let subject = format!("product:{product}");
    let new = NewRelease {
        version: req.version,
        artefact_sha256: req.artefact_sha256,
        file_name: req.file_name,
        sbom_sha256: req.sbom_sha256,
        security: req.security,
        notes: req.notes,
    };
    let result = async {
        // The first release creates the product's trust root for updates: that needs the
        // right to change update trust, not only to publish.
        if !state.updates().channel_exists(&product.to_string()).await?
            && !super::auth::allows(&state, &caller, "update.trust", "update_channel")
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "channel-needs-trust",
                "Forbidden",
                format!("product {product} has no update channel; creating one needs update.trust (with a second factor for people): `sigil release init`"),
            ));
        }
        Ok(state.create_release(&actor, &product.to_string(), new).await?)
    }
    .await;
    let release = state
        .audit_refusal(&actor, "release.create", subject, result)
        .await?;
    Ok((StatusCode::CREATED, Json(release.into())))
}

/// A product's releases, oldest first.
#[utoipa::path(get, path = "/api/v1/products/{id}/releases", tag = "updates",
    responses((status = 200, body = ReleaseList), (status = 404, body = Problem)))]
pub async fn list_releases(
    State(state): State<AppState>,
    ApiPath(product): ApiPath<ProductId>,
) -> Result<Json<ReleaseList>, ApiError> {
    state.store().get_product(product).await?;
    let items = state
        .updates()
        .releases(&product.to_string())
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(ReleaseList { items }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelRequest {
    /// How versions are ordered: `semver` (default) or `integer`.
    #[serde(default)]
    pub version_scheme: Option<String>,
    /// Root keys kept off the server, as TUF public keys (`sigil release keygen` writes
    /// them). None: one online root key.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub root_keys: Vec<serde_json::Value>,
    #[serde(default)]
    pub root_threshold: Option<u32>,
    /// Targets keys kept off the server. None: one online targets key.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub targets_keys: Vec<serde_json::Value>,
    #[serde(default)]
    pub targets_threshold: Option<u32>,
}

fn offline_keys(
    role: &str,
    keys: &[serde_json::Value],
    threshold: Option<u32>,
) -> Result<Option<(Vec<PublicKey>, u32)>, ApiError> {
    if keys.is_empty() {
        return match threshold {
            Some(_) => Err(ApiError::invalid(format!(
                "{role}_threshold: no {role}_keys were given"
            ))),
            None => Ok(None),
        };
    }
    if keys.len() > 16 {
        return Err(ApiError::invalid(format!("{role}_keys: at most 16 keys")));
    }
    let parsed = keys
        .iter()
        .map(|k| PublicKey::from_json(k.to_string().as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::invalid(format!("{role}_keys: {e}")))?;
    Ok(Some((parsed, threshold.unwrap_or(1))))
}

/// Create the product's update channel: its TUF repository, with the root and targets keys
/// online (default) or kept off the server (give their public keys).
#[utoipa::path(post, path = "/api/v1/products/{id}/update-channel", tag = "updates", request_body = ChannelRequest,
    responses((status = 201, body = ChannelResponse), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn create_channel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(product): ApiPath<ProductId>,
    ApiJson(req): ApiJson<ChannelRequest>,
) -> Result<(StatusCode, Json<ChannelResponse>), ApiError> {
    let actor = caller.actor();
    let result = async {
        let scheme = match req.version_scheme.as_deref() {
            None => VersionScheme::Semver,
            Some(s) => VersionScheme::parse(s)
                .map_err(|e| ApiError::invalid(format!("version_scheme: {e}")))?,
        };
        let keys = ChannelKeys {
            scheme,
            root: offline_keys("root", &req.root_keys, req.root_threshold)?,
            targets: offline_keys("targets", &req.targets_keys, req.targets_threshold)?,
        };
        state
            .updates()
            .create_channel(&actor, &product.to_string(), keys)
            .await?;
        channel_view(&state, product).await
    }
    .await;
    let view = state
        .audit_refusal(
            &actor,
            "update.channel_create",
            format!("product:{product}"),
            result,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleKeysView {
    pub role: String,
    pub keyids: Vec<String>,
    pub threshold: u32,
    /// Whether the server holds the role's keys.
    pub online: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MetadataView {
    pub role: String,
    pub version: u64,
    pub expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PendingView {
    pub role: String,
    pub version: u64,
    pub expires_at: String,
    /// The canonical JSON of the document's `signed` part: exactly the bytes to sign.
    pub canonical: String,
    pub keyids: Vec<String>,
    pub threshold: u32,
    pub signed_by: Vec<String>,
}

impl From<PendingDocument> for PendingView {
    fn from(p: PendingDocument) -> Self {
        Self {
            role: p.role.as_str().into(),
            version: p.version,
            expires_at: rfc3339(p.expires_at),
            canonical: p.canonical,
            keyids: p.keyids,
            threshold: p.threshold,
            signed_by: p.signed_by,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelResponse {
    pub product_id: String,
    pub version_scheme: String,
    /// Where TUF clients find the repository (metadata under `metadata/`, targets under
    /// `targets/`), relative to the API's base URL.
    pub repository: String,
    pub roles: Vec<RoleKeysView>,
    /// The newest published document of each role.
    pub metadata: Vec<MetadataView>,
    /// Documents awaiting offline signatures.
    pub pending: Vec<PendingView>,
}

async fn channel_view(state: &AppState, product: ProductId) -> Result<ChannelResponse, ApiError> {
    let status = state.updates().channel_status(&product.to_string()).await?;
    Ok(ChannelResponse {
        product_id: product.to_string(),
        version_scheme: status.version_scheme,
        repository: format!("/tuf/{product}/"),
        roles: status
            .roles
            .into_iter()
            .map(|r| RoleKeysView {
                role: r.role.as_str().into(),
                keyids: r.keyids,
                threshold: r.threshold,
                online: r.online,
            })
            .collect(),
        metadata: status
            .metadata
            .into_iter()
            .map(|(role, version, expires)| MetadataView {
                role: role.as_str().into(),
                version,
                expires_at: rfc3339(expires),
            })
            .collect(),
        pending: status.pending.into_iter().map(Into::into).collect(),
    })
}

/// The product's update channel: keys, current metadata, documents awaiting signatures.
#[utoipa::path(get, path = "/api/v1/products/{id}/update-channel", tag = "updates",
    responses((status = 200, body = ChannelResponse), (status = 404, body = Problem)))]
pub async fn get_channel(
    State(state): State<AppState>,
    ApiPath(product): ApiPath<ProductId>,
) -> Result<Json<ChannelResponse>, ApiError> {
    Ok(Json(channel_view(&state, product).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignatureItem {
    /// `root` or `targets`.
    pub role: String,
    pub version: u64,
    pub keyid: String,
    /// Hex Ed25519 signature over the pending document's canonical JSON.
    pub sig: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignaturesRequest {
    pub signatures: Vec<SignatureItem>,
}

/// Add offline signatures to documents awaiting them; a document that reaches its threshold
/// is published with the snapshot and timestamp after it. Answers the channel as it is now.
#[utoipa::path(post, path = "/api/v1/products/{id}/update-channel/signatures", tag = "updates", request_body = SignaturesRequest,
    responses((status = 200, body = ChannelResponse), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn add_signatures(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(product): ApiPath<ProductId>,
    ApiJson(req): ApiJson<SignaturesRequest>,
) -> Result<Json<ChannelResponse>, ApiError> {
    let actor = caller.actor();
    let result = async {
        if req.signatures.len() > 32 {
            return Err(ApiError::invalid("signatures: at most 32 at once"));
        }
        let submissions = req
            .signatures
            .iter()
            .map(|s| {
                let role = Role::parse(&s.role)
                    .ok_or_else(|| ApiError::invalid("role: `root` or `targets`"))?;
                Ok(SignatureSubmission {
                    role,
                    version: s.version,
                    keyid: s.keyid.clone(),
                    sig: s.sig.clone(),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        state
            .updates()
            .add_signatures(&actor, &product.to_string(), &submissions)
            .await?;
        channel_view(&state, product).await
    }
    .await;
    Ok(Json(
        state
            .audit_refusal(&actor, "update.sign", format!("product:{product}"), result)
            .await?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceChannelResponse {
    pub product_id: String,
    /// The repository's path on this server (metadata under `metadata/`, targets under
    /// `targets/`).
    pub repository: String,
    /// The product's newest root metadata, exactly as served: the device's trust anchor for
    /// updates from now on (TUF verifies every later root against it).
    pub root: String,
}

/// A device (authenticated by its current certificate, mTLS) learns its product's update
/// repository and root metadata, to pin it.
#[utoipa::path(get, path = "/api/v1/device/update-channel", tag = "updates", security(()),
    responses((status = 200, body = DeviceChannelResponse), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn device_channel(
    State(state): State<AppState>,
    peer: Option<Extension<sigil_http::PeerCertificate>>,
) -> Result<Json<DeviceChannelResponse>, ApiError> {
    let peer = peer
        .map(|Extension(p)| p)
        .unwrap_or(sigil_http::PeerCertificate(None));
    // A refused certificate is recorded; a successful read changes nothing and is not.
    let identity = state
        .current_identity(peer.der())
        .await
        .map_err(ApiError::from);
    let actor = sigil_audit::Actor::device("unknown");
    let (device, _) = state
        .audit_refusal(&actor, "update.channel_read", "device".into(), identity)
        .await?;
    let product = state
        .store()
        .get_device(device)
        .await?
        .product_id
        .to_string();
    let root = state
        .updates()
        .metadata_file(&product, sigil_update::tuf::MetadataFile::LatestRoot)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("product {product} has no update channel yet"))
        })?;
    Ok(Json(DeviceChannelResponse {
        repository: format!("/tuf/{product}/"),
        root: String::from_utf8_lossy(&root).into_owned(),
        product_id: product,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationItem {
    /// `root`, `targets`, `snapshot` or `timestamp`.
    pub role: String,
    /// New keys kept off the server (root and targets only). None: one new online key.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
    #[serde(default)]
    pub threshold: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationRequest {
    pub rotations: Vec<RotationItem>,
}

/// Rotate role keys: the next root assigns the new keys, signed by the old root keys and the
/// new (cross-signed); once it is published, everything the rotated-out keys signed is signed
/// again. Offline keys sign through the signatures route.
#[utoipa::path(post, path = "/api/v1/products/{id}/update-channel/rotations", tag = "updates", request_body = RotationRequest,
    responses((status = 200, body = ChannelResponse), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn rotate_keys(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(product): ApiPath<ProductId>,
    ApiJson(req): ApiJson<RotationRequest>,
) -> Result<Json<ChannelResponse>, ApiError> {
    let actor = caller.actor();
    let result = async {
        let mut rotations = Vec::new();
        for item in &req.rotations {
            let role = Role::parse(&item.role)
                .ok_or_else(|| ApiError::invalid("role: root, targets, snapshot or timestamp"))?;
            let offline = offline_keys(&item.role, &item.keys, item.threshold)?;
            if offline.is_some() && matches!(role, Role::Snapshot | Role::Timestamp) {
                return Err(ApiError::invalid(format!(
                    "{}: its keys must stay online (it is re-signed unattended)",
                    item.role
                )));
            }
            rotations.push(sigil_authority::updates::KeyRotation { role, offline });
        }
        state
            .updates()
            .rotate_keys(&actor, &product.to_string(), &rotations)
            .await?;
        channel_view(&state, product).await
    }
    .await;
    Ok(Json(
        state
            .audit_refusal(
                &actor,
                "update.rotate",
                format!("product:{product}"),
                result,
            )
            .await?,
    ))
}
