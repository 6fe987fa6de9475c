//! The console's pages, one module each. A page reads what it shows from the API as the
//! person viewing it; a section the person's role may not read says so instead of failing
//! the page.

pub mod access;
pub mod alarms;
pub mod audit;
pub mod audit_checkpoint;
pub mod compliance;
pub mod device;
pub mod device_edit;
pub mod devices;
pub mod foreign;
pub mod import;
pub mod login;
pub mod overview;
pub mod products;

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::backend::{ApiFailure, Backend, Forwarded};
use crate::error::ConsoleError;

/// One part of a page: what the API gave, or why it is not shown.
pub type Section<T> = Result<T, String>;

/// Read one section of a page; refusals and absences become a sentence for the reader.
pub async fn section<T: DeserializeOwned>(
    backend: &Backend,
    from: &Forwarded,
    path: &str,
) -> Section<T> {
    backend.get(from, path).await.map_err(|e| explain(&e))
}

/// Why a section is empty, in words.
pub fn explain(e: &ApiFailure) -> String {
    match e.status {
        StatusCode::FORBIDDEN => "Your role cannot see this.".to_owned(),
        StatusCode::NOT_FOUND => "None recorded yet.".to_owned(),
        _ => format!("Could not be read: {} ({})", e.title, e.detail),
    }
}

/// A rendered page, or the error page if rendering failed.
pub fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => ConsoleError::from(e).into_response(),
    }
}

/// A string field of a JSON value, or "".
pub fn text(value: &serde_json::Value, field: &str) -> String {
    match &value[field] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}
