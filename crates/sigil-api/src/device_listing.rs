//! A device listing's query, checked, and its pages: the store's filters, search and order,
//! and optionally a compliance status, which the continuous compliance engine knows (in
//! memory, by device) and the database does not.

use sigil_compliance::Status;
use sigil_domain::{Device, DeviceFilter, DeviceId, DeviceSearch, DeviceSort};

use axum::http::Method;

use super::auth::authorise;
use super::inventory::DeviceQuery;
use super::{ApiError, AppState, Caller};

/// Matching devices taken from the compliance engine at a time (one lock of it).
const ENGINE_BATCH: usize = 5_000;
/// Devices offered to the database per query.
const CANDIDATES_PER_QUERY: usize = 500;
/// Devices the engine looks at for one page before answering with what it found and a cursor
/// to go on from: a rare status over 10^7 devices never holds a request for long.
const SCAN_BUDGET: usize = 200_000;
/// Devices read from the database for one page in another order, likewise.
const STORE_BUDGET: usize = 20_000;

/// Only devices whose results over a framework's device checks roll up to `status`.
#[derive(Debug, Clone)]
pub(crate) struct ComplianceFilter {
    checks: Vec<String>,
    status: Status,
}

/// A checked listing: the store's part and the compliance engine's.
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    pub filter: DeviceFilter,
    pub compliance: Option<ComplianceFilter>,
}

/// `compliance`: a status over every framework's device checks (`fail`), or over one
/// framework's (`eu-cra:fail`).
fn compliance_filter(state: &AppState, value: &str) -> Result<ComplianceFilter, ApiError> {
    let (framework, wanted) = match value.split_once(':') {
        Some((f, s)) => (Some(f), s),
        None => (None, value),
    };
    let status = match wanted {
        "pass" => Status::Pass,
        "fail" => Status::Fail,
        "unknown" => Status::Unknown,
        "not-applicable" => Status::NotApplicable,
        _ => {
            return Err(ApiError::invalid(
                "compliance is pass, fail, unknown or not-applicable, optionally after a framework (eu-cra:fail)",
            ));
        }
    };
    let frameworks = match framework {
        Some(id) => vec![
            super::compliance::framework(state, id)
                .map_err(|e| ApiError::invalid(format!("compliance: {}", e.detail)))?,
        ],
        None => state.catalogue().frameworks().iter().collect(),
    };
    let mut checks: Vec<String> = frameworks
        .iter()
        .flat_map(|f| f.requirements.iter().flat_map(|r| r.checks.iter()))
        .filter(|c| c.starts_with("device."))
        .cloned()
        .collect();
    checks.sort_unstable();
    checks.dedup();
    Ok(ComplianceFilter { checks, status })
}

/// The listing `q` asks for, or why not. A compliance filter reveals compliance results, so
/// it needs what reading them needs (`compliance.read`), beyond the inventory's.
pub(crate) async fn listing(
    state: &AppState,
    caller: &Caller,
    q: &DeviceQuery,
) -> Result<Listing, ApiError> {
    if q.compliance.is_some() {
        // The rule of reading compliance results, denial audited as any other.
        authorise(
            state,
            caller,
            &Method::GET,
            "/api/v1/compliance",
            "compliance",
        )
        .await?;
    }
    let mut filter = super::inventory::device_filter(q)?;
    filter.search =
        q.q.as_deref()
            .map(DeviceSearch::parse)
            .transpose()
            .map_err(|e| ApiError::invalid(e.to_string()))?;
    filter.sort = q
        .sort
        .as_deref()
        .map(str::parse::<DeviceSort>)
        .transpose()
        .map_err(|e| ApiError::invalid(e.to_string()))?
        .unwrap_or_default();
    let compliance = q
        .compliance
        .as_deref()
        .map(|c| compliance_filter(state, c))
        .transpose()?;
    // In another order than registration the cursor's position is read from its row: a
    // cursor naming no device is refused rather than ending the listing early.
    if let (Some(after), false) = (filter.after, filter.sort == DeviceSort::default()) {
        state.store().get_device(after).await?;
    }
    Ok(Listing { filter, compliance })
}

/// One page, and the cursor of the next (`None` on the last). A page with a compliance filter
/// may hold fewer devices than asked for and still have a next one: the engine stopped
/// looking at its budget.
pub(crate) async fn page(
    state: &AppState,
    listing: &Listing,
) -> Result<(Vec<Device>, Option<DeviceId>), ApiError> {
    let Some(compliance) = &listing.compliance else {
        let limit = listing.filter.limit as usize;
        let devices = state.store().list_devices(&listing.filter).await?;
        let next = (devices.len() == limit)
            .then(|| devices.last().map(|d| d.id))
            .flatten();
        return Ok((devices, next));
    };
    if listing.filter.sort == DeviceSort::default() {
        by_engine_order(state, listing, compliance).await
    } else {
        by_store_order(state, listing, compliance).await
    }
}

/// Registration order: the engine offers matching devices in id order, the store applies the
/// other filters to them (fast however rare the status).
async fn by_engine_order(
    state: &AppState,
    listing: &Listing,
    compliance: &ComplianceFilter,
) -> Result<(Vec<Device>, Option<DeviceId>), ApiError> {
    let limit = listing.filter.limit as usize;
    let checks: Vec<&str> = compliance.checks.iter().map(String::as_str).collect();
    let mut out: Vec<Device> = Vec::new();
    let mut after = listing.filter.after;
    let mut budget = SCAN_BUDGET;
    loop {
        let scan = {
            let live = state.compliance().fresh(state).await?;
            live.devices_by_status(&checks, compliance.status, after, ENGINE_BATCH, budget)
        };
        budget = budget.saturating_sub(scan.looked);
        for chunk in scan.found.chunks(CANDIDATES_PER_QUERY) {
            let mut filter = listing.filter.clone();
            filter.ids = Some(chunk.to_vec());
            filter.after = None;
            filter.limit = u32::try_from(limit - out.len()).unwrap_or(u32::MAX);
            out.extend(state.store().list_devices(&filter).await?);
            if out.len() == limit {
                let next = out.last().map(|d| d.id);
                return Ok((out, next));
            }
        }
        match scan.resume {
            None => return Ok((out, None)),
            Some(r) if budget == 0 => return Ok((out, Some(r))),
            Some(r) => after = Some(r),
        }
    }
}

/// Another order: the store pages in it and each device's status is looked up, up to a
/// budget of devices read per request.
async fn by_store_order(
    state: &AppState,
    listing: &Listing,
    compliance: &ComplianceFilter,
) -> Result<(Vec<Device>, Option<DeviceId>), ApiError> {
    let limit = listing.filter.limit as usize;
    let checks: Vec<&str> = compliance.checks.iter().map(String::as_str).collect();
    let mut filter = listing.filter.clone();
    filter.limit = sigil_store::MAX_PAGE;
    let mut out: Vec<Device> = Vec::new();
    let mut read = 0;
    loop {
        let page = state.store().list_devices(&filter).await?;
        let Some(last) = page.last().map(|d| d.id) else {
            return Ok((out, None));
        };
        let full = page.len() == filter.limit as usize;
        let live = state.compliance().fresh(state).await?;
        for device in page {
            read += 1;
            filter.after = Some(device.id);
            if live.status_over(device.id, &checks) == Some(compliance.status) {
                out.push(device);
                if out.len() == limit {
                    return Ok((out, filter.after));
                }
            }
        }
        drop(live);
        if !full {
            return Ok((out, None));
        }
        if read >= STORE_BUDGET {
            return Ok((out, Some(last)));
        }
    }
}
