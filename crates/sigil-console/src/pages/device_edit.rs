//! Editing a device's owner, site, tags and hardware id: a form that sends the API a merge
//! patch of what changed (the API audits the values before and after).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::devices::DeviceRow;
use super::render;
use crate::backend::Backend;
use crate::error::ConsoleError;
use crate::pages::device::{finish, problem};
use crate::view::{Layout, segment};
use crate::viewer::Viewer;

pub const OPERATION: &str = "PATCH /api/v1/devices/{id}";

#[derive(Template)]
#[template(path = "device_edit.html")]
struct EditPage {
    layout: Layout,
    device: DeviceRow,
    tags: String,
}

pub async fn form(
    State(backend): State<Backend>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    if !viewer.can(OPERATION) {
        return Err(ConsoleError::Forbidden(
            "your role may not edit devices".into(),
        ));
    }
    let device: DeviceRow = backend
        .get(
            &viewer.forwarded,
            &format!("/api/v1/devices/{}", segment(&id)),
        )
        .await?;
    Ok(render(&EditPage {
        layout: Layout::new(
            format!("Edit device {}", device.serial_number),
            "devices",
            &viewer,
        ),
        tags: device.tags.join(", "),
        device,
    }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EditForm {
    owner: String,
    site: String,
    hardware_id: String,
    tags: String,
    /// The values the form was opened with: an edit made meanwhile is not silently undone.
    was_owner: String,
    was_site: String,
    was_hardware_id: String,
    was_tags: String,
}

/// Whether the device still has the values the form showed.
fn unchanged_since_opened(device: &DeviceRow, form: &EditForm) -> bool {
    let shown = |v: &Option<String>| v.clone().unwrap_or_default();
    shown(&device.owner) == form.was_owner
        && shown(&device.site) == form.was_site
        && shown(&device.hardware_id) == form.was_hardware_id
        && device.tags.join(", ") == form.was_tags
}

/// The merge patch from the form: only the fields that differ from the device now; an
/// emptied field is cleared.
fn patch(device: &DeviceRow, form: &EditForm) -> Map<String, Value> {
    let mut patch = Map::new();
    for (field, now, new) in [
        ("owner", &device.owner, &form.owner),
        ("site", &device.site, &form.site),
        ("hardware_id", &device.hardware_id, &form.hardware_id),
    ] {
        let new = new.trim();
        let new = (!new.is_empty()).then(|| new.to_owned());
        if &new != now {
            patch.insert(field.to_owned(), json!(new));
        }
    }
    let mut tags: Vec<String> = form
        .tags
        .split([',', ' ', '\n'])
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    tags.sort();
    tags.dedup();
    let mut current = device.tags.clone();
    current.sort();
    if tags != current {
        patch.insert("tags".to_owned(), json!(tags));
    }
    patch
}

pub async fn submit(
    State(backend): State<Backend>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let from = &viewer.forwarded;
    let path = format!("/api/v1/devices/{}", segment(&id));
    let device: DeviceRow = match backend.get(from, &path).await {
        Ok(d) => d,
        Err(e) => return ConsoleError::Api(e).into_response(),
    };
    let from_htmx = headers.contains_key("hx-request");
    // A form that does not parse must not read as "every field emptied".
    let Ok(form) = serde_urlencoded::from_bytes::<EditForm>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Malformed form",
            "send the edit form as the page gives it",
            from_htmx,
        );
    };
    if !unchanged_since_opened(&device, &form) {
        return problem(
            StatusCode::CONFLICT,
            "Changed meanwhile",
            "someone edited this device since you opened the form",
            from_htmx,
        );
    }
    let changes = patch(&device, &form);
    if changes.is_empty() {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Nothing changed",
            "the form holds the values the device already has",
            from_htmx,
        );
    }
    let result = backend
        .call(from, Method::PATCH, &path, Some(&Value::Object(changes)))
        .await;
    finish(result, &id, "edit", from_htmx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_holds_only_what_changed() {
        let device = DeviceRow {
            id: "d".into(),
            product_id: "p".into(),
            serial_number: "s".into(),
            hardware_id: Some("hw".into()),
            owner: Some("ops".into()),
            site: None,
            tags: vec!["b".into(), "a".into()],
            firmware_version: None,
            state: "active".into(),
        };
        let form = |owner: &str, site: &str, hw: &str, tags: &str| EditForm {
            owner: owner.into(),
            site: site.into(),
            hardware_id: hw.into(),
            tags: tags.into(),
            ..EditForm::default()
        };
        assert!(patch(&device, &form(" ops ", "", "hw", "a, b")).is_empty());
        let p = patch(&device, &form("", "plant-2", "hw", "a"));
        assert_eq!(
            Value::Object(p),
            json!({"owner": null, "site": "plant-2", "tags": ["a"]})
        );
    }
}
