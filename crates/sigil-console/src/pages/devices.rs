//! The device list: search (a device id, or the start of a serial number or hardware id),
//! filters by state, product, site, tag and compliance status, columns that sort, and paging
//! by cursor (a position in the order), so the thousandth page of a million devices costs what
//! the first does.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::{Section, render, section, text};
use crate::backend::Backend;
use crate::view::{Layout, query};
use crate::viewer::Viewer;

/// Rows per page.
const PAGE: u32 = 50;

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct Filters {
    q: String,
    state: String,
    product: String,
    site: String,
    tag: String,
    compliance: String,
    sort: String,
    after: String,
}

/// A sortable column's header: the link that sorts by it (or reverses it) and, when the list
/// is sorted by it, the direction for `aria-sort`.
pub struct SortLink {
    href: String,
    aria: &'static str,
}

/// The header link of the column sorted by `key`, given the current `sort`.
fn sort_link(selection: &[(&str, &str)], sort: &str, key: &str) -> SortLink {
    let (next, aria) = if sort == key {
        (format!("-{key}"), "ascending")
    } else if sort.strip_prefix('-') == Some(key) {
        (key.to_owned(), "descending")
    } else {
        (key.to_owned(), "none")
    };
    let mut pairs: Vec<(&str, &str)> = selection
        .iter()
        .filter(|(k, _)| *k != "sort")
        .copied()
        .collect();
    pairs.push(("sort", &next));
    SortLink {
        href: format!("/ui/devices{}", query(&pairs)),
        aria,
    }
}

/// The compliance filter's choices: every framework together, then each one.
fn compliance_choices(frameworks: &[(String, String)]) -> Vec<(String, String)> {
    let statuses = [
        ("fail", "failing"),
        ("unknown", "undecided"),
        ("pass", "passing"),
    ];
    let mut out: Vec<(String, String)> = statuses
        .iter()
        .map(|(s, label)| ((*s).to_owned(), format!("{label} any framework")))
        .collect();
    for (id, title) in frameworks {
        out.extend(
            statuses
                .iter()
                .map(|(s, label)| (format!("{id}:{s}"), format!("{label} {title}"))),
        );
    }
    out
}

#[derive(Deserialize, Clone)]
pub struct DeviceRow {
    pub id: String,
    pub product_id: String,
    pub serial_number: String,
    pub hardware_id: Option<String>,
    pub owner: Option<String>,
    pub site: Option<String>,
    pub tags: Vec<String>,
    pub firmware_version: Option<String>,
    pub state: String,
}

#[derive(Deserialize)]
struct DeviceList {
    items: Vec<DeviceRow>,
    next_cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    layout: Layout,
    filters: Filters,
    states: [&'static str; 5],
    products: Vec<(String, String)>,
    compliance_choices: Vec<(String, String)>,
    product_names: HashMap<String, String>,
    sort_serial: SortLink,
    order: &'static str,
    devices: Section<Vec<DeviceRow>>,
    next_page: Option<String>,
    first_page: Option<String>,
    /// The same view as CSV, if the person may export.
    export: Option<String>,
    can_import: bool,
}

impl DevicesPage {
    fn product_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.product_names.get(id).map_or(id, String::as_str)
    }
}

pub async fn list(
    State(backend): State<Backend>,
    viewer: Viewer,
    Query(filters): Query<Filters>,
) -> Response {
    let from = &viewer.forwarded;
    let limit = PAGE.to_string();
    let selection = [
        ("q", filters.q.as_str()),
        ("state", filters.state.as_str()),
        ("product", filters.product.as_str()),
        ("site", filters.site.as_str()),
        ("tag", filters.tag.as_str()),
        ("compliance", filters.compliance.as_str()),
        ("sort", filters.sort.as_str()),
    ];
    let mut api_query = selection.to_vec();
    api_query.extend([("after", filters.after.as_str()), ("limit", limit.as_str())]);
    let devices_path = format!("/api/v1/devices{}", query(&api_query));
    // The compliance filter only for those who may read compliance results (the API
    // refuses it to the others).
    let frameworks_path = if viewer.can("GET /api/v1/compliance") {
        "/api/v1/compliance"
    } else {
        ""
    };
    let (products, frameworks, devices) = tokio::join!(
        section::<Value>(&backend, from, "/api/v1/products"),
        async {
            if frameworks_path.is_empty() {
                Ok(Value::Null)
            } else {
                section::<Value>(&backend, from, frameworks_path).await
            }
        },
        section::<DeviceList>(&backend, from, &devices_path),
    );
    let may_filter = !frameworks_path.is_empty();
    let frameworks: Vec<(String, String)> = frameworks
        .map(|f| {
            f["frameworks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| (text(f, "id"), text(f, "title")))
                .collect()
        })
        .unwrap_or_default();
    let products: Vec<(String, String)> = products
        .map(|p| {
            p["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| (text(p, "id"), text(p, "name")))
                .collect()
        })
        .unwrap_or_default();
    let next_page = devices
        .as_ref()
        .ok()
        .and_then(|d| d.next_cursor.clone())
        .map(|cursor| {
            let mut pairs = selection.to_vec();
            pairs.push(("after", cursor.as_str()));
            format!("/ui/devices{}", query(&pairs))
        });
    let first_page =
        (!filters.after.is_empty()).then(|| format!("/ui/devices{}", query(&selection)));
    let export = viewer
        .can(super::import::EXPORT)
        .then(|| format!("/ui/devices/export.csv{}", query(&selection)));
    let order = match filters.sort.as_str() {
        "serial" => "by serial number",
        "-serial" => "by serial number, last first",
        "-created" => "newest first",
        _ => "in the order they were registered",
    };
    render(&DevicesPage {
        sort_serial: sort_link(&selection, &filters.sort, "serial"),
        order,
        compliance_choices: if may_filter {
            compliance_choices(&frameworks)
        } else {
            Vec::new()
        },
        export,
        can_import: viewer.can(super::import::IMPORT),
        layout: Layout::new("Devices", "devices", &viewer),
        states: [
            "registered",
            "provisioned",
            "active",
            "suspended",
            "retired",
        ],
        product_names: products.iter().cloned().collect(),
        products,
        devices: devices.map(|d| d.items),
        next_page,
        first_page,
        filters,
    })
}
