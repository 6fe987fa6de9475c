//! Evidence bundles for auditors: `GET /api/v1/evidence?since=..&until=..`.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use sigil_audit::Hash;
use sigil_audit::evidence::{BundleBuilder, Period};
use sigil_domain::DeviceFilter;
use sigil_store::AuditQuery;

use super::audit::entry_time;
use super::certificates::CertificateResponse;
use super::compliance::RunView;
use super::inventory::{DeviceResponse, ProductResponse};
use super::{ApiError, ApiQuery, AppState, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EvidenceQuery {
    /// Start of the period (RFC 3339, inclusive). Default: the beginning of the log.
    pub since: Option<String>,
    /// End of the period (RFC 3339, exclusive). Default: now.
    pub until: Option<String>,
}

fn json_file<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    let mut out = serde_json::to_vec_pretty(value).map_err(ApiError::internal)?;
    out.push(b'\n');
    Ok(out)
}

/// A tar archive: the period's audit entries with inclusion proofs against a freshly signed
/// checkpoint, the checkpoint, the CA certificates, and an inventory snapshot (products,
/// devices, certificates), with a MANIFEST of SHA-256 digests signed by the log key. Verify it
/// offline with `sigil evidence verify`.
#[utoipa::path(get, path = "/api/v1/evidence", tag = "audit", params(EvidenceQuery),
    responses((status = 200, content_type = "application/x-tar"), (status = 400, body = Problem), (status = 503, body = Problem)))]
pub async fn export(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<EvidenceQuery>,
) -> Result<Response, ApiError> {
    let now = state.now();
    let period = Period {
        since: match &q.since {
            Some(t) => entry_time(t, "since")?,
            None => sigil_audit::entry::format_time(time::OffsetDateTime::UNIX_EPOCH),
        },
        until: match &q.until {
            Some(t) => entry_time(t, "until")?,
            None => sigil_audit::entry::format_time(now),
        },
    };
    if period.since >= period.until {
        return Err(ApiError::invalid("since must be before until"));
    }
    // Every entry in the bundle is proven against this checkpoint; a log that failed its
    // integrity check cannot sign one, and then there is no bundle (503).
    let checkpoint = state.audit().checkpoint(now).await?;

    let entries = proven_entries(&state, &period, checkpoint.size).await?;
    let count = entries.len();
    let mut bundle = BundleBuilder::new(&checkpoint, &entries).map_err(ApiError::internal)?;
    bundle.add(
        "log.pub",
        format!("{}\n", state.audit().key().verifier_key()).into_bytes(),
    );
    bundle.add(
        "ca/root.crt",
        state.ca().root_cert_pem().as_bytes().to_vec(),
    );
    bundle.add(
        "ca/issuing.crt",
        state.ca().issuing_cert_pem().as_bytes().to_vec(),
    );
    if let Some(crl) = state.crl().current().await {
        bundle.add("ca/issuing.crl", crl.der.clone());
    }

    add_inventory(&state, &mut bundle).await?;

    add_compliance(&state, &mut bundle, &period).await?;
    bundle.add(
        "README",
        format!(
            "Sigil evidence bundle for {} .. {} ({} audit entries).\n\
             Verify offline: sigil evidence verify FILE --log-key '<verifier key>'\n\
             Pin the verifier key out of band; log.pub inside this bundle is for reference only.\n\
             ca/issuing.crl is the issuing CA's current CRL (DER).\n\
             compliance/catalogue/ holds the control catalogue (version {} in VERSION);\n\
             compliance/<framework>/posture.json is each framework's posture when the bundle\n\
             was made, history.json the evaluation runs recorded in the period (newest first).\n",
            period.since,
            period.until,
            count,
            state.catalogue().version()
        )
        .into_bytes(),
    );
    let archive = bundle
        .finish(
            state.audit().key(),
            &period,
            checkpoint.size,
            now.unix_timestamp().max(0) as u64,
        )
        .map_err(ApiError::internal)?;
    let mut response = archive.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"sigil-evidence.tar\""),
    );
    Ok(response)
}

/// Every entry of the period logged before the checkpoint, with its inclusion proof.
async fn proven_entries(
    state: &AppState,
    period: &Period,
    checkpoint_size: u64,
) -> Result<Vec<(u64, String, Hash, Vec<Hash>)>, ApiError> {
    let mut entries = Vec::new();
    let mut query = AuditQuery {
        since: Some(period.since.clone()),
        until: Some(period.until.clone()),
        before: Some(checkpoint_size),
        limit: sigil_store::MAX_PAGE,
        ..AuditQuery::default()
    };
    loop {
        let page = state.store().audit_entries(&query).await?;
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        for e in page {
            let (leaf, proof) = state
                .store()
                .audit_inclusion_proof(e.seq, checkpoint_size)
                .await?;
            entries.push((e.seq, e.entry, leaf, proof));
        }
        query.after = Some(last);
    }
    Ok(entries)
}

/// The inventory as the API shows it: products, devices, certificates.
async fn add_inventory(state: &AppState, bundle: &mut BundleBuilder) -> Result<(), ApiError> {
    let products: Vec<ProductResponse> = state
        .store()
        .list_products()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    bundle.add("inventory/products.json", json_file(&products)?);
    let mut devices = Vec::new();
    let mut filter = DeviceFilter {
        limit: sigil_store::MAX_PAGE,
        ..DeviceFilter::default()
    };
    loop {
        let page = state.store().list_devices(&filter).await?;
        let Some(last) = page.last().map(|d| d.id) else {
            break;
        };
        devices.extend(page.into_iter().map(|d| DeviceResponse::new(d, state)));
        filter.after = Some(last);
    }
    bundle.add("inventory/devices.json", json_file(&devices)?);
    let mut certificates: Vec<CertificateResponse> = Vec::new();
    let mut after = None;
    loop {
        let page = state
            .store()
            .certificates_after(after.as_ref(), sigil_store::MAX_PAGE)
            .await?;
        let Some(last) = page.last().map(|c| c.serial.clone()) else {
            break;
        };
        certificates.extend(page.into_iter().map(Into::into));
        after = Some(last);
    }
    bundle.add("inventory/certificates.json", json_file(&certificates)?);

    Ok(())
}

/// Compliance: the catalogue's files (their content hash is the catalogue version), each
/// framework's posture now, and the evaluation runs recorded in the period.
async fn add_compliance(
    state: &AppState,
    bundle: &mut BundleBuilder,
    period: &Period,
) -> Result<(), ApiError> {
    for (name, text) in sigil_compliance::Catalogue::shipped_files() {
        bundle.add(
            &format!("compliance/catalogue/{name}"),
            text.as_bytes().to_vec(),
        );
    }
    bundle.add(
        "compliance/catalogue/VERSION",
        format!("{}\n", state.catalogue().version()).into_bytes(),
    );
    for framework in state.catalogue().frameworks() {
        let id = &framework.info.id;
        let report =
            sigil_authority::compliance::evaluate(state, framework, state.catalogue(), None)
                .await?;
        bundle.add(
            &format!("compliance/{id}/posture.json"),
            json_file(&report)?,
        );
        let runs: Vec<RunView> = state
            .store()
            .compliance_history(id, sigil_store::MAX_PAGE)
            .await?
            .into_iter()
            .filter(|r| {
                let t = sigil_audit::entry::format_time(r.evaluated_at);
                period.since <= t && t < period.until
            })
            .map(RunView::from)
            .collect();
        bundle.add(&format!("compliance/{id}/history.json"), json_file(&runs)?);
    }
    Ok(())
}
